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


def readme_block(language: str, containing: str = "") -> str:
    """The first `language` code block of the README that contains `containing`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.DOTALL)
    return str(next(block for block in blocks if containing in block))


async def test_readme_plugin_runs_with_yaml_and_env_settings_and_eliza(tmp_path: Path) -> None:
    """The whole example: settings from the README's YAML with the environment overriding
    them, the provider, the event handler and the action triggered by a keyword with ELIZA."""
    from contracts.events import ACTION_COMPLETED
    from host.config import load_config
    from host.testing import AgentTestBuilder

    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_block("python", "class WeatherPlugin"), "README.md", "exec"), namespace)
    plugin_cls = namespace["WeatherPlugin"]
    config_file = tmp_path / "agenthost.yaml"
    config_file.write_text(readme_block("yaml", "  weather:"))
    loaded = load_config(config_file, environ={"AGENTHOST_PLUGINS__WEATHER__CITY": "Bergen"})
    section = loaded.config.plugins.section("weather")
    assert section["keywords"] == ["forecast", "umbrella", "rain"]  # from the YAML
    assert loaded.source_of("plugins.weather.city") != str(config_file)  # the environment won

    builder = AgentTestBuilder().with_plugin(plugin_cls).with_settings(plugins={"weather": section})
    runtime = await builder.build()
    try:
        with runtime.capture_events() as events:
            reply = await runtime.process_message("Will it RAIN tomorrow?")  # ELIZA, no mock
        assert reply.text.endswith("\nTomorrow in Bergen: sun, 24 °C.")
        assert [e.action for e in events.of(ACTION_COMPLETED)] == ["FORECAST"]
        quiet = await runtime.process_message("I feel sad")
        assert "Tomorrow in" not in quiet.text
        action = runtime.components.find_action("FORECAST")
        assert action is not None
        instance = action.handler.__self__  # type: ignore[attr-defined]
        assert instance.asked == 2  # the event handler saw both messages
    finally:
        await builder.aclose()
