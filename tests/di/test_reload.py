"""Hot reload: a plugin module re-imported with new classes and new token objects."""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from contracts.plugin import Manifest, Plugin
from host.di import Container

SOURCE = textwrap.dedent(
    """
    from __future__ import annotations
    from collections.abc import AsyncIterator
    from contracts.plugin import Manifest, Plugin
    from contracts.services import Service
    from contracts.tokens import Token

    VERSION = {version}
    closed: list[int] = []

    class Client:
        version = VERSION

    CLIENT = Token("weatherx.client", Client)

    async def open_client() -> AsyncIterator[Client]:
        yield Client()
        closed.append(VERSION)

    class WeatherPlugin(Plugin):
        manifest = Manifest(name="weatherx", provides=(CLIENT,))

        def services(self):
            return [Service(CLIENT, open_client)]

    class Forecast:
        def __init__(self, client: Client) -> None:
            self.client = client
    """
)


@dataclass
class Loaded:
    manifest: Manifest
    instance: Plugin


@pytest.fixture
def plugin_module(tmp_path: Path) -> Iterator[tuple[Path, ModuleType]]:
    path = tmp_path / "weatherx_plugin.py"
    path.write_text(SOURCE.format(version=1))
    sys.path.insert(0, str(tmp_path))
    try:
        yield path, importlib.import_module("weatherx_plugin")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("weatherx_plugin", None)


async def test_reloaded_module_rebinds_its_services(
    plugin_module: tuple[Path, ModuleType],
) -> None:
    path, module = plugin_module
    container = Container()
    container.register_plugin(Loaded(module.WeatherPlugin.manifest, module.WeatherPlugin()))
    first = await container.construct(module.Forecast, owner="forecast")
    assert first.client.version == 1

    path.write_text(SOURCE.format(version=2))
    shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)  # same size, same second
    old_closed = module.closed
    await container.aunregister_owner("weatherx")
    assert old_closed == [1]  # the old client was torn down
    new = importlib.reload(module)
    container.register_plugin(Loaded(new.WeatherPlugin.manifest, new.WeatherPlugin()))
    second = await container.construct(new.Forecast, owner="forecast")
    assert second.client.version == 2
    assert type(second.client) is not type(first.client)
    assert container.requirements(new.Forecast) == [new.CLIENT]
    await container.aclose()
    assert new.closed == [2]
