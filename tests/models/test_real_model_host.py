"""The real-model path through the whole host over HTTP (uvicorn on 127.0.0.1), against local
servers that speak the OpenAI protocol: Ollama's names set by ``AGENTHOST_`` variables work on
the first try; the default names on Ollama are a reply from the fallback, marked, not a 502; a
rate limit is retried after its ``Retry-After`` or falls back marked, warned and counted; a slow
stream streams and a dropped one ends in an error event naming it; a character's model
provider, model name and ElizaOS template reach the server."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from host.app import Host
from host.config import load_config
from host.http import HttpServer

from .openai_server import Behaviour, ollama_like, protocol_app

FAST_RETRY = {"wait_initial": "0.01", "wait_jitter": "0", "wait_max": "0.05"}


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    http = HttpServer(protocol_app(behaviour), port=0)
    await http.start()
    try:
        yield http.url, behaviour
    finally:
        await http.stop()


def environ(url: str, **more: str) -> dict[str, str]:
    """What a user sets to point agenthost at a local server (no key: Ollama needs none)."""
    env = {"AGENTHOST_PLUGINS__OPENAI__BASE_URL": f"{url}/v1"}
    for key, value in FAST_RETRY.items():
        env[f"AGENTHOST_PLUGINS__OPENAI__RETRY__{key.upper()}"] = value
    env.update(more)
    return env


async def running(
    tmp_path: Path, env: dict[str, str], models: dict[str, Any] | None = None, **agents: Any
) -> Host:
    overrides: dict[str, Any] = {
        "models": models or {},
        "data_dir": str(tmp_path / "data"),
        "http": {"port": 0},
        "plugins": {"enabled": ["sqlite", "eliza", "openai"]},
        "agents": {"characters_dir": str(tmp_path / "none"), **agents},
    }
    host = Host(load_config(environ=env, overrides=overrides))
    await host.start(http=True)
    return host


async def ask(host: Host, text: str, agent: str = "eliza") -> dict[str, Any]:
    assert host.http is not None
    async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:
        response = await client.post(f"/agents/{agent}/messages", json={"text": text})
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
    assert host.agents is not None  # the reply as the store (SQLite) gives it back
    stored = await host.agents.get(agent).database.get_memory(UUID(reply["reply"]["id"]))
    assert stored is not None
    reply["stored"] = stored.model_dump(mode="json")
    return reply


async def metrics_text(host: Host) -> str:
    assert host.http is not None
    async with httpx.AsyncClient(base_url=host.http.url) as client:
        return (await client.get("/metrics")).text


async def test_ollama_names_set_by_variables_answer_on_the_first_try(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    url, behaviour = server
    behaviour.served = ollama_like().served
    env = environ(
        url,
        AGENTHOST_PLUGINS__OPENAI__MODELS__TEXT_LARGE="llama3.2",
        AGENTHOST_PLUGINS__OPENAI__MODELS__TEXT_EMBEDDING="nomic-embed-text",
    )
    host = await running(tmp_path, env)
    behaviour.requests.clear()  # the start's probe of the embedding model (host/embeddings.py)
    try:
        reply = await ask(host, "Hello there")
        assert reply["text"].startswith("echo: ")
        assert "model_fallback" not in reply["reply"]["metadata"]
        # the incoming message's embedding, the reply, the reply's embedding: one request each
        assert [r["model"] for r in behaviour.requests] == [
            "nomic-embed-text",
            "llama3.2",
            "nomic-embed-text",
        ]
        assert "(fallback)" not in logs.getvalue()
    finally:
        await host.stop()


async def test_default_names_on_ollama_are_a_marked_fallback_not_a_502(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    url, behaviour = server
    behaviour.served = ollama_like().served
    host = await running(tmp_path, environ(url))
    try:
        assert "set plugins.openai.models.text_large" in logs.getvalue()  # said at start
        reply = await ask(host, "Men are all alike.")
        assert reply["text"] == "In what way?"
        mark = {"from": "openai", "to": "eliza", "reason": "model_not_served"}
        assert reply["reply"]["metadata"]["model_fallback"] == {**mark, "model_type": "text_large"}
        assert reply["stored"]["metadata"] == reply["reply"]["metadata"]
        kinds = [m["model_type"] for m in reply["reply"]["metadata"]["model_fallbacks"]]
        assert kinds == ["text_embedding", "text_large"]  # the calls before the reply was saved
        assert behaviour.requests == []  # names known not to be served are not even asked
        exposed = await metrics_text(host)
        assert "# HELP agenthost_model_provider_fallbacks_total Model calls answered by" in exposed
        assert (
            'agenthost_model_provider_fallbacks_total{model_type="text_large",'
            'provider="openai",reason="model_not_served"} 1.0'
        ) in exposed
    finally:
        await host.stop()


async def test_a_rate_limit_is_retried_after_its_retry_after(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, behaviour = server
    host = await running(tmp_path, environ(url))
    behaviour.requests.clear()  # the start's probe of the embedding model (host/embeddings.py)
    behaviour.times.clear()
    behaviour.rate_limits = ["1"]  # the first request: the incoming message's embedding
    try:
        reply = await ask(host, "Hello there")
        assert reply["text"].startswith("echo: ")
        assert "model_fallback" not in reply["reply"]["metadata"]
        assert [("input" in r) for r in behaviour.requests] == [True, True, False, True]
        assert 0.9 <= behaviour.times[1] - behaviour.times[0] < 3.0
    finally:
        await host.stop()


async def test_a_rate_limit_that_lasts_falls_back_warned_counted_and_marked(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    url, behaviour = server
    behaviour.rate_limits = ["3600"] * 10  # longer than plugins.openai.retry.max_retry_after
    host = await running(tmp_path, environ(url), embed=False)
    try:
        started = time.monotonic()
        reply = await ask(host, "Men are all alike.")
        assert time.monotonic() - started < 5.0  # not waited for
        assert reply["text"] == "In what way?"
        expected = {"from": "openai", "to": "eliza", "reason": "rate_limited",
                    "model_type": "text_large"}  # fmt: skip
        assert reply["reply"]["metadata"] == {"model_fallback": expected}
        assert reply["stored"]["metadata"] == {"model_fallback": expected}
        assert len(behaviour.requests) == 1
        warnings = [x for x in logs.getvalue().splitlines() if "(fallback)" in x]
        assert len(warnings) == 1 and warnings[0].startswith("WARNING text_large: provider openai")
        assert "rate_limited" in warnings[0]
        assert (
            'agenthost_model_provider_fallbacks_total{model_type="text_large",'
            'provider="openai",reason="rate_limited"} 1.0'
        ) in await metrics_text(host)
    finally:
        await host.stop()


async def stream(host: Host, text: str) -> list[tuple[str, Any]]:
    assert host.http is not None
    events: list[tuple[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=host.http.url, timeout=30) as client,
        client.stream("POST", "/agents/eliza/messages/stream", json={"text": text}) as response,
    ):
        assert response.status_code == 200
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    return events


async def test_a_slow_stream_and_a_dropped_one_through_the_host(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    url, behaviour = server
    behaviour.chunk_delay = 0.3
    behaviour.reply = "one two three four five six"
    host = await running(tmp_path, environ(url), models={"timeout": 1.0}, embed=False)
    try:
        started = time.monotonic()
        events = await stream(host, "count to six")
        assert time.monotonic() - started > 1.4  # longer than models.timeout: a chunk each 0.3 s
        chunks = [data["text"] for kind, data in events if kind == "chunk"]
        assert len(chunks) >= 3
        kind, reply = events[-1]
        assert kind == "reply" and reply["text"] == "one two three four five six"
        assert "".join(chunks) == reply["text"]
        behaviour.chunk_delay = 1.5  # stalled past models.timeout after its first chunk
        kind, error = (await stream(host, "stall"))[-1]
        assert kind == "error" and "openai took over 1.0s" in error["detail"]
        behaviour.chunk_delay = 0.0
        behaviour.drop_after = 3
        events = await stream(host, "four five six")
        kinds = [kind for kind, _ in events]
        assert kinds[-1] == "error" and set(kinds[:-1]) == {"chunk"}  # no reply event
        assert "broke off after 3 chunks" in events[-1][1]["detail"]
        # a failure the engine names is logged in a line, without a traceback (the test
        # server's own uvicorn log may hold one: it cuts the stream on purpose)
        lines = logs.getvalue().splitlines()
        for failure in ("openai took over 1.0s", "broke off after 3 chunks"):
            at = next(i for i, line in enumerate(lines) if "streamed reply failed" in line
                      and failure in line)  # fmt: skip
            assert lines[at].startswith("ERROR")
            assert not any(x.startswith("Traceback") for x in lines[at + 1 : at + 2])
        behaviour.drop_after = 0  # dropped before its first chunk: ELIZA answers, marked
        kind, reply = (await stream(host, "Men are all alike."))[-1]
        assert kind == "reply" and reply["text"] == "In what way?"
        assert reply["reply"]["metadata"]["model_fallback"]["reason"] == "stream_cut"
        assert host.http is not None  # the mark is read back with the room's memories too
        room = reply["room_id"]
        async with httpx.AsyncClient(base_url=host.http.url) as client:
            page = (await client.get(f"/agents/eliza/rooms/{room}/memories")).json()
        stored = next(m for m in page["items"] if m["id"] == reply["reply"]["id"])
        assert stored["metadata"]["model_fallback"]["reason"] == "stream_cut"
        behaviour.drop_after = None  # the host serves on
        assert (await stream(host, "seven"))[-1][0] == "reply"
    finally:
        await host.stop()


async def test_a_characters_provider_model_and_template_reach_the_server(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    url, behaviour = server
    behaviour.served = ollama_like().served
    characters = tmp_path / "characters"
    characters.mkdir()
    (characters / "ada.json").write_text(
        json.dumps(
            {
                "name": "Ada",
                "modelProvider": "openai",
                "settings": {"model": "qwen2.5:7b", "embeddingModel": "nomic-embed-text"},
                "templates": {
                    "messageHandlerTemplate": "Task: reply as {{agentName}}.\n{{providers}}",
                    "shouldRespondTemplate": "never used",
                },
                "clients": ["discord"],
            }
        )
    )
    host = await running(tmp_path, environ(url), characters_dir=str(characters))
    behaviour.requests.clear()  # the start's probe of the embedding model (host/embeddings.py)
    try:
        reply = await ask(host, "Hello Ada", agent="ada")
        assert reply["text"].startswith("echo: Task: reply as Ada.")
        assert reply["text"].endswith("# Message from user\nHello Ada")
        assert [r["model"] for r in behaviour.requests] == [
            "nomic-embed-text",
            "qwen2.5:7b",
            "nomic-embed-text",
        ]
        assert "model_fallback" not in reply["reply"]["metadata"]
        text = logs.getvalue()
        for field in ("clients", "templates.shouldRespondTemplate"):
            lines = [x for x in text.splitlines() if f"field {field!r} is kept but not used" in x]
            assert len(lines) == 1 and str(characters / "ada.json") in lines[0]
        assert "'templates.messageHandlerTemplate'" not in text
    finally:
        await host.stop()


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_blocks() -> tuple[dict[str, str], str]:
    """The variables and the character of README's "Use a real model" section."""
    section = README.read_text().split("## Use a real model", 1)[1].split("\n## ", 1)[0]
    shell = section.split("```bash\n", 1)[1].split("```", 1)[0]
    character = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {}
    for line in shell.splitlines():
        if line.startswith("export "):
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value
    return env, character


