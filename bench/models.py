"""Model registry benchmark: use_model overhead, a fallback step, ELIZA and embedding throughput.

Baselines measured in the same run: awaiting the same handler directly. Two handlers: a no-op
returning a prebuilt result (the registry's whole overhead shows) and one building its result,
``TextResult(text=...)``, as the smallest real handler does. The registry rows run with no event
bus (the registry alone) and with the host's bus and its metrics subscriber (what a call in the
host costs: it emits ``model:used``, which the metrics record). Target from the issue: use_model
within 2x of the direct call. Each figure is the best of 15 timed loops (the machine is shared).

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


async def building(params: TextParams) -> TextResult:
    return TextResult(text="ok")


async def wrapper(params: TextParams) -> TextResult:
    """The least any dispatch layer costs in CPython: one more coroutine around the call."""
    return await trivial(params)


async def unavailable(params: TextParams) -> TextResult:
    raise ModelCallError("503", provider="down", retryable=True, status=503)


async def per_call(make: Callable[[], Awaitable[object]], number: int) -> float:
    best = float("inf")
    for _ in range(15):
        started = time.perf_counter()
        for _ in range(number):
            await make()
        best = min(best, (time.perf_counter() - started) / number)
    return best


def registry(
    handler: Callable[[TextParams], Awaitable[TextResult]], *, wired: bool
) -> ModelRegistry:
    """A registry with `handler` for TEXT_LARGE; `wired`: on a bus with the host's metrics."""
    bus = None
    if wired:
        bus = EventBus()
        bus.on_any(EventMetrics(build_telemetry().internal))
    models = ModelRegistry(events=bus)
    models.register(ModelHandler(TEXT_LARGE, handler), owner="bench")
    return models


async def run(number: int) -> list[tuple[str, float, float | None, str]]:
    direct = await per_call(lambda: trivial(PARAMS), number)
    t_wrapper = await per_call(lambda: wrapper(PARAMS), number)
    alone = registry(trivial, wired=False)
    wired = registry(trivial, wired=True)
    fallback = ModelRegistry()
    fallback.settings = fallback.settings.model_copy(update={"breaker_failures": 10**9})
    fallback.register(ModelHandler(TEXT_LARGE, unavailable, priority=1), owner="down")
    fallback.register(ModelHandler(TEXT_LARGE, trivial), owner="up")

    t_alone = await per_call(lambda: alone.use_model(TEXT_LARGE, PARAMS), number)
    t_named = await per_call(lambda: alone.use_model(TEXT_LARGE, PARAMS, provider="bench"), number)
    t_wired = await per_call(lambda: wired.use_model(TEXT_LARGE, PARAMS), number)
    t_fallback = await per_call(lambda: fallback.use_model(TEXT_LARGE, PARAMS), number // 4)

    direct_build = await per_call(lambda: building(PARAMS), number)
    build_alone = registry(building, wired=False)
    build_wired = registry(building, wired=True)
    t_build_alone = await per_call(lambda: build_alone.use_model(TEXT_LARGE, PARAMS), number)
    t_build_wired = await per_call(lambda: build_wired.use_model(TEXT_LARGE, PARAMS), number)

    eliza = ElizaPlugin()
    prompt = TextParams(prompt="I am unhappy because my mother does not listen to me")
    t_eliza = await per_call(lambda: eliza.reply(prompt), number // 20)
    sentence = "the quick brown fox jumps over the lazy dog near the river bank"

    async def embed_once() -> object:
        return embed(sentence)

    t_embed = await per_call(embed_once, number // 20)

    def target(seconds: float, base: float) -> str:
        return f"target <= 2x: {'met' if seconds / base <= 2 else 'NOT met'}"

    return [
        ("no-op handler, awaited directly (baseline)", direct, direct, ""),
        ("  floor: one async function around it, nothing else", t_wrapper, direct, ""),
        ("use_model, registry alone", t_alone, direct, target(t_alone, direct)),
        ("use_model, registry alone, provider by name", t_named, direct, ""),
        ("use_model, with bus + metrics (model:used)", t_wired, direct, ""),
        ("use_model, one retryable failure then fallback", t_fallback, direct, ""),
        ("TextResult-building handler, directly (baseline)", direct_build, direct_build, ""),
        (
            "  use_model, registry alone",
            t_build_alone,
            direct_build,
            target(t_build_alone, direct_build),
        ),
        ("  use_model, with bus + metrics (model:used)", t_build_wired, direct_build, ""),
        ("ELIZA reply (TEXT_LARGE, one sentence)", t_eliza, None, f"{1 / t_eliza:,.0f} calls/s"),
        ("local embedding (13 words, 384 d)", t_embed, None, f"{1 / t_embed:,.0f} calls/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer iterations")
    args = parser.parse_args()
    number = 3_000 if args.quick else 30_000
    rows = asyncio.run(run(number))
    table = Table(title="model registry (best of 15 loops)")
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
