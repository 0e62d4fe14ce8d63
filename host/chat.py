"""``agenthost chat``: talk to an agent in the terminal; the conversation is stored like any other.

The room is derived from the agent and the local user name, so running ``agenthost chat`` again
continues the same conversation (its last messages are shown on start). Lines starting with ``/``
are commands: ``/history``, ``/new`` (start a fresh room), ``/quit`` (or end of input).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable
from typing import TextIO
from uuid import UUID, uuid4, uuid5

from rich.console import Console

from contracts.agent import AgentError, Reply
from contracts.memory import Memory
from host.agents import AgentManager
from host.characters import DEFAULT_CHARACTER
from host.runtime import AgentRuntime

__all__ = ["chat_loop", "chat_room", "local_user", "run_chat"]

HELP = (
    "Type a message and press Enter. /history shows the conversation, /new starts a new one,"
    " /quit leaves."
)


def local_user() -> str:
    """The name the local user chats as (the OS login name, else ``you``)."""
    try:
        return getpass.getuser() or "you"
    except Exception:
        return "you"


def chat_room(runtime: AgentRuntime, user: str) -> tuple[UUID, UUID]:
    """(room id, entity id) of `user`'s terminal conversation with this agent (stable)."""
    entity = uuid5(runtime.agent_id, f"cli-user:{user}")
    return uuid5(runtime.agent_id, f"cli-room:{entity}"), entity


def _show(console: Console, runtime: AgentRuntime, memory: Memory, user: str) -> None:
    if memory.entity_id == runtime.agent_id:
        console.print(f"[bold cyan]{runtime.name}>[/] {memory.content.text}", highlight=False)
    else:
        console.print(f"[bold green]{user}>[/] {memory.content.text}", highlight=False)


async def _show_past(
    console: Console, runtime: AgentRuntime, room: UUID, history: int, user: str
) -> None:
    """The conversation's last `history` messages, framed, if it has any."""
    past = await runtime.recent_memories(room, history)
    if past:
        console.print(f"[dim]-- last {len(past)} messages --[/]")
        for memory in past:
            _show(console, runtime, memory, user)
        console.print("[dim]--[/]")


async def chat_loop(
    runtime: AgentRuntime,
    *,
    stdin: TextIO | None = None,
    console: Console | None = None,
    user: str | None = None,
    history: int = 10,
    stream: bool = True,
    read_line: Callable[[], str] | None = None,
) -> int:
    """Chat with `runtime` until end of input or ``/quit``; returns the messages sent."""
    console = console or Console()
    user = user or local_user()
    source = stdin or sys.stdin
    interactive = read_line is None and source.isatty()

    def read() -> str:
        if read_line is not None:
            return read_line()
        if interactive:
            return console.input(f"[bold green]{user}>[/] ")
        line = source.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    room, entity = chat_room(runtime, user)
    console.print(f"[bold]Chatting with {runtime.name}[/] ({runtime.agent_id}). {HELP}")
    await _show_past(console, runtime, room, history, user)
    sent = 0
    while True:
        try:
            line = (await asyncio.to_thread(read)).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line in ("/quit", "/exit", "/q"):
            break
        if line == "/history":
            for memory in await runtime.recent_memories(room, history):
                _show(console, runtime, memory, user)
            continue
        if line == "/new":
            room = uuid4()
            console.print("[dim]-- new conversation --[/]")
            continue
        if line.startswith("/"):
            console.print(f"[red]unknown command {line}[/]. {HELP}")
            continue
        message = runtime.new_message(line, room_id=room, entity_id=entity, name=user, source="cli")
        sent += 1
        reply = await _send(console, runtime, message, stream)
        if reply is not None:
            _show_notes(console, reply)
    return sent


async def _send(
    console: Console, runtime: AgentRuntime, message: Memory, stream: bool
) -> Reply | None:
    """Send one message and print the answer (streamed as it comes, or whole)."""
    if stream:
        console.print(f"[bold cyan]{runtime.name}>[/] ", end="")
        replied = runtime.stream_message(message)
        async for chunk in replied:
            console.print(chunk, end="", highlight=False, markup=False)
        console.print()
        return replied.reply
    reply = await runtime.process_message(message)
    if reply.responded:
        console.print(f"[bold cyan]{runtime.name}>[/] {reply.text}", highlight=False)
    return reply


def _show_notes(console: Console, reply: Reply) -> None:
    """After an answer: which model answered when one was passed over, and failed actions."""
    mark = reply.reply.metadata.get("model_fallback") if reply.reply else None
    if isinstance(mark, dict):
        console.print(
            f"[yellow](answered by {mark.get('to')}: {mark.get('from')} was passed over,"
            f" {mark.get('reason')})[/]",
            highlight=False,
        )
    for result in (*reply.actions, *reply.evaluators):
        if not result.success:
            console.print(f"[yellow]({result.name} failed: {result.error})[/]")


async def run_chat(
    agents: AgentManager,
    agent: str | None = None,
    *,
    stdin: TextIO | None = None,
    console: Console | None = None,
    user: str | None = None,
) -> int:
    """What ``agenthost chat [--agent NAME]`` runs once the host is up: start the agent (when
    `agent` is None: Eliza if configured, else the first character), chat, then stop the agent
    if it started it."""
    if agent is None:
        if not agents.characters:
            raise AgentError("no character is configured (add one to config/characters/)")
        names = [c.name for c in agents.characters]
        agent = next((n for n in names if n.lower() == DEFAULT_CHARACTER), names[0])
    started = agents.find(agent) is None
    runtime = await agents.start(agent)
    try:
        return await chat_loop(runtime, stdin=stdin, console=console, user=user)
    finally:
        if started:
            await agents.stop(runtime.name)
