"""No configured secret leaves a real host, whatever echoes it.

A local server speaking the OpenAI protocol answers errors quoting the API key it was sent (as
OpenAI's "Incorrect API key provided: sk-..." and many proxies do). The host runs with the
openai, eliza, sqlite and audit plugins, HTTP on 127.0.0.1, logs to a file, and two plugins of
this module whose settings hold a secret: one fails its setup quoting it, one puts it in a metric
label. After traffic on every route (the 502 of a failed model, the streamed ``event: error``,
a reply ELIZA gave after the model failed, ``GET /plugins``, ``/metrics``), no response body,
no stored event, no log line and no byte of any file in the data dir holds a secret; the masks
show where they were.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import httpx
import importlib_metadata
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr

from contracts.config import LoggingSettings
from contracts.eventstore import EVENT_STORE
from contracts.metrics import MetricsCollector
from contracts.plugin import Manifest, Plugin
from host.app import Host
from host.config import load_config
from host.discovery import discover, from_entry_points
from host.http import HttpServer
from host.logs import configure_logging
from host.secrets import MASK

KEY = "sk-proj-Echo0123456789abcdefLEAK"
PASSPHRASE = "vault-passphrase-9f8e7d6c"
TENANT = "tenant-secret-5a4b3c2d"
SECRETS = (KEY, PASSPHRASE, TENANT)
MODELS = ("echo-small", "echo-large", "echo-embed")


class VaultSettings(BaseModel):
    passphrase: SecretStr  # not a secret-sounding name: found by its type


class Vault(Plugin):
    """Fails its setup with an error quoting its secret (a DSN, a URL with a token...)."""

    manifest: ClassVar[Manifest] = Manifest(name="vault", settings=VaultSettings)

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings

    async def setup(self) -> None:
        secret = self.settings.passphrase.get_secret_value()
        raise ConnectionError(f"vault refused https://vault.local/unseal?passphrase={secret}")


class LabellerSettings(BaseModel):
    tenant: SecretStr


class Labeller(Plugin):
    """Puts its secret in a metric label (short enough to pass the label length guard)."""

    manifest: ClassVar[Manifest] = Manifest(name="labeller", settings=LabellerSettings)

    def __init__(self, settings: LabellerSettings, metrics: MetricsCollector) -> None:
        self.settings = settings
        self.metrics = metrics

    async def setup(self) -> None:
        tenant = self.settings.tenant.get_secret_value()
        self.metrics.increment_counter("labeller.logins", 1, {"tenant": tenant})


@dataclass
class EchoServer:
    """OpenAI protocol: models listed, embeddings answered, chat completions failing with
    `status` and a message quoting the bearer token received."""

    status: int = 401
    seen_keys: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> dict[str, Any]:
            body = await request.json()
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            rows = [
                {"object": "embedding", "index": i, "embedding": [0.1 * (i + 1)] * 8}
                for i in range(len(texts))
            ]
            return {"data": rows, "model": body["model"]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            self.seen_keys.append(key)
            message = (
                f"Incorrect API key provided: {key}. You can find your API key at"
                " https://platform.openai.com/account/api-keys."
            )
            error = {"message": message, "type": "invalid_request_error", "param": None}
            return JSONResponse({"error": error}, status_code=self.status)

        return app


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoServer, str]]:
    server = EchoServer()
    http = HttpServer(server.app(), port=0)
    await http.start()
    try:
        yield server, http.url
    finally:
        await http.stop()


def _discovered() -> list[Any]:
    ours = [
        importlib_metadata.EntryPoint(name, f"{__name__}:{target}", "agenthost.plugins")
        for name, target in (("vault", "Vault"), ("labeller", "Labeller"))
    ]
    return [*discover(), *from_entry_points(ours)]


def _leaks(text: str) -> list[str]:
    return [name for name, secret in zip(("key", "passphrase", "tenant"), SECRETS, strict=True)
            if secret in text]  # fmt: skip


async def test_no_secret_leaves_the_host(echo: tuple[EchoServer, str], tmp_path: Path) -> None:
    server, url = echo
    log_file = tmp_path / "host.log"
    sink = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", file=log_file), sink=sink)
    environ = {
        "AGENTHOST_DATA_DIR": str(tmp_path),
        "AGENTHOST_HTTP__PORT": "0",
        "AGENTHOST_AGENTS__CHARACTERS_DIR": str(tmp_path / "characters"),
        "AGENTHOST_PLUGINS__ENABLED": json.dumps(
            ["eliza", "sqlite", "audit", "openai", "vault", "labeller"]
        ),
        "AGENTHOST_PLUGINS__OPENAI__BASE_URL": f"{url}/v1",
        "AGENTHOST_PLUGINS__OPENAI__API_KEY": KEY,
        "AGENTHOST_PLUGINS__OPENAI__SMALL_MODEL": MODELS[0],
        "AGENTHOST_PLUGINS__OPENAI__LARGE_MODEL": MODELS[1],
        "AGENTHOST_PLUGINS__OPENAI__EMBEDDING_MODEL": MODELS[2],
        "AGENTHOST_PLUGINS__VAULT__PASSPHRASE": PASSPHRASE,
        "AGENTHOST_PLUGINS__LABELLER__TENANT": TENANT,
    }
    host = Host(load_config(None, environ=environ), discovered=_discovered())
    bodies: list[str] = []
    try:
        await host.start(http=True)
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:

            async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                response = await client.request(method, path, **kwargs)
                bodies.append(response.text)
                return response

            # a non-retryable model error (401) is a 502 naming the failure, key masked
            failed = await call("POST", "/agents/eliza/messages", json={"text": "hello"})
            assert failed.status_code == 502, failed.text
            assert "Incorrect API key provided" in failed.text and MASK in failed.text

            # the same failure in a streamed reply: one `event: error`, key masked
            streamed = await call("POST", "/agents/eliza/messages/stream", json={"text": "hi"})
            assert streamed.status_code == 200
            assert "event: error" in streamed.text, streamed.text
            error_data = streamed.text.split("event: error", 1)[1]
            assert "Incorrect API key provided" in error_data and MASK in error_data

            # the web console's chat streams the same failure into its page
            page = await call("GET", "/")
            token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
            assert token is not None, page.text[:300]
            form = {"agent": "Eliza", "text": "hello from the console"}
            headers = {"X-CSRF-Token": token.group(1)}
            sent = await call("POST", "/console/chat/send", data=form, headers=headers)
            turn = re.search(r'sse-connect="(/console/stream/[^"]+)"', sent.text)
            assert turn is not None, sent.text[:300]
            console = await call("GET", turn.group(1))
            assert "The reply failed" in console.text and MASK in console.text, console.text

            # a retryable one (500): ELIZA answers, model:used records openai's error
            server.status = 500
            room = str(uuid4())
            body = {"text": "I feel sad", "room_id": room}
            answered = await call("POST", "/agents/eliza/messages", json=body)
            assert answered.status_code == 200, answered.text
            await call("GET", f"/agents/eliza/rooms/{room}/memories")

            plugins = await call("GET", "/plugins")
            vault = next(p for p in plugins.json() if p["name"] == "vault")
            assert vault["status"] == "failed"
            assert f"passphrase={MASK}" in vault["error"], vault["error"]
            await call("GET", "/plugins/vault")

            metrics = await call("GET", "/metrics")
            assert "labeller_logins" in metrics.text
            assert f'tenant="{MASK}"' in metrics.text, metrics.text

        assert server.seen_keys and set(server.seen_keys) == {KEY}  # it did get the key

        audit = host.loader.loaded["audit"].instance
        await audit.flush()  # type: ignore[attr-defined]
        store = await host.container.aresolve(EVENT_STORE)
        errors: list[str] = []
        for event in await store.read_all(limit=100_000):
            stored = json.dumps(event.data) + json.dumps(event.metadata)
            assert not _leaks(stored), (event.event_type, stored)
            if event.event_type == "model:used" and event.data.get("error"):
                errors.append(str(event.data["error"]))
            if event.event_type == "plugin:failed":
                assert MASK in str(event.data["error"])
        assert len(errors) >= 3, errors
        assert all(MASK in e and "Incorrect API key" in e for e in errors), errors
    finally:
        await host.stop()
        configure_logging()

    for body_text in bodies:
        assert not _leaks(body_text), body_text
    logged = sink.getvalue()
    assert "Incorrect API key provided" in logged  # the failures were logged...
    assert not _leaks(logged)  # ...masked
    _assert_no_secret_in_files(tmp_path, log_file)


def _assert_no_secret_in_files(data_dir: Path, log_file: Path) -> None:
    """Every byte the host wrote: memory store, event store (WAL included), log file."""
    written = [p for p in data_dir.rglob("*") if p.is_file()]
    assert log_file in written and any(p.name.startswith("events") for p in written)
    for path in written:
        data = path.read_bytes()
        assert not [s for s in SECRETS if s.encode() in data], path


async def test_agenthost_chat_prints_the_model_error_masked(
    echo: tuple[EchoServer, str], tmp_path: Path
) -> None:
    """The terminal is an exit too: ``agenthost chat`` ending on a model error prints it on
    stderr with the key masked."""
    _, url = echo
    environ = {
        **os.environ,
        "AGENTHOST_DATA_DIR": str(tmp_path),
        "AGENTHOST_PLUGINS__OPENAI__BASE_URL": f"{url}/v1",
        "AGENTHOST_PLUGINS__OPENAI__API_KEY": KEY,
        "AGENTHOST_PLUGINS__OPENAI__SMALL_MODEL": MODELS[0],
        "AGENTHOST_PLUGINS__OPENAI__LARGE_MODEL": MODELS[1],
        "AGENTHOST_PLUGINS__OPENAI__EMBEDDING_MODEL": MODELS[2],
        "USER": "sam",
        "COLUMNS": "400",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).with_name("agenthost")), "chat"],
        input="hello\n",
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Incorrect API key provided: " + MASK in done.stderr, done.stderr
    assert not _leaks(done.stdout + done.stderr)


async def test_the_http_servers_own_error_log_is_scrubbed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An exception no handler turned into a response (a 500) is logged by uvicorn through the
    standard library: routed into the configured sink, its traceback's text masked."""
    from host.secrets import register

    register([PASSPHRASE])
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"cannot unseal with {PASSPHRASE}")

    sink = io.StringIO()
    configure_logging(LoggingSettings(level="INFO"), sink=sink)
    server = HttpServer(app, port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/boom")).status_code == 500
    finally:
        await server.stop()
        configure_logging()
    logged = sink.getvalue()
    assert "Exception in ASGI application" in logged and f"cannot unseal with {MASK}" in logged
    out, err = capfd.readouterr()
    assert not _leaks(logged + out + err), logged + out + err
