"""The Metrics page's figures and its small charts, drawn server-side as inline SVG.

No chart library: a sparkline is one ``<polyline>``, a bar chart a few ``<rect>``; the
templates draw them from the coordinates computed here. Messages per second are the change of
the processed-messages counter between two reads of the page (kept in `History`, so the rate
needs no timer of its own); stage latencies are the histogram quantiles the in-memory collector
estimates from its buckets.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from host.metrics.events import (
    MESSAGES_PROCESSED,
    MESSAGES_RECEIVED,
    MODEL_DURATION,
    MODEL_ERRORS,
    MODEL_FALLBACKS,
    MODEL_TYPE_TAG,
    STAGE_DURATION,
)
from host.metrics.memory import InMemoryMetrics

__all__ = ["Bar", "Figures", "History", "ModelRow", "StageRow", "bars", "sparkline"]

STAGES = ("memory", "providers", "model", "actions", "evaluators", "total")


@dataclass(frozen=True, slots=True)
class StageRow:
    stage: str
    count: int
    p50: float
    p99: float


@dataclass(frozen=True, slots=True)
class ModelRow:
    model_type: str
    provider: str
    calls: int
    errors: int
    fallbacks: int
    p50: float


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    text: str
    y: float
    width: float


@dataclass
class Figures:
    received: float
    processed: float
    rate: float
    """Messages processed per second since the previous read."""
    rates: list[float]
    stages: list[StageRow]
    models: list[ModelRow]
    fallbacks: float
    spark: str = ""
    """SVG polyline points of `rates`."""
    stage_bars: list[Bar] = field(default_factory=list)


class History:
    """Processed-message totals at each read of the Metrics page (the last `size`)."""

    def __init__(self, size: int = 60) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=size)
        self.rates: deque[float] = deque(maxlen=size)

    def add(self, total: float, now: float | None = None) -> float:
        """Note `total` processed messages now; the rate since the previous note."""
        now = time.monotonic() if now is None else now
        rate = 0.0
        if self.samples:
            then, before = self.samples[-1]
            if now - then < 0.2:  # two reads at once: same figure
                return self.rates[-1] if self.rates else 0.0
            rate = max(0.0, (total - before) / (now - then))
        self.samples.append((now, total))
        self.rates.append(rate)
        return rate


def _sum(memory: InMemoryMetrics, name: str) -> float:
    return sum(s.value for s in memory.series(name))


def figures(memory: InMemoryMetrics, history: History) -> Figures:
    """The page's figures now (and the rate since the last call)."""
    processed = _sum(memory, MESSAGES_PROCESSED)
    rate = history.add(processed)
    stages = []
    by_stage = {s.tags.get("stage", ""): s for s in memory.series(STAGE_DURATION)}
    for stage in sorted(
        by_stage, key=lambda s: (s not in STAGES, STAGES.index(s) if s in STAGES else 0, s)
    ):
        series = by_stage[stage]
        stages.append(StageRow(stage, series.count, series.quantile(0.5), series.quantile(0.99)))
    errors: dict[tuple[str, str], float] = {}
    for s in memory.series(MODEL_ERRORS):
        key = (s.tags.get(MODEL_TYPE_TAG, ""), s.tags.get("gen_ai.system", ""))
        errors[key] = errors.get(key, 0) + s.value
    fallbacks = {
        (s.tags.get(MODEL_TYPE_TAG, ""), s.tags.get("gen_ai.system", "")): s.value
        for s in memory.series(MODEL_FALLBACKS)
    }
    calls: dict[tuple[str, str], tuple[int, float]] = {}
    for s in memory.series(MODEL_DURATION):
        key = (s.tags.get(MODEL_TYPE_TAG, ""), s.tags.get("gen_ai.system", ""))
        count, p50 = calls.get(key, (0, 0.0))
        calls[key] = (
            count + s.count,
            max(p50, s.quantile(0.5)) if "error.type" not in s.tags else p50,
        )
    models = [
        ModelRow(t, p, n, int(errors.get((t, p), 0)), int(fallbacks.get((t, p), 0)), p50)
        for (t, p), (n, p50) in sorted(calls.items())
    ]
    out = Figures(
        received=_sum(memory, MESSAGES_RECEIVED),
        processed=processed,
        rate=rate,
        rates=list(history.rates),
        stages=stages,
        models=models,
        fallbacks=sum(fallbacks.values()),
    )
    out.spark = sparkline(out.rates)
    out.stage_bars = bars([(r.stage, r.p99) for r in stages])
    return out


def sparkline(values: list[float], width: float = 300, height: float = 60) -> str:
    """SVG ``points`` of `values` spread over `width`, scaled to `height` (top is the max)."""
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - (v / top) * (height - 4) - 2:.1f}" for i, v in enumerate(values)
    )


def bars(rows: list[tuple[str, float]], width: float = 220, row: float = 22) -> list[Bar]:
    """Horizontal bars of `rows` (label, seconds), the longest `width` wide."""
    top = max((v for _, v in rows), default=0.0) or 1.0
    return [
        Bar(label, value, f"{value * 1000:.1f} ms", i * row, max(1.0, value / top * width))
        for i, (label, value) in enumerate(rows)
    ]
