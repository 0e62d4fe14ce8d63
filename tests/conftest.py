"""Fixtures shared by several test directories come from agenthost's own pytest11 plugin
(`host.pytest_plugin`): the session's PostgreSQL (``pg_server_uri``, ``pg_store_factory``), the
stores of every backend (``memory_store``) and the test kit fixtures."""
