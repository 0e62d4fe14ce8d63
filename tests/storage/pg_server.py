"""The session's PostgreSQL for the tests: the test kit's fixtures (`host.pytest_plugin`), named
here for the test modules that import them."""

from host.pytest_plugin import pg_server_uri, pg_store_factory, schema_uri

__all__ = ["pg_server_uri", "pg_store_factory", "schema_uri"]
