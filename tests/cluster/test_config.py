"""Cluster mode is off by default, and a cluster configuration that cannot work is refused
with a message naming the setting (no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from contracts.config import HostConfig
from host.app import Host
from host.cli import app
from host.cluster.node import ClusterConfigError


def test_single_process_stays_the_default() -> None:
    config = HostConfig()
    assert config.cluster.enabled is False
    assert Host(config).cluster is None


def test_cluster_mode_needs_the_memories_in_postgres() -> None:
    config = HostConfig.model_validate({"cluster": {"enabled": True}})
    with pytest.raises(ClusterConfigError, match=r"services\.database to postgres"):
        Host(config)
    config = HostConfig.model_validate(
        {"cluster": {"enabled": True}, "services": {"database": "postgres"}}
    )
    with pytest.raises(ClusterConfigError, match=r"cluster\.postgres_url or plugins\.postgres"):
        Host(config)


def test_a_bad_node_id_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="node_id"):
        HostConfig.model_validate({"cluster": {"node_id": "has a space"}})


@pytest.mark.parametrize("command", [["run", "--role", "worker"], ["cluster", "status"]])
def test_the_cli_names_what_is_missing(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "agenthost.yaml"
    config.write_text(yaml.safe_dump({"services": {"database": "postgres"}}))
    result = CliRunner().invoke(app, ["--config", str(config), *command])
    assert result.exit_code == 1
    assert "cluster.postgres_url or plugins.postgres.url" in result.output
    assert "Traceback" not in result.output


def test_a_retention_not_well_above_the_lease_is_refused_naming_the_fields() -> None:
    """A message purged before its worker read back a commit whose answer was lost would read
    as not committed (and be committed again)."""
    with pytest.raises(ValueError, match=r"cluster\.retention \(15 s\).*cluster\.lease \(10 s\)"):
        HostConfig.model_validate({"cluster": {"retention": 15, "lease": 10}})
    config = HostConfig.model_validate({"cluster": {"retention": 20, "lease": 10}})
    assert config.cluster.retention == 20
    assert HostConfig.model_validate({"cluster": {"retention": None}}).cluster.retention is None
