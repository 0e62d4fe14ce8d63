"""Model registry benchmark: use_model overhead, a fallback step, ELIZA and embedding throughput.

Baselines measured in the same run: awaiting the same trivial handler directly. The registry
rows run with no event bus (the registry alone) and with the host's bus and its metrics
subscriber (what a real call costs: it emits ``model:used``). Target from the issue: use_model
within 2x of the direct call.

    .venv/bin/python bench/models.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.eliza.embedding import embed
from contracts.models import (
    TEXT_LARGE,
    ModelCallError,
    ModelHandler,
    TextParams,
    TextResult,
)
from host.events import EventBus
from host.metrics.events import EventMetrics
from host.metrics.telemetry import build_telemetry
from host.models import ModelRegistry

RESULT = TextResult(text="ok")
PARAMS = TextParams(prompt="hello")


async def trivial(params: TextParams) -> TextResult:
    return RESULT


async def unavailable(params: TextParams) -> TextResult:
    raise ModelCallError("503", provider="down", retryable=True, status=503)


async def per_call(make: Callable[[], Awaitable[object]], number: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            await make()
        best = min(best, (time.perf_counter() - started) / number)
    return best


async def run(number: int) -> list[tuple[str, float, float | None, str]]:
    direct = await per_call(lambda: trivial(PARAMS), number)
    alone = ModelRegistry()
    alone.register(ModelHandler(TEXT_LARGE, trivial), owner="bench")
    bus = EventBus()
    bus.on_any(EventMetrics(build_telemetry().collector))
    wired = ModelRegistry(events=bus)
    wired.register(ModelHandler(TEXT_LARGE, trivial), owner="bench")
    fallback = ModelRegistry()
    fallback.settings = fallback.settings.model_copy(update={"breaker_failures": 10**9})
    fallback.register(ModelHandler(TEXT_LARGE, unavailable, priority=1), owner="down")
    fallback.register(ModelHandler(TEXT_LARGE, trivial), owner="up")

    t_alone = await per_call(lambda: alone.use_model(TEXT_LARGE, PARAMS), number)
    t_wired = await per_call(lambda: wired.use_model(TEXT_LARGE, PARAMS), number)
    t_fallback = await per_call(lambda: fallback.use_model(TEXT_LARGE, PARAMS), number // 4)

    eliza = ElizaPlugin()
    prompt = TextParams(prompt="I am unhappy because my mother does not listen to me")
    t_eliza = await per_call(lambda: eliza.reply(prompt), number // 20)
    sentence = "the quick brown fox jumps over the lazy dog near the river bank"

    async def embed_once() -> object:
        return embed(sentence)

    t_embed = await per_call(embed_once, number // 20)
    target = f"<= 2x direct: {'met' if t_alone / direct <= 2 else 'NOT met'}"
    return [
        ("await handler directly (baseline)", direct, direct, ""),
        ("use_model, registry alone", t_alone, direct, target),
        ("use_model, with bus + metrics (model:used)", t_wired, direct, ""),
        ("use_model, one retryable failure then fallback", t_fallback, direct, ""),
        ("ELIZA reply (TEXT_LARGE, one sentence)", t_eliza, None, f"{1 / t_eliza:,.0f} calls/s"),
        ("local embedding (13 words, 384 d)", t_embed, None, f"{1 / t_embed:,.0f} calls/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer iterations")
    args = parser.parse_args()
    number = 10_000 if args.quick else 100_000
    rows = asyncio.run(run(number))
    table = Table(title="model registry (best of 5)")
    for column in ("operation", "µs/call", "x direct call", "note"):
        table.add_column(column, justify="left" if column in ("operation", "note") else "right")
    for name, seconds, base, note in rows:
        ratio = f"{seconds / base:.2f}" if base else ""
        table.add_row(name, f"{seconds * 1e6:.2f}", ratio, note)
    console = Console(width=150)
    console.print(table)
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
