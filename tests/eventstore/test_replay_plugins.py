"""A replay rebuilds, on its own store, each plugin taking the memory store: third-party plugins
from a real installed distribution (a package and its ``.dist-info`` with the entry point, on
the path). One whose providers need its `setup` is set up (and torn down) for the replay; one
that cannot be built on the replay's store makes the replay fail with an error naming it, not a
traceback (``agenthost events replay``)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from builtin_plugins.audit import AuditPlugin
from host.app import Host
from host.cli import app as root_app
from host.testing import OFFLINE_PLUGINS, OfflineHosts

SOURCE = """
from typing import ClassVar
from pydantic import BaseModel, SecretStr
from contracts.agent import Provider, ProviderResult
from contracts.events import EVENTS, MESSAGE_RECEIVED, EventBusProtocol
from contracts.plugin import Manifest, Plugin
from contracts.storage import DatabaseAdapter

HEARD = []


class Primed(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="primed", description="needs its setup")

    def __init__(self, database: DatabaseAdapter, events: EventBusProtocol) -> None:
        self.database = database
        self.events = events
        self.greeting: str | None = None

    async def heard(self, payload):
        HEARD.append(payload.message.content.text)

    async def setup(self) -> None:
        self.greeting = "# Primed\\nready"
        self.events.on(MESSAGE_RECEIVED, self.heard, owner="primed")

    async def teardown(self) -> None:
        self.greeting = None

    async def primed(self, message, state):
        if self.greeting is None:
            raise RuntimeError("primed was not set up")
        return ProviderResult(text=self.greeting)

    def providers(self):
        return [Provider("primed", self.primed)]


class PickySettings(BaseModel):
    api_key: SecretStr | None = None


class Picky(Plugin):
    manifest: ClassVar[Manifest] = Manifest(
        name="picky", description="the SQLite adapter only", settings=PickySettings
    )

    def __init__(self, database: DatabaseAdapter, settings: PickySettings) -> None:
        if type(database).__name__ != "SqliteAdapter":
            key = settings.api_key
            quoted = f" (key {key.get_secret_value()})" if key is not None else ""
            raise RuntimeError(
                f"picky needs the SQLite adapter, got {type(database).__name__}{quoted}"
            )
        self.database = database

    async def picky(self, message, state):
        return ProviderResult(text="# Picky\\nyes")

    def providers(self):
        return [Provider("picky", self.picky)]
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site"
    package = site / "replayprobe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SOURCE)
    info = site / "replayprobe-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: replayprobe\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(
        "[agenthost.plugins]\nprimed = replayprobe:Primed\npicky = replayprobe:Picky\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("replayprobe", None)


async def converse(host: Host) -> str:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    for text in ("I feel sad", "My mother never listens", "Nobody listens"):
        await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=user))
    plugin = host.loader.loaded["audit"].instance
    assert isinstance(plugin, AuditPlugin)
    await plugin.flush()
    return str(runtime.agent_id)


async def replay_cli(
    host: Host, tmp_path: Path, plugin: str, settings: dict[str, object] | None = None
) -> tuple[int, str]:
    agent = await converse(host)
    await host.stop()
    config = tmp_path / "replay.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "agents": {"characters_dir": str(tmp_path / "characters")},
                "plugins": {"enabled": [*OFFLINE_PLUGINS, "audit", plugin], **(settings or {})},
                "http": {"enabled": False},
            }
        )
    )
    result = await asyncio.to_thread(
        CliRunner().invoke, root_app, ["--config", str(config), "events", "replay", agent]
    )
    return result.exit_code, result.output


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AGENTHOST_DATA_DIR", raising=False)
    monkeypatch.delenv("AGENTHOST_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("site", "cli_env")
async def test_a_plugin_is_set_up_for_the_replay(
    tmp_path: Path, offline_host: OfflineHosts
) -> None:
    host = await offline_host("audit", "primed", data_dir=tmp_path / "data")
    code, output = await replay_cli(host, tmp_path, "primed")
    assert code == 0, output
    assert "replay matches the recording" in output
    # its subscription was on the replay's bus: the replayed messages reached it there
    heard = sys.modules["replayprobe"].HEARD
    assert heard == ["I feel sad", "My mother never listens", "Nobody listens"] * 2


@pytest.mark.usefixtures("site", "cli_env")
async def test_a_plugin_failing_on_the_replay_store_is_a_clear_error(
    tmp_path: Path, offline_host: OfflineHosts
) -> None:
    host = await offline_host("audit", "picky", data_dir=tmp_path / "data")
    code, output = await replay_cli(host, tmp_path, "picky")
    assert code != 0
    assert "Traceback" not in output, output
    said = " ".join(output.split())  # rich wraps the line
    assert said.startswith("error: plugin picky takes the memory store"), output
    assert "RuntimeError: picky needs the SQLite adapter, got ReplayStore" in said, output


@pytest.mark.usefixtures("site", "cli_env")
async def test_the_error_of_a_plugin_failing_on_the_replay_store_masks_its_secrets(
    tmp_path: Path, offline_host: OfflineHosts
) -> None:
    """A constructor's error quoting its settings' secret (a key, a DSN's password) is printed
    masked, as the loader masks a plugin's failure."""
    secret = "sk-replay-0123456789abcdef"
    settings = {"picky": {"api_key": secret}}
    host = await offline_host("audit", "picky", data_dir=tmp_path / "data", plugins=settings)
    code, output = await replay_cli(host, tmp_path, "picky", settings)
    assert code != 0
    said = " ".join(output.split())
    assert "RuntimeError: picky needs the SQLite adapter, got ReplayStore (key" in said, output
    assert secret not in output
