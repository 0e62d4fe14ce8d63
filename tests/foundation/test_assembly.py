"""`host.assembly`: the engine from the config's sections, the agents over it, a store alone."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from contracts.config import HostConfig
from host.assembly import agent_manager, assemble, discover_named, open_store
from host.testing import offline_config


async def test_each_part_gets_its_section_and_cluster_hooks_win() -> None:
    config = HostConfig.model_validate(
        {
            "events": {"handler_timeout": 2.5},
            "agents": {"history": 3},
            "metrics": {"enabled": False},
        }
    )
    engine = assemble(config)
    try:
        assert engine.events.settings is config.events
        fixed = UUID(int=7)
        manager = agent_manager(engine, [], hooks={"ids": lambda: fixed})
        assert manager.settings is config.agents and manager.ids() == fixed
        assert manager.metrics is None  # metrics.enabled: false
    finally:
        await engine.aclose()


async def test_a_store_plugin_opens_alone_with_its_settings(tmp_path: Path) -> None:
    async with open_store("sqlite", {"path": "one.sqlite3"}, data_dir=tmp_path) as db:
        assert db.backend == "sqlite" and await db.count_memories() == 0
    assert (tmp_path / "one.sqlite3").exists()  # under the config's data dir


def test_an_unknown_plugin_name_lists_the_installed() -> None:
    with pytest.raises(LookupError, match=r"no installed plugin called nope \(installed: .*sqlite"):
        discover_named(["nope"])


def test_offline_config_merges_sections(tmp_path: Path) -> None:
    config = offline_config(
        tmp_path, "audit", plugins={"eliza": {"dimension": 32}}, http={"port": 0}
    )
    assert config.plugins.enabled == ["sqlite", "eliza", "audit"]
    assert config.plugins.section("eliza") == {"dimension": 32}
    assert config.http.port == 0 and config.data_dir == tmp_path
    assert config.agents.characters_dir == tmp_path / "characters"
