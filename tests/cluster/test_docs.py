"""docs/cluster.md's YAML is a valid config (its python block runs in tests/docs)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from contracts.config import HostConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_yaml_example_is_a_valid_configuration() -> None:
    [config] = blocks("yaml")
    loaded = HostConfig.model_validate(yaml.safe_load(config))
    assert loaded.cluster.enabled and loaded.cluster.role == "worker"
    assert loaded.services == {"database": "postgres"}
