"""`agenthost chat`: scripted stdin, history persisted in the SQLite store across sessions."""

from __future__ import annotations

import io

from rich.console import Console

from host.chat import chat_loop

from .runtime_helpers import Rig


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
