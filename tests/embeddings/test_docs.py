"""docs/embeddings.md: its configuration blocks validate, its commands exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from builtin_plugins.e5 import E5Settings
from builtin_plugins.knowledge import KnowledgeSettings
from builtin_plugins.recall import RecallSettings
from contracts.config import HostConfig
from host.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "embeddings.md"
SETTINGS = {"e5": E5Settings, "recall": RecallSettings, "knowledge": KnowledgeSettings}


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"^ *```{kind}\n(.*?)^ *```", DOC.read_text(), re.S | re.M)


def test_every_configuration_block_validates() -> None:
    blocks = _blocks("yaml")
    assert len(blocks) == 3
    for block in blocks:
        data = yaml.safe_load(block)
        HostConfig.model_validate(data)
        for name, section in (data.get("plugins") or {}).items():
            SETTINGS[name].model_validate(section)


def test_every_agenthost_command_exists() -> None:
    runner = CliRunner()
    lines = [
        line.split("#")[0].strip()
        for block in _blocks("console")
        for line in block.splitlines()
        if line.strip().startswith("agenthost ")
    ]
    assert len(lines) == 4
    for line in lines:
        argv = shlex.split(line)[1:]
        words = [a for a in argv if not a.startswith("-") and "/" not in a and "." not in a]
        result = runner.invoke(app, [*words[:2], "--help"])
        assert result.exit_code == 0, (line, result.output)
    assert runner.invoke(app, ["memory", "reembed", "--help"]).exit_code == 0
