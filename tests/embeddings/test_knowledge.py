"""The knowledge base: documents (text, Markdown, PDF; directories recursively) in overlapping
chunks, embedded in batches, on every store; changed files replaced, unchanged ones skipped,
bad ones named and skipped while the rest goes on; never half a document."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.knowledge import KnowledgeStore, chunk_text
from builtin_plugins.knowledge.base import DOCUMENTS_TABLE, TABLE
from contracts.memory import MemoryQuery
from contracts.models import TEXT_EMBEDDING, ModelCallError
from contracts.storage import DatabaseAdapter
from host.cli import app
from host.models import ModelRegistry

from .helpers import DATA, config, echo_host
from .pdfs import BROKEN_PDF, encrypted_pdf, text_pdf


def _models() -> ModelRegistry:
    registry = ModelRegistry()
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    return registry


def test_chunks_overlap_and_end_at_paragraphs_or_sentences() -> None:
    text = ("First paragraph sentence one. Sentence two is here.\n\n" * 10).strip()
    chunks = chunk_text(text, size=120, overlap=30)
    assert all(len(c) <= 120 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # never cut inside a sentence here
    assert len(chunks) > 5
    for earlier, later in itertools.pairwise(chunks):
        assert later[:10] in earlier  # each starts inside the previous one


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(codec="utf-8"), max_size=3000),
    st.integers(20, 400),
    st.integers(0, 19),
)
def test_every_word_is_in_a_chunk_and_chunks_fit(text: str, size: int, overlap: int) -> None:
    chunks = chunk_text(text, size=size, overlap=overlap)
    assert all(0 < len(c) <= size for c in chunks)
    joined = " ".join(chunks)
    for word in text.split():
        if len(word) <= size // 2:  # longer words may be cut (at a chunk boundary)
            assert word in joined


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "nested").mkdir(parents=True)
    for name in ("greyhound-rescue.md", "thermostat-manual.md"):
        (docs / name).write_text((DATA / "docs" / name).read_text())
    (docs / "nested" / "garden-rules.md").write_text(
        (DATA / "docs" / "garden-rules.md").read_text()
    )
    (docs / "nested" / "manual.pdf").write_bytes(
        text_pdf("The boiler must be serviced every autumn.", "Call 555-0100 for repairs.")
    )
    (docs / "locked.pdf").write_bytes(encrypted_pdf())
    (docs / "broken.pdf").write_bytes(BROKEN_PDF)
    (docs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (docs / "huge.md").write_text("word " * 50_000)
    (docs / "image.png").write_bytes(b"\x89PNG")  # not a document suffix: not even tried
    (docs / ".hidden.md").write_text("hidden")
    return docs


async def test_a_directory_is_added_bad_files_named_and_skipped(
    memory_store: DatabaseAdapter, tmp_path: Path
) -> None:
    docs = _corpus(tmp_path)
    seen: list[tuple[str, int, int]] = []
    store = KnowledgeStore(memory_store, _models(), chunk_size=300, overlap=50, max_bytes=100_000)
    outcomes = await store.add_paths(
        [docs, tmp_path / "missing.md"], progress=lambda *a: seen.append(a)
    )
    by_name = {Path(o.source).name: o for o in outcomes}
    assert set(by_name) == {
        "broken.pdf",
        "binary.txt",
        "greyhound-rescue.md",
        "huge.md",
        "latin1.txt",
        "locked.pdf",
        "thermostat-manual.md",
        "garden-rules.md",
        "manual.pdf",
        "missing.md",
    }
    reasons = {n: o.reason for n, o in by_name.items() if o.status == "skipped"}
    assert reasons["locked.pdf"] == "an encrypted PDF"
    assert reasons["broken.pdf"].startswith("a broken PDF")
    assert reasons["binary.txt"] == "a binary file, not text"
    assert reasons["latin1.txt"].startswith("not UTF-8 text")
    assert "over the 100,000-byte limit" in reasons["huge.md"]
    assert reasons["missing.md"] == "no such file or directory"
    added = [o for o in outcomes if o.status == "added"]
    assert len(added) == 4 and all(o.chunks >= 1 for o in added)
    assert by_name["greyhound-rescue.md"].chunks >= 3  # 300-char chunks of a ~1 kB file
    chunks = await memory_store.get_memories(MemoryQuery(table_name=TABLE, order="asc"))
    assert len(chunks) == sum(o.chunks for o in added)
    first = chunks[0].content.model_extra or {}
    assert {"source", "position", "of", "sha256"} <= set(first)
    assert seen[-1][1] == seen[-1][2]  # progress reached each document's chunk count

    found = await store.search("When must the boiler be serviced?", k=2)
    assert found[0].source.endswith("manual.pdf")
    assert "serviced every autumn" in found[0].text
    docs_listed = await store.documents()
    assert sorted(Path(d.source).name for d in docs_listed) == sorted(
        Path(o.source).name for o in added
    )


async def test_changed_files_replace_their_chunks_unchanged_ones_are_skipped(
    memory_store: DatabaseAdapter, tmp_path: Path
) -> None:
    doc = tmp_path / "notes.md"
    doc.write_text("The gate code is 1234.\n\n" + "Filler sentence about the garden. " * 40)
    store = KnowledgeStore(memory_store, _models(), chunk_size=200, overlap=20)
    assert (await store.add_paths([doc]))[0].status == "added"
    assert (await store.add_paths([doc]))[0].status == "unchanged"
    doc.write_text("The gate code is 9876.")
    outcome = (await store.add_paths([doc]))[0]
    assert (outcome.status, outcome.chunks) == ("replaced", 1)
    chunks = await memory_store.get_memories(MemoryQuery(table_name=TABLE))
    assert [c.content.text for c in chunks] == ["The gate code is 9876."]  # old ones gone
    assert await store.remove(str(doc.resolve()))
    assert await memory_store.count_memories(MemoryQuery(table_name=TABLE)) == 0
    assert await memory_store.count_memories(MemoryQuery(table_name=DOCUMENTS_TABLE)) == 0
    assert not await store.remove(str(doc.resolve()))


class _FailingAfter:
    """Embedding calls fail (retryable, as a dead model server) after `calls` of them."""

    def __init__(self, calls: int) -> None:
        self.inner = _models()
        self.calls = calls

    async def use_model(self, model_type: Any, params: Any, *, provider: Any = None) -> Any:
        if model_type is TEXT_EMBEDDING:
            if self.calls == 0:
                raise ModelCallError("model server gone", provider="x", retryable=True)
            self.calls -= 1
        return await self.inner.use_model(model_type, params, provider=provider)


async def test_an_interrupted_ingestion_leaves_no_half_document_and_finishes_on_rerun(
    memory_store: DatabaseAdapter, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Alpha. " * 100)
    (docs / "b.md").write_text("Bravo. " * 100)
    failing = KnowledgeStore(
        memory_store,
        _FailingAfter(3),  # type: ignore[arg-type]
        chunk_size=200,
        overlap=0,
        batch_size=2,
    )
    with pytest.raises(ModelCallError):
        await failing.add_paths([docs])  # a.md: 2 batches of 2 chunks; b.md fails at its 2nd
    rows = await memory_store.get_memories(MemoryQuery(table_name=TABLE))
    sources = {Path(str((r.content.model_extra or {})["source"])).name for r in rows}
    assert sources == {"a.md"}  # b.md: nothing, not half
    store = KnowledgeStore(memory_store, _models(), chunk_size=200, overlap=0)
    outcomes = await store.add_paths([docs])
    assert [o.status for o in outcomes] == ["unchanged", "added"]


def test_the_cli_adds_lists_and_removes_with_progress(tmp_path: Path) -> None:
    docs = _corpus(tmp_path)
    (docs / "huge.md").unlink()
    cfg = tmp_path / "agenthost.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\nplugins: {{enabled: [sqlite, eliza, knowledge]}}\n"
    )
    runner = CliRunner()
    added = runner.invoke(app, ["--config", str(cfg), "knowledge", "add", str(docs)])
    assert added.exit_code == 0, added.stderr
    out = added.stdout
    assert "greyhound-rescue.md" in out and "━" in out  # a progress bar per document
    assert f"skipped {docs / 'locked.pdf'}: an encrypted PDF" in out
    assert f"added {docs / 'nested' / 'manual.pdf'}: 1 chunks" in out
    again = runner.invoke(app, ["--config", str(cfg), "knowledge", "add", str(docs)])
    assert f"unchanged {docs / 'thermostat-manual.md'}" in again.stdout
    listed = runner.invoke(app, ["--config", str(cfg), "knowledge", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0 and "thermostat-manual.md" in listed.stdout
    target = str(docs / "thermostat-manual.md")
    removed = runner.invoke(app, ["--config", str(cfg), "knowledge", "remove", target])
    assert removed.exit_code == 0 and "removed" in removed.stdout
    gone = runner.invoke(app, ["--config", str(cfg), "knowledge", "remove", target])
    assert gone.exit_code == 1 and "no document" in gone.stderr
    typo = runner.invoke(
        app, ["--config", str(cfg), "knowledge", "add", target, "--agent", "Elzia"]
    )
    assert typo.exit_code == 2 and "--agent: no agent named 'Elzia'" in typo.stderr
    assert "known agents: Eliza" in typo.stderr and "Traceback" not in typo.stderr
    bad = runner.invoke(app, ["--config", str(cfg), "knowledge", "add", str(docs / "locked.pdf")])
    assert bad.exit_code == 1 and "an encrypted PDF" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr


async def test_http_routes_add_search_list_and_remove(tmp_path: Path) -> None:
    loaded = config(tmp_path, ["sqlite", "eliza", "knowledge"])
    async with echo_host(loaded, http=True) as host:
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url) as client:
            text = (DATA / "docs" / "thermostat-manual.md").read_text()
            body = {"source": "thermostat", "text": text, "agent": "Eliza"}
            response = await client.post("/knowledge", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "added"
            assert (await client.post("/knowledge", json=body)).json()["status"] == "unchanged"
            found = await client.get(
                "/knowledge/search", params={"q": "blinking red light", "agent": "Eliza"}
            )
            assert found.status_code == 200
            assert "Blinking red" in found.json()[0]["text"]
            assert found.json()[0]["source"] == "thermostat"
            shared = await client.get("/knowledge")
            assert shared.json() == []  # the document is Eliza's, not shared
            mine = await client.get("/knowledge", params={"agent": "Eliza"})
            assert [d["source"] for d in mine.json()] == ["thermostat"]
            bad = await client.post("/knowledge", json={"source": "", "text": "x"})
            assert bad.status_code == 422
            gone = await client.delete("/knowledge", params={"source": "nope"})
            assert gone.status_code == 404 and "no document 'nope'" in gone.json()["detail"]
            ok = await client.delete(
                "/knowledge", params={"source": "thermostat", "agent": "Eliza"}
            )
            assert ok.json() == {"removed": True}
            # a mistyped agent is a 404 naming the known ones, on every route; nothing stored
            typo = {"source": "t", "text": "x", "agent": "Elzia"}
            for answer in (
                await client.post("/knowledge", json=typo),
                await client.get("/knowledge", params={"agent": "Elzia"}),
                await client.get("/knowledge/search", params={"q": "x", "agent": "Elzia"}),
                await client.delete("/knowledge", params={"source": "t", "agent": "Elzia"}),
            ):
                assert answer.status_code == 404, answer.text
                assert "no agent named 'Elzia' (known agents: Eliza)" in answer.json()["detail"]
            assert (await client.get("/knowledge")).json() == []
            # the name in any case, the username or the id name the same agent
            assert (await client.get("/knowledge", params={"agent": "eliza"})).status_code == 200


async def test_http_routes_without_the_plugin_are_503(tmp_path: Path) -> None:
    async with echo_host(config(tmp_path, ["sqlite", "eliza"]), http=True) as host:
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url) as client:
            response = await client.get("/knowledge/search", params={"q": str(uuid4())})
        assert response.status_code == 503
        assert response.json()["detail"] == "the knowledge plugin is not loaded"