async def test_the_readme_settings_run_against_an_ollama_like_server(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    url, behaviour = server
    behaviour.served = ollama_like().served
    env, character = readme_blocks()
    assert env["AGENTHOST_PLUGINS__OPENAI__BASE_URL"] == "http://127.0.0.1:11434/v1"
    env["AGENTHOST_PLUGINS__OPENAI__BASE_URL"] = f"{url}/v1"  # the local Ollama-like server
    characters = tmp_path / "characters"
    characters.mkdir()
    (characters / "ada.yaml").write_text(character)
    host = await running(tmp_path, env, characters_dir=str(characters))
    behaviour.requests.clear()  # the start's probe of the embedding model (host/embeddings.py)
    try:
        assert "not served" not in logs.getvalue()
        reply = await ask(host, "Hello Ada", agent="ada")
        assert reply["text"].startswith("echo: ") and reply["reply"]["metadata"] == {}
        assert [r["model"] for r in behaviour.requests] == [
            "nomic-embed-text",
            "qwen2.5:7b",  # Ada's own model
            "nomic-embed-text",
        ]
    finally:
        await host.stop()


OPENAI_DEFAULTS = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]


async def test_the_readme_openai_settings_run_against_an_openai_like_server(
    server: tuple[str, Behaviour], tmp_path: Path, logs: io.StringIO
) -> None:
    """README's OpenAI lines (the key, the default names) against a server serving OpenAI's
    names: the key is sent, the default names answer on the first try."""
    url, behaviour = server
    behaviour.served = list(OPENAI_DEFAULTS)
    section = README.read_text().split("## Use a real model", 1)[1].split("\n## ", 1)[0]
    shell = section.split("```bash\n", 1)[1].split("```", 1)[0]
    _ollama, openai_lines = shell.split("# or OpenAI", 1)
    assert all(name in openai_lines.splitlines()[0] for name in OPENAI_DEFAULTS)
    env = {}
    for line in openai_lines.splitlines():
        if line.startswith("export "):
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value
    assert list(env) == ["AGENTHOST_PLUGINS__OPENAI__API_KEY"]
    env["AGENTHOST_PLUGINS__OPENAI__BASE_URL"] = f"{url}/v1"  # api.openai.com, played locally
    host = await running(tmp_path, env)
    behaviour.requests.clear()  # the start's probe of the embedding model (host/embeddings.py)
    try:
        assert "not served" not in logs.getvalue()
        reply = await ask(host, "Hello there")
        assert reply["text"].startswith("echo: ") and reply["reply"]["metadata"] == {}
        assert [r["model"] for r in behaviour.requests] == [
            "text-embedding-3-small",
            "gpt-4o",
            "text-embedding-3-small",
        ]
        key = env["AGENTHOST_PLUGINS__OPENAI__API_KEY"]
        assert {h.get("authorization") for h in behaviour.headers} == {f"Bearer {key}"}
    finally:
        await host.stop()


async def test_a_base_url_that_is_no_url_fails_the_plugin_naming_the_variable(
    tmp_path: Path,
) -> None:
    """Refused when the plugin loads, naming where it was set; the host serves with ELIZA."""
    host = await running(tmp_path, {"AGENTHOST_PLUGINS__OPENAI__BASE_URL": "not a url"})
    try:
        status = {s.name: s for s in host.statuses}["openai"]
        assert status.state == "failed"
        assert "AGENTHOST_PLUGINS__OPENAI__BASE_URL" in (status.error or "")
        assert "must be an http:// or https:// URL with a host" in (status.error or "")
        assert host.agents is not None
        runtime = host.agents.get("Eliza")
        message = runtime.new_message("Men are all alike.", room_id=uuid4(), entity_id=uuid4())
        reply = await runtime.process_message(message)
        assert reply.text == "In what way?"
    finally:
        await host.stop()
