"""`agenthost chat`: scripted stdin, history persisted in the SQLite store across sessions."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from contracts.agent import Character
from host.assembly import agent_manager
from host.characters import default_character
from host.chat import chat_loop, run_chat

from .runtime_helpers import Rig

REPO = Path(__file__).resolve().parents[2]


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None, force_terminal=False), out


async def test_chat_with_scripted_stdin_and_history(rig: Rig) -> None:
    runtime = rig.agents.get("Eliza")
    console, out = _console()
    stdin = io.StringIO("I feel lonely\n\n/bogus\nMy mother hates me\n/quit\nnever read\n")
    sent = await chat_loop(runtime, stdin=stdin, console=console, user="sam")
    text = out.getvalue()
    assert sent == 2
    assert "Chatting with Eliza" in text
    assert text.count("Eliza>") == 2
    assert "unknown command /bogus" in text
    assert "never read" not in text

    # a new session shows the last messages of the same conversation
    console2, out2 = _console()
    sent = await chat_loop(runtime, stdin=io.StringIO("/history\n"), console=console2, user="sam")
    assert sent == 0
    shown = out2.getvalue()
    assert "last 4 messages" in shown
    assert "sam> I feel lonely" in shown and "sam> My mother hates me" in shown

    # another user has another conversation
    console3, out3 = _console()
    await chat_loop(runtime, stdin=io.StringIO(""), console=console3, user="kim")
    assert "last" not in out3.getvalue()


async def test_chat_new_room_and_non_streaming(rig: Rig) -> None:
    runtime = rig.agents.get("Eliza")
    console, out = _console()
    stdin = io.StringIO("hello\n/new\n/history\nbye\n")
    sent = await chat_loop(runtime, stdin=stdin, console=console, user="sam", stream=False)
    assert sent == 2
    assert "new conversation" in out.getvalue()


def _agenthost_chat(data_dir: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("agenthost")
    return subprocess.run(
        [str(script), "chat", *args],
        input=text,
        cwd=REPO,
        env={**os.environ, "AGENTHOST_DATA_DIR": str(data_dir), "USER": "sam", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_agenthost_chat_process_keeps_history_in_the_default_store(tmp_path: Path) -> None:
    """The real command, stdin piped: ELIZA answers out of the box, the conversation is in
    <data_dir>/agenthost.sqlite3 and the next session starts from it."""
    first = _agenthost_chat(tmp_path, "Men are all alike.\n")
    assert first.returncode == 0, first.stderr
    assert "Chatting with Eliza" in first.stdout and "/quit leaves." in first.stdout
    assert "Eliza> In what way?" in first.stdout
    assert "INFO" not in first.stderr  # logs below WARNING stay out of the conversation
    assert (tmp_path / "agenthost.sqlite3").exists()

    second = _agenthost_chat(tmp_path, "/history\n", "--agent", "eliza")
    assert second.returncode == 0, second.stderr
    assert "last 2 messages" in second.stdout
    assert "> Men are all alike." in second.stdout and "Eliza> In what way?" in second.stdout

    unknown = _agenthost_chat(tmp_path, "", "--agent", "nobody")
    assert unknown.returncode == 1
    assert "no agent named 'nobody' (known agents: Eliza)" in unknown.stderr


async def test_chat_talks_to_eliza_by_default_else_the_first_character(rig: Rig) -> None:
    ada = Character(name="Ada")
    for characters, expected in (([ada, default_character()], "Eliza"), ([ada], "Ada")):
        manager = agent_manager(rig.engine, characters)
        console, out = _console()
        await run_chat(manager, stdin=io.StringIO("hello\n"), console=console, user="sam")
        assert f"Chatting with {expected} " in out.getvalue()
        assert f"{expected}> " in out.getvalue()
        assert manager.running == []  # the agent it started is stopped again


def test_a_bad_character_file_stops_the_start_naming_file_and_field(tmp_path: Path) -> None:
    characters = tmp_path / "characters"
    characters.mkdir()
    (characters / "bad.yaml").write_text("name: Bad\nstyle:\n  all: 3\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("agenthost")), "chat"],
        input="",
        cwd=REPO,
        env={
            **os.environ,
            "AGENTHOST_DATA_DIR": str(tmp_path),
            "AGENTHOST_AGENTS__CHARACTERS_DIR": str(characters),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2  # a configuration error
    assert f"invalid character in {characters / 'bad.yaml'}" in done.stderr
    assert "field 'style.all'" in done.stderr
