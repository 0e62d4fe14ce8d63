"""The docs runner: every python block of README.md and docs/*.md runs, so the docs cannot rot.

A document's blocks run in order in one namespace (a later block uses what an earlier one
defined), top-level ``await`` allowed, on one event loop per document. The names a document's
fragments take as given (``db``, ``bus``, ``store``...) come from its entry in `CONTEXTS`,
real objects built for it; what a document's blocks must have done is checked by its entry in
`CHECKS`. A block that must not run is marked, visibly, on the line before its fence::

    <!-- docs-runner: skip (the reason) -->

and the reason is required.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SKIP = re.compile(r"<!--\s*docs-runner:\s*skip\s*(?:\((.*?)\))?\s*-->\s*$")

Namespace = dict[str, Any]


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    code: str
    skip: str | None
    """Why it does not run (the marker's reason), None: it runs."""

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The python blocks of `doc`, with the line each starts at and its skip marker."""
    text = doc.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
        marker = SKIP.search(before)
        reason = None if marker is None else (marker.group(1) or "").strip()
        if marker is not None and not reason:
            raise AssertionError(f"{doc.name}: a docs-runner skip marker without a reason")
        line = text.count("\n", 0, match.start()) + 2
        found.append(Block(doc, line, match.group(1), reason))
    return found


def run_block(block: Block, namespace: Namespace, loop: asyncio.AbstractEventLoop) -> None:
    """Execute `block` in `namespace` (awaiting it on `loop` when it awaits at top level)."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(block.code, block.where, "exec", flags=flags)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        loop.run_until_complete(result)


# What the documents' fragments take as given --------------------------------------------------


@contextlib.asynccontextmanager
async def _cache(tmp: Path) -> AsyncIterator[Namespace]:
    from contracts import ProviderResult

    async def count_notes(message: Any, state: Any) -> ProviderResult:
        return ProviderResult(text="3 notes")

    yield {"count_notes": count_notes}


@contextlib.asynccontextmanager
async def _events(tmp: Path) -> AsyncIterator[Namespace]:
    from host.events import EventBus

    bus = EventBus()
    try:
        yield {"bus": bus}
    finally:
        await bus.aclose()


@contextlib.asynccontextmanager
async def _storage(tmp: Path) -> AsyncIterator[Namespace]:
    from host.assembly import open_store

    async with open_store("sqlite", {"path": tmp / "docs.sqlite3"}) as db:
        yield {
            "db": db,
            "agent": uuid4(),
            "user": uuid4(),
            "room": uuid4(),
            "embedding": [0.1, 0.2, 0.3],
        }


@contextlib.asynccontextmanager
async def _eventstore(tmp: Path) -> AsyncIterator[Namespace]:
    """A host recording its audit trail after one message, and what replaying it takes."""
    from contracts import DomainEvent
    from contracts.eventstore import EVENT_STORE
    from host.eventstore.replay import host_runtime_factory, replay_conversation
    from host.testing import OfflineHosts

    hosts = OfflineHosts(tmp)
    try:
        host = await hosts("audit", http={"enabled": False})
        assert host.agents is not None
        eliza = host.agents.get("Eliza")
        await eliza.process_message(
            eliza.new_message("I feel sad", room_id=uuid4(), entity_id=uuid4())
        )
        await host.loader.loaded["audit"].instance.flush()  # the trail, written
        store = await host.container.aresolve(EVENT_STORE)
        agent_id = eliza.agent_id

        def decide(events: list[DomainEvent]) -> list[DomainEvent]:
            return [DomainEvent(aggregate_id="order-42", event_type="order:placed")]

        yield {
            "store": store,
            "agg": "order-42",
            "decide": decide,
            "host": host,
            "agent_id": agent_id,
            "make_runtime": host_runtime_factory(host, store, str(agent_id)),
            "replay_conversation": replay_conversation,
        }
    finally:
        await hosts.aclose()


CONTEXTS: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[Namespace]]] = {
    "cache.md": _cache,
    "events.md": _events,
    "storage.md": _storage,
    "eventstore.md": _eventstore,
}


# What the documents' blocks must have done ---------------------------------------------------


def _check_readme(ns: Namespace, out: str) -> None:
    assert ns["WeatherPlugin"].manifest.name == "weather"


def _check_di(ns: Namespace, out: str) -> None:
    assert "session closed" in out


