"""docs/cluster.md's code blocks run: the Python example, and the YAML is a valid config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from contracts.cluster import from_cluster, marked_events
from contracts.config import HostConfig
from contracts.events import MESSAGE_SENT

DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_python_example_runs() -> None:
    [code] = blocks("python")
    scope: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert "shop:order_shipped" in marked_events()
    [handler] = scope["handlers"]  # type: ignore[misc]
    assert handler.event is from_cluster(MESSAGE_SENT)
    assert handler.event.name == "cluster:message:sent"


def test_the_yaml_example_is_a_valid_configuration() -> None:
    [config] = blocks("yaml")
    loaded = HostConfig.model_validate(yaml.safe_load(config))
    assert loaded.cluster.enabled and loaded.cluster.role == "worker"
    assert loaded.services == {"database": "postgres"}
