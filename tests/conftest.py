"""Fixtures shared by several test directories come from agenthost's own pytest11 plugin
(`host.pytest_plugin`): the session's PostgreSQL (``pg_server_uri``, ``pg_store_factory``), the
stores of every backend (``memory_store``) and the test kit fixtures."""

from hypothesis import settings

# The machines are shared and noisy: a property test is about which inputs break the code, not how
# fast one example runs (speed is measured by bench/), so no example has a deadline.
settings.register_profile("agenthost", deadline=None)
settings.load_profile("agenthost")
