"""A real host (SQLite, ELIZA, audit) serving its HTTP API on 127.0.0.1 from a thread of its own,
for the synchronous clients of these tests (schemathesis, the CLI)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from contracts.config import HttpSettings
from host.app import Host
from host.testing import offline_config

API_KEY = "devx-test-key"


@dataclass
class LiveHost:
    url: str
    key: str
    host: Host


@pytest.fixture(scope="module")
def live_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHost]:
    tmp = tmp_path_factory.mktemp("live")
    config = offline_config(
        tmp,
        "audit",
        "knowledge",
        "recall",
        # bodies up to 8 MB: a 100,001-character text escaped as JSON passes 1 MB (413 is
        # right, but schemathesis wants invalid data rejected as 4xx other than 413)
        http=HttpSettings(port=0, api_key=SecretStr(API_KEY), max_body_bytes=8_000_000),
    )
    instance = Host(config)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []

    async def serve() -> None:
        loop_box.append(asyncio.get_running_loop())
        stop_box.append(asyncio.Event())
        try:
            await instance.start(http=True)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            raise
        ready.set()
        try:
            await stop_box[0].wait()
        finally:
            await instance.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(60), "the host did not start"
    if failure:
        raise failure[0]
    assert instance.http is not None
    try:
        yield LiveHost(instance.http.url, API_KEY, instance)
    finally:
        loop_box[0].call_soon_threadsafe(stop_box[0].set)
        thread.join(30)


@pytest.fixture(scope="module")
def api_schema(live_host: LiveHost) -> object:
    import schemathesis

    return schemathesis.openapi.from_url(
        f"{live_host.url}/openapi.json", headers={"X-API-Key": live_host.key}
    )
