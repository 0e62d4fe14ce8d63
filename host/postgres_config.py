"""The memory store's PostgreSQL URL as configured (``plugins.postgres.url``), for the host's
other users of that database: the audit trail's CLI (`host.cli_events`) and cluster mode
(`host.cluster.node`), each raising its own error when it is not set."""

from __future__ import annotations

from contracts.config import HostConfig

__all__ = ["postgres_plugin_url"]


def postgres_plugin_url(config: HostConfig) -> str | None:
    """``plugins.postgres.url`` with its secret unwrapped; None when it is not set (or empty)."""
    url = config.plugins.section("postgres").get("url")
    if not url:
        return None
    return str(url.get_secret_value() if hasattr(url, "get_secret_value") else url)
