"""A real plugin distribution in a temp dir (package + .dist-info with its entry point) whose
files the reload tests edit, and a dev-mode host that loaded it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from contracts.config import (
    HttpSettings,
    ReloadSettings,
)
from host.app import Host
from host.testing import offline_config

PLUGIN = """
from typing import ClassVar
from contracts.agent import Provider, ProviderResult
from contracts.plugin import Manifest, Plugin

VALUE = "{value}"


class ReloadMe(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="reloadme")

    async def mood(self, message, state):
        return ProviderResult(text="mood: " + VALUE)

    def providers(self):
        return [Provider("mood", self.mood)]
"""

DEPENDENT = """
from typing import ClassVar
from contracts.agent import Provider, ProviderResult
from contracts.plugin import Manifest, Plugin
import reloadme


class Dependent(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="dependent", dependencies=("reloadme",))

    async def echo(self, message, state):
        return ProviderResult(text="dependent sees " + reloadme.VALUE)

    def providers(self):
        return [Provider("echo", self.echo)]
"""


@dataclass
class PluginFiles:
    site: Path

    @property
    def module(self) -> Path:
        return self.site / "reloadme" / "__init__.py"

    def write(self, value: str) -> None:
        self.module.write_text(PLUGIN.format(value=value))

    def break_it(self) -> None:
        self.module.write_text(PLUGIN.format(value="x") + "\ndef broken(:\n")


def _dist(site: Path, name: str, target: str) -> None:
    info = site / f"{name}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[agenthost.plugins]\n{name} = {target}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def plugin_files(tmp_path: Path) -> Iterator[PluginFiles]:
    site = tmp_path / "site"
    (site / "reloadme").mkdir(parents=True)
    (site / "dependent").mkdir()
    files = PluginFiles(site)
    files.write("v1")
    (site / "dependent" / "__init__.py").write_text(DEPENDENT)
    _dist(site, "reloadme", "reloadme:ReloadMe")
    _dist(site, "dependent", "dependent:Dependent")
    sys.path.insert(0, str(site))
    try:
        yield files
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0] in ("reloadme", "dependent")]:
            del sys.modules[name]


@pytest.fixture
async def dev_host(plugin_files: PluginFiles, make_host: HostFactory) -> Host:
    """A dev-mode host (HTTP API on) that loaded ``reloadme`` and ``dependent``."""
    return await make_host("reloadme", "dependent", http=True)


ROOM = uuid4()


async def state_text(host: Host) -> str:
    """The state agent Eliza composes for a message in `ROOM` (the providers' text)."""
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    message = runtime.new_message("how are you?", room_id=ROOM, entity_id=uuid4())
    return (await runtime.compose_state(message)).text


@dataclass
class Site:
    """A directory on sys.path holding real plugin distributions (package + .dist-info)."""

    root: Path

    def add(self, name: str, source: str, *, target: str | None = None) -> Path:
        """Write package `name` (its ``__init__.py`` is `source`) and its distribution."""
        package = self.root / name
        package.mkdir(parents=True, exist_ok=True)
        module = package / "__init__.py"
        module.write_text(source)
        if not (self.root / f"{name}-1.0.0.dist-info").exists():
            _dist(self.root, name, target or f"{name}:Plugin_")
        return module


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """An empty plugin site on sys.path; its packages are dropped from sys.modules afterwards."""
    root = tmp_path / "plugins-site"
    root.mkdir()
    sys.path.insert(0, str(root))
    try:
        yield Site(root)
    finally:
        sys.path.remove(str(root))
        names = {p.name for p in root.iterdir() if p.is_dir()}
        for name in [m for m in sys.modules if m.split(".")[0] in names]:
            del sys.modules[name]


class Probe:
    """What plugin code under test reports to (``import reload_probe``): a log of what ran, and
    a gate a provider can wait on, so tests order events without sleeping."""

    def __init__(self) -> None:
        import asyncio

        self.log: list[str] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()


@pytest.fixture
def probe() -> Iterator[Probe]:
    import types

    module = types.ModuleType("reload_probe")
    instance = Probe()
    module.probe = instance  # type: ignore[attr-defined]
    sys.modules["reload_probe"] = module
    try:
        yield instance
    finally:
        del sys.modules["reload_probe"]


HostFactory = Callable[..., Awaitable[Host]]


@pytest.fixture
async def make_host(tmp_path: Path) -> AsyncIterator[HostFactory]:
    """Start dev-mode hosts with the given plugins (and `ReloadSettings` fields); stops them."""
    started: list[Host] = []

    async def make(*plugins: str, dev: bool = True, http: bool = False, **reload: Any) -> Host:
        config = offline_config(
            tmp_path / f"data{len(started)}",
            *plugins,
            dev=dev,
            http=HttpSettings(port=0),
            reload=ReloadSettings(**reload),
        )
        host = Host(config)
        started.append(host)
        await host.start(http=http)
        return host

    try:
        yield make
    finally:
        for host in reversed(started):
            await host.stop()
