"""Storage conformance suite (every backend) and SQLite / in-memory / vector index tests."""
