"""The README's plugin example runs: it loads, gets its settings injected and provides state."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import uuid4

from contracts.config import HostConfig, PluginsSettings
from contracts.memory import Content, Memory
from host.config import LoadedConfig
from host.di import Container
from host.discovery import Discovered
from host.loader import Loader

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_readme_plugin_example() -> None:
    text = README.read_text()
    assert text.index("bash scripts/run.sh") < text.index("bash scripts/test.sh")
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    plugin_cls = namespace["WeatherPlugin"]
    config = HostConfig(plugins=PluginsSettings.model_validate({"weather": {"city": "Oslo"}}))
    container = Container()
    loader = Loader(container, [container], config=LoadedConfig(config, None))
    item = Discovered(
        "weather", "readme:WeatherPlugin", None, None, plugin_cls, plugin_cls.manifest
    )
    loaded = await loader.load(item)
    assert loaded is not None
    provider = loaded.instance.providers()[0]
    message = Memory(
        agent_id=uuid4(), entity_id=uuid4(), room_id=uuid4(), content=Content(text="hi")
    )
    result = await provider.get(message, None)
    assert result.text == "It is sunny in Oslo."
    await container.aclose()
