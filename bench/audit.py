"""The audit trail's CPU per message against the pipeline's own (issue 20, target 7).

The paired A/B of ``bench/pipeline.py`` (two hosts, audit on and off) measures the trail's
cost where it is paid, but on a shared machine its rounds range over -80%..+300% and its median
moves by 10 points between runs. This measures the two parts separately, in alternating rounds
of the same run:

- **pipeline**: the default host with the audit plugin disabled, messages into one room, each
  reply awaited: its process CPU per message (every thread) and wall time per message;
- **audit trail**: the audit plugin's own recorder and SQLite store, fed the 7 real payloads of
  each message (captured from a default host) one message every pipeline wall time, so batches
  form as in the pipeline; its process CPU per message minus that of the loop idling as long;
- **the writer's work alone**: the same conversion and appends on one thread with no event loop
  running beside it, in batches of 11 messages (a 20 ms window): steadier on a loaded machine,
  though it leaves out what the trail costs next to a running loop; once back to back, once with
  the thread idle for the window between batches (as the writer is in the rounds);
- **by phase**: the writer thread's CPU converting and appending in the rounds (thread CPU
  clocks around the two calls), and `record`'s cost on the loop (7 calls a message, hot);
- **the writer process** (``writer: process``, the default on a SQLite file): its CPU per
  message in the rounds (/proc schedstat), not in the host process's CPU above; the ratio is
  given without and with it (the host's share is what the pipeline pays; both are the truth).
  ``--writer thread`` measures the writer thread appending itself instead.

The ratio (audit / pipeline CPU) is what the trail adds to the pipeline's CPU if nothing else
changes; contention for the GIL and the cores comes on top (the A/B shows it).

    .venv/bin/python bench/audit.py              # 6 rounds of 100 messages
    .venv/bin/python bench/audit.py --rounds 3 -n 50
    .venv/bin/python bench/audit.py --flush-interval 0.05   # a longer window: fewer commits
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from pipeline import TEXTS, start_host, warm_up
from rich.console import Console
from rich.table import Table

from builtin_plugins.audit import AuditRecorder, AuditSettings, open_event_store
from host.app import Host

console = Console(width=120)


async def captured_payloads(directory: Path, count: int) -> list[list[tuple[str, object]]]:
    """The payloads the audit plugin of a default host records for each of `count` messages."""
    host = await start_host(directory, "hashed")
    try:
        recorder = host.loader.loaded["audit"].instance.recorder
        record = recorder.record
        current: list[tuple[str, object]] = []

        def capture(event_type: str, payload: object) -> None:
            current.append((event_type, payload))
            record(event_type, payload)

        recorder.record = capture
        runtime = host.agents.get("Eliza")
        room, user = uuid4(), uuid4()
        messages = []
        for i in range(count):
            current = []
            message = runtime.new_message(TEXTS[i % len(TEXTS)], room_id=room, entity_id=user)
            await runtime.process_message(message)
            messages.append(current)
        return messages
    finally:
        await host.stop()


def child_cpu(recorder: AuditRecorder) -> float:
    """CPU seconds the recorder's writer process has used so far (its /proc schedstat: ns),
    0 without one; a child replaced meanwhile restarts the count (not expected here)."""
    pid = recorder.process.pid if recorder.process is not None else None
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[0]) / 1e9
    except OSError:
        return 0.0


async def pipeline_round(host: Host, n: int) -> tuple[float, float]:
    """CPU and wall seconds per message of `n` one-room messages."""
    runtime = host.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        message = runtime.new_message(TEXTS[i % len(TEXTS)], room_id=room, entity_id=user)
        await runtime.process_message(message)
    return (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n


class Phases:
    """Thread CPU the recorder's writer thread spends in all (each turn of its loop: waiting,
    converting, appending), converting and appending: thread CPU clocks around the calls, on
    one recorder (bench only; /proc's per-thread CPU counts 10 ms ticks)."""

    def __init__(self, recorder: AuditRecorder) -> None:
        self.writer = self.converting = self.appending = 0.0
        self.counting = False
        turn, convert, append = recorder._write_batch, recorder._convert, recorder._store_append

        def turning() -> bool:
            began = time.thread_time()
            try:
                return turn()
            finally:
                if self.counting:
                    self.writer += time.thread_time() - began

        def converting(items: Any, pause: float = 0.0) -> Any:
            began = time.thread_time()
            try:
                return convert(items, pause)
            finally:
                if self.counting:
                    self.converting += time.thread_time() - began

        def appending(events: Any) -> None:
            began = time.thread_time()
            try:
                append(events)
            finally:
                if self.counting:
                    self.appending += time.thread_time() - began

        recorder._write_batch = turning  # type: ignore[method-assign]
        recorder._convert = converting  # type: ignore[method-assign]
        recorder._store_append = appending  # type: ignore[method-assign]


async def audit_round(
    recorder: AuditRecorder | None, messages: list[list[tuple[str, object]]], n: int, gap: float
) -> tuple[float, float]:
    """CPU seconds per message, of the process and of the loop's thread, of recording `n`
    messages' payloads, one message every `gap` seconds (None: the loop only idles as long)."""
    cpu, loop = time.process_time(), time.thread_time()
    for i in range(n):
        if recorder is not None:
            for event_type, payload in messages[i % len(messages)]:
                recorder.record(event_type, payload)
        await asyncio.sleep(gap)
    if recorder is not None:
        await recorder.flush()
    return (time.process_time() - cpu) / n, (time.thread_time() - loop) / n


def writer_work(
    recorder: AuditRecorder,
    store: Any,
    messages: list[list[tuple[str, object]]],
    passes: int,
    gap: float = 0.0,
) -> tuple[float, float]:
    """CPU seconds per message of the writer's own work, on the calling thread with no event
    loop running beside it (steadier than the rounds on a loaded machine): converting
    (`AuditRecorder.encode`) and appending (`append_encoded_blocking`) batches of 11 messages'
    events, as a 20 ms window holds at ~1.8 ms a message; the medians of `passes` passes.
    With `gap` (seconds) the thread sleeps that long after each batch, as the writer waits
    out its window in the pipeline (its caches go cold meanwhile)."""
    converting, appending = [], []
    for _ in range(passes):
        convert = append = 0.0
        count = 0
        for _ in range(1 if gap else 5):
            for start in range(0, len(messages), 11):
                batch = messages[start : start + 11]
                began = time.thread_time()
                events = [recorder.encode(kind, payload) for m in batch for kind, payload in m]
                encoded = time.thread_time()
                store.append_encoded_blocking(events, json_checked=True)
                convert += encoded - began
                append += time.thread_time() - encoded
                count += len(batch)
                if gap:
                    time.sleep(gap)
        converting.append(convert / count)
        appending.append(append / count)
    return statistics.median(converting), statistics.median(appending)


def record_cost(
    recorder: AuditRecorder, messages: list[list[tuple[str, object]]], passes: int
) -> float:
    """Seconds per message of `record` on the loop (7 calls), hot; the events are queued but
    the writer is not woken (they are taken off the queue unwritten)."""
    pending, work, hurry = recorder._pending, recorder._work, recorder._hurry
    recorder._work = recorder._hurry = threading.Event()  # woken by nothing that waits
    best = float("inf")
    try:
        for _ in range(passes):
            began = time.perf_counter()
            for message in messages:
                for event_type, payload in message:
                    recorder.record(event_type, payload)
            best = min(best, (time.perf_counter() - began) / len(messages))
            recorder._done += len(pending)  # as if written: `flush` waits for none of them
            pending.clear()
    finally:
        recorder._work, recorder._hurry = work, hurry
    return best


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        messages = await captured_payloads(directory / "capture", 40)
        host = await start_host(directory / "pipeline", "hashed", audit=False)
        settings = AuditSettings(
            path=directory / "audit.sqlite3",
            flush_interval=args.flush_interval,
            **({"writer": args.writer} if args.writer else {}),
        )
        store = await open_event_store(settings, None, directory)
        recorder = AuditRecorder(store, settings)
        phases = Phases(recorder)
        rows: dict[str, list[float]] = {
            "pipeline": [],
            "wall": [],
            "audit": [],
            "ratio": [],
            "loop": [],
            "child": [],
            "total": [],
        }
        try:
            await warm_up(host)
            await audit_round(recorder, messages, 20, 0.001)
            for _ in range(args.rounds):
                cpu, wall = await pipeline_round(host, args.n)
                idle, idle_loop = await audit_round(None, messages, args.n, wall)
                phases.counting = True
                child = child_cpu(recorder)
                audit, loop_cpu = await audit_round(recorder, messages, args.n, wall)
                rows["child"].append((child_cpu(recorder) - child) / args.n)
                phases.counting = False
                audit -= idle
                rows["loop"].append(loop_cpu - idle_loop)
                for name, value in (("pipeline", cpu), ("wall", wall), ("audit", audit)):
                    rows[name].append(value)
                rows["ratio"].append(audit / cpu)
                rows["total"].append((audit + rows["child"][-1]) / cpu)
            work = await asyncio.to_thread(writer_work, recorder, store, messages, args.rounds)
            idled = await asyncio.to_thread(
                writer_work, recorder, store, messages, args.rounds, args.flush_interval
            )
            await recorder.flush()
            loop = record_cost(recorder, messages, args.rounds)
        finally:
            await recorder.aclose()
            await store.close()
            await host.stop()
    count = args.rounds * args.n
    split = (phases.converting / count, phases.appending / count)
    show(rows, phases.writer / count, (work, idled, split, loop), args)


Pair = tuple[float, float]


def show(
    rows: dict[str, list[float]],
    writer: float,
    parts: tuple[Pair, Pair, Pair, float],
    args: argparse.Namespace,
) -> None:
    events = 7
    table = Table(
        title=f"Audit trail vs the pipeline, {args.rounds} rounds of {args.n} messages,"
        f" flush window {args.flush_interval * 1000:g} ms"
    )
    for column in ("measure", "median", "range"):
        table.add_column(column, justify="left" if column == "measure" else "right")

    def us(values: list[float]) -> tuple[str, str]:
        return (
            f"{statistics.median(values) * 1e6:,.0f} us",
            f"{min(values) * 1e6:,.0f}..{max(values) * 1e6:,.0f}",
        )

    table.add_row("pipeline (audit off), CPU per message", *us(rows["pipeline"]))
    table.add_row("pipeline (audit off), wall per message", *us(rows["wall"]))
    table.add_row(f"audit trail, CPU per message ({events} events)", *us(rows["audit"]))
    work, idled, split, loop = parts

    def pair(values: Pair) -> str:
        return f"{values[0] * 1e6:,.0f} + {values[1] * 1e6:,.0f} us"

    table.add_row("  of which the audit-writer thread", f"{writer * 1e6:,.0f} us", "")
    table.add_row("    converting + appending (thread CPU around the calls)", pair(split), "")
    on_loop = statistics.mean(rows["loop"])
    rest = statistics.mean(rows["audit"]) - writer - on_loop
    table.add_row("  of which the loop's thread (record, flush, GIL waits)", *us(rows["loop"]))
    table.add_row("    `record` alone (7 calls, hot)", f"{loop * 1e6:,.1f} us", "")
    table.add_row("  other threads (mean)", f"{rest * 1e6:,.0f} us", "")
    table.add_row(
        "the writer's work alone (one thread, no loop): converting + appending", pair(work), ""
    )
    table.add_row(
        f"  the same, idle {args.flush_interval * 1000:g} ms between batches", pair(idled), ""
    )
    if any(rows["child"]):
        table.add_row("writer process (a child: not in the CPU above)", *us(rows["child"]))

    def ratio(label: str, ratios: list[float]) -> None:
        table.add_row(
            label, f"{statistics.median(ratios):.1%}", f"{min(ratios):.1%}..{max(ratios):.1%}"
        )

    ratio("audit CPU / pipeline CPU (the host process's)", rows["ratio"])
    if any(rows["child"]):
        ratio("  with the writer process's CPU too", rows["total"])
    console.print(table)
    console.print(f"[dim]load average {os.getloadavg()[0]:.1f}; target <= 10%[/dim]")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=100, help="messages per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=AuditSettings().flush_interval,
        help="the trail's batching window in seconds (what kill -9 may lose)",
    )
    parser.add_argument(
        "--writer",
        choices=("process", "thread"),
        help="the audit settings' writer (default: theirs, a process on a SQLite file)",
    )
    args: Any = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