def _check_isolation(ns: Namespace, out: str) -> None:
    from contracts.agent import ProviderResult
    from host.components import ComponentRegistry
    from host.events import EventBus

    provider = ns["provider"]
    ComponentRegistry().add("stocks", providers=[provider])
    assert isinstance(provider.get(None, None), ProviderResult)
    EventBus().subscribe_plugin(
        "stocks", type("P", (), {"event_handlers": lambda s: [ns["handler"]]})()
    )


def _check_cluster(ns: Namespace, out: str) -> None:
    from contracts.cluster import from_cluster, marked_events
    from contracts.events import MESSAGE_SENT

    assert "shop:order_shipped" in marked_events()
    [handler] = ns["handlers"]
    assert handler.event is from_cluster(MESSAGE_SENT)
    assert handler.event.name == "cluster:message:sent"
    from contracts.cluster import MESSAGE_COMMITTED

    assert [h.event for h in ns["try_handlers"]][1] is MESSAGE_COMMITTED


def _check_events(ns: Namespace, out: str) -> None:
    assert "started Eliza" in out
    assert ns["WEATHER_FETCHED"].name == "weather:fetched"


def _check_eventstore(ns: Namespace, out: str) -> None:
    assert ns["report"].ok and ns["report"].messages == 1
    assert ns["version"] == 0  # the loop read the aggregate's version, then appended


def _check_testing(ns: Namespace, out: str, loop: asyncio.AbstractEventLoop) -> None:
    from host.testing import AgentTestBuilder

    loop.run_until_complete(ns["test_testbot_answers_with_the_time"]())
    builder = AgentTestBuilder()
    try:
        loop.run_until_complete(ns["test_with_the_fixtures"](builder))
    finally:
        loop.run_until_complete(builder.aclose())


def _check_runtime(ns: Namespace, out: str, loop: asyncio.AbstractEventLoop) -> None:
    from contracts.models import TEXT_LARGE
    from host.testing import AgentTestBuilder

    async def run() -> None:
        builder = (
            AgentTestBuilder()
            .with_plugin(ns["ClockPlugin"])
            .mock_model(TEXT_LARGE, "ACTIONS: TIME")
        )
        async with builder as runtime:
            reply = await runtime.process_message("What time is it?")
        assert re.fullmatch(r"It is \d\d:\d\d\.", reply.text)

    loop.run_until_complete(run())


CHECKS: dict[str, Callable[..., None]] = {
    "README.md": _check_readme,
    "di.md": _check_di,
    "isolation.md": _check_isolation,
    "cluster.md": _check_cluster,
    "events.md": _check_events,
    "eventstore.md": _check_eventstore,
    "testing.md": _check_testing,
    "runtime.md": _check_runtime,
}


@contextlib.contextmanager
def _loop() -> Iterator[asyncio.AbstractEventLoop]:
    # closed as `asyncio.run` closes its loop: the tasks left (the bus's deadline sweeper) are
    # cancelled first, so nothing of this loop outlives it into the next test's
    with asyncio.Runner() as runner:
        yield runner.get_loop()


WITH_BLOCKS = [doc for doc in DOCS if blocks(doc)]


@pytest.mark.parametrize("doc", WITH_BLOCKS, ids=[d.name for d in WITH_BLOCKS])
def test_every_python_block_runs(
    doc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The document's blocks run in order in one namespace, then its check (if any) holds."""
    context = CONTEXTS.get(doc.name)
    with _loop() as loop:
        manager = context(tmp_path) if context is not None else None
        given = loop.run_until_complete(manager.__aenter__()) if manager is not None else {}
        try:
            namespace: Namespace = {"__name__": f"docs_{doc.stem}", **given}
            for block in blocks(doc):
                if block.skip is not None:
                    continue
                try:
                    run_block(block, namespace, loop)
                except Exception as exc:
                    pytest.fail(f"{block.where}: the python block failed: {exc!r}\n{block.code}")
            check = CHECKS.get(doc.name)
            if check is not None:
                out = capsys.readouterr().out
                if len(inspect.signature(check).parameters) == 3:
                    check(namespace, out, loop)
                else:
                    check(namespace, out)
        finally:
            if manager is not None:
                loop.run_until_complete(manager.__aexit__(None, None, None))


def test_every_document_with_code_is_run_and_every_skip_says_why() -> None:
    """No python block escapes the runner: each runs, or is marked with a reason."""
    names = {doc.name for doc in WITH_BLOCKS}
    assert {"README.md", "di.md", "storage.md", "eventstore.md"} <= names
    assert set(CONTEXTS) <= names and set(CHECKS) <= names  # no entry for a vanished doc
    for doc in WITH_BLOCKS:
        for block in blocks(doc):
            assert block.skip is None or block.skip.strip(), block.where
