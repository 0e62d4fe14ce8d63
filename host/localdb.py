"""A local PostgreSQL with pgvector for the memory store, run by ``pgserver`` (the ``pgserver``
extra: PostgreSQL 16 + pgvector in a wheel) in the host's data dir.

``agenthost db start`` starts it (creating the cluster on first use) and leaves it running;
``status`` says whether it runs and where; ``stop`` stops it. The URL goes into the config as
``plugins.postgres.url`` with ``services.database: postgres``. The server listens on a Unix
socket only (no TCP port), in a directory of pgserver's choosing.
"""

from __future__ import annotations

import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import AgentHostError

__all__ = ["EXTRA_HINT", "LocalDbError", "LocalDbStatus", "cluster_dir", "start", "status", "stop"]

EXTRA_HINT = (
    "pip install 'agenthost[pgserver]' (wheels for CPython 3.11 and 3.12 on Linux and macOS)"
)


class LocalDbError(AgentHostError):
    """The local server cannot be started, stopped or found (the message says why)."""


@dataclass(frozen=True)
class LocalDbStatus:
    directory: Path
    running: bool
    url: str | None = None
    pid: int | None = None

    def config_lines(self) -> list[str]:
        """How to point the host at this server (environment variables)."""
        if self.url is None:
            return []
        return [
            "AGENTHOST_SERVICES__DATABASE=postgres",
            f"AGENTHOST_PLUGINS__POSTGRES__URL={shlex.quote(self.url)}",
        ]


def cluster_dir(data_dir: Path) -> Path:
    """Where the cluster lives: ``<data_dir>/postgres``."""
    return data_dir / "postgres"


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR in a container
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise LocalDbError(f"the local PostgreSQL needs pgserver: {EXTRA_HINT} ({exc})") from None
    return pgserver


def _postmaster(directory: Path) -> Any:
    """pgserver's reading of ``postmaster.pid`` (None: no server was started there)."""
    _pgserver()
    from pgserver.utils import PostmasterInfo

    return PostmasterInfo.read_from_pgdata(directory)


def status(data_dir: Path) -> LocalDbStatus:
    """Whether the server of `data_dir` runs, its URL and process id (starts nothing)."""
    directory = cluster_dir(data_dir)
    info = _postmaster(directory) if directory.exists() else None
    if info is None or not info.is_running():
        return LocalDbStatus(directory, running=False)
    return LocalDbStatus(directory, running=True, url=str(info.get_uri()), pid=info.pid)


def start(data_dir: Path) -> LocalDbStatus:
    """Start the server of `data_dir` (initialising the cluster the first time) with the vector
    extension created, and leave it running after this process exits."""
    pgserver = _pgserver()
    directory = cluster_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(directory, cleanup_mode=None)
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as exc:  # initdb or pg_ctl failing: their output says why
        log = directory / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise LocalDbError(
            f"cannot start PostgreSQL in {directory}: {exc}" + (f"\n{tail}" if tail else "")
        ) from None
    return status(data_dir)


def stop(data_dir: Path) -> bool:
    """Stop the server of `data_dir`; False if it was not running."""
    if not status(data_dir).running:
        return False
    pgserver = _pgserver()
    try:
        pgserver.get_server(cluster_dir(data_dir), cleanup_mode="stop").cleanup()
    except Exception as exc:
        raise LocalDbError(f"cannot stop PostgreSQL in {cluster_dir(data_dir)}: {exc}") from None
    return not status(data_dir).running
