"""The assembled `Host` over HTTP: characters from files and inline config, and the API key on
every route the host mounts (its own, ``/metrics``, ``/stats``, the dev reload route) but health."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from typer.testing import CliRunner

from contracts.config import (
    AgentsSettings,
    HttpSettings,
    LoggingSettings,
)
from host.app import Host
from host.cli import app
from host.http import API_KEY_HEADER
from host.logs import configure_logging, plugin_logger
from host.testing import OfflineHosts

DATA = Path(__file__).parent / "data"
KEY = "s3cret-key"


@pytest.fixture
async def host(tmp_path: Path, offline_host: OfflineHosts) -> Host:
    characters = tmp_path / "characters"
    characters.mkdir()
    shutil.copy(DATA / "elizaos_character.json", characters / "ada.json")
    return await offline_host(
        serve=True,
        dev=True,  # mounts the reload route, which must be guarded too
        http=HttpSettings(port=0, api_key=KEY),
        agents=AgentsSettings(
            characters_dir=characters,
            characters=[{"name": "Inline", "bio": "Defined in the config."}],
        ),
    )


def _concrete(path: str) -> str:
    """A route path with its parameters filled in (an agent name, a uuid, a plugin name)."""
    values = {"agent": "Inline", "room_id": str(uuid4()), "name": "eliza"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


async def test_every_route_but_health_needs_the_key(host: Host) -> None:
    assert host.http is not None
    schema = host.http.config.app.openapi()  # every route but the two docs routes below
    routes = [(path, [m.upper() for m in ops]) for path, ops in schema["paths"].items()]
    routes += [("/openapi.json", ["GET"]), ("/docs", ["GET"])]
    paths = {path for path, _ in routes}
    assert {"/metrics", "/stats", "/plugins", "/plugins/{name}", "/plugins/{name}/reload"} <= paths
    assert "/agents/{agent}/messages" in paths
    async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:
        assert (await client.get("/health")).status_code == 200
        for path, methods in routes:
            if path == "/health":
                continue
            for method in methods:
                response = await client.request(method, _concrete(path), json={"text": "hi"})
                assert response.status_code == 401, (method, path, response.text)
        # the same routes answer with the key
        headers = {API_KEY_HEADER: KEY}
        assert (await client.get("/stats", headers=headers)).status_code == 200
        assert (await client.get("/metrics", headers=headers)).status_code == 200


async def test_the_cli_reads_a_running_host_with_the_configured_key(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plugins list --url`` and ``stats --url`` send the API key from the config (here the
    environment); without it the host's 401 is reported, exit 1."""
    assert host.http is not None
    monkeypatch.chdir(tmp_path)  # no config/ here: settings come from the environment alone
    args = ["plugins", "list", "--url", host.http.url, "--json"]
    refused = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert refused.exit_code == 1 and "HTTP 401" in refused.output
    monkeypatch.setenv("AGENTHOST_HTTP__API_KEY", KEY)
    listed = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.output)}
    assert rows["sqlite"]["status"] == rows["eliza"]["status"] == "loaded"
    assert rows["eliza"]["last_reload"] is None
    table = await asyncio.to_thread(CliRunner().invoke, app, args[:-1])
    # piped (CliRunner is no terminal): plain columns under a header line
    header, *lines = table.output.splitlines()
    assert table.exit_code == 0 and header.split() == [
        "name",
        "version",
        "distribution",
        "status",
        "error",
    ]
    assert ["eliza", "0.1.0", "agenthost", "loaded"] in [line.split() for line in lines]
    stats = await asyncio.to_thread(CliRunner().invoke, app, ["stats", "--url", host.http.url])
    assert stats.exit_code == 0 and stats.output.split()[:2] == ["metric", "tags"]


async def test_characters_from_files_and_inline_config(host: Host) -> None:
    assert host.http is not None
    headers = {API_KEY_HEADER: KEY}
    async with httpx.AsyncClient(base_url=host.http.url, headers=headers, timeout=30) as client:
        agents = (await client.get("/agents")).json()
        assert sorted(a["name"] for a in agents) == ["Ada", "Inline"]
        assert all(a["running"] for a in agents)
        inline = next(a for a in agents if a["name"] == "Inline")
        assert inline["bio"] == ["Defined in the config."]
        reply = await client.post("/agents/inline/messages", json={"text": "Men are all alike."})
        assert reply.status_code == 200 and reply.json()["text"] == "In what way?"
        # the ElizaOS character file, as it is, is a working agent
        ada = await client.post("/agents/ada/messages", json={"text": "I am unhappy."})
        assert ada.status_code == 200 and ada.json()["responded"] is True
        assert ada.json()["agent_id"] == next(a["id"] for a in agents if a["name"] == "Ada")


async def test_a_bad_inline_character_names_the_config_entry(offline_host: OfflineHosts) -> None:
    host = await offline_host(
        start=False, http=HttpSettings(enabled=False), agents={"characters": [{"bio": ["x"]}]}
    )
    with pytest.raises(Exception, match=r"config agents\.characters\[0\][\s\S]*'name'"):
        await host.start()


async def test_character_secrets_are_masked_in_logs(host: Host) -> None:
    assert host.agents is not None
    secret = host.agents.get("ada").character.secrets["OPENAI_API_KEY"]
    sink = io.StringIO()
    configure_logging(LoggingSettings(level="INFO"), sink=sink)
    try:
        plugin_logger("careless").info("calling the model with {}", secret)
    finally:
        configure_logging()
    assert secret == "sk-test-not-a-real-key"
    assert "calling the model with **********" in sink.getvalue()
    assert secret not in sink.getvalue()
