"""A plugin's own events: declared in its module, re-declared when hot reload imports it again."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.events import EventError, event_named
from host.events import EventBus

MODULE = """
from contracts.events import Event, EventPayload


class WeatherPayload(EventPayload):
    city: str
    celsius: float


WEATHER_FETCHED = Event("test-reload-weather:fetched", WeatherPayload)
"""


def _import_fresh(name: str) -> Any:
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(name)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "weather_events.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("weather_events", None)


async def test_a_reimported_plugin_module_redeclares_its_events(plugin_dir: Path) -> None:
    old = _import_fresh("weather_events")
    bus = EventBus()
    seen: list[tuple[type, float]] = []
    bus.on(old.WEATHER_FETCHED, lambda p: seen.append((type(p), p.celsius)))

    new = _import_fresh("weather_events")  # what hot reload does
    assert new.WeatherPayload is not old.WeatherPayload
    assert event_named("test-reload-weather:fetched") is new.WEATHER_FETCHED

    # subscriptions made with the old token run for the new one (matched by name), and a
    # payload of the old class (from a not yet reloaded emitter) is converted to the new one
    await bus.emit(new.WEATHER_FETCHED, new.WeatherPayload(city="Lyon", celsius=21.5))
    await bus.emit(new.WEATHER_FETCHED, old.WeatherPayload(city="Oslo", celsius=-3))
    assert seen == [(new.WeatherPayload, 21.5), (new.WeatherPayload, -3.0)]


def test_another_payload_type_under_a_taken_name_is_refused_naming_both(plugin_dir: Path) -> None:
    module = _import_fresh("weather_events")
    (plugin_dir / "weather_clash.py").write_text(
        MODULE.replace("class WeatherPayload", "class OtherPayload").replace(
            "WeatherPayload)", "OtherPayload)"
        )
    )
    with pytest.raises(
        EventError, match=r"weather_events\.WeatherPayload, not weather_clash\.OtherPayload"
    ):
        _import_fresh("weather_clash")
    assert event_named("test-reload-weather:fetched") is module.WEATHER_FETCHED
    sys.modules.pop("weather_clash", None)
