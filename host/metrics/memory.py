"""The default collector: keeps every series in memory, queryable (tests, `agenthost stats`).

Histograms keep count, sum, min, max and fixed bucket counts, so memory stays constant however
many observations arrive; quantiles are estimated from the buckets. `bind` resolves one series
once and returns a recorder for it: the host's own instrumentation records through those. A bound
histogram recorder only appends the value to the series' pending list (a few bytecodes, no
lock: ``list.append`` is atomic); the pending values are folded into the summary in one pass
when the series is read (`series`, `get`, `total`) or when `FOLD_AT` of them have piled up, so
memory stays bounded and readers always see every observation made before their read.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from contracts.metrics import Tags

__all__ = ["DEFAULT_BUCKETS", "FOLD_AT", "InMemoryMetrics", "Kind", "Recorder", "Series"]

Kind = Literal["counter", "histogram", "gauge"]
TagKey = tuple[tuple[str, str], ...]
Recorder = Callable[[float], None]
"""Records one value into one series (see `InMemoryMetrics.bind`)."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 1024.0, 4096.0, 16384.0, 65536.0,
)  # fmt: skip
"""Upper bounds that serve both durations in seconds and token counts."""
FOLD_AT = 512
"""Pending observations of a bound histogram that trigger a fold into its summary."""
_BOUNDS = np.array(DEFAULT_BUCKETS, dtype=np.float64)
_BINS = len(DEFAULT_BUCKETS) + 1
_EXACT = 2**53
"""Numbers of a smaller magnitude are exactly their float64 (ints included): numpy finds their
minimum and maximum at the places Python's ``min`` and ``max`` would."""


def tag_key(tags: Tags | None) -> TagKey:
    return tuple(sorted(tags.items())) if tags else ()


@dataclass(slots=True)
class Series:
    """One metric name with one tag set."""

    name: str
    kind: Kind
    tags: dict[str, str]
    value: float = 0.0
    """Counter total or last gauge value; for histograms the sum."""
    count: int = 0
    min: float = float("inf")
    max: float = float("-inf")
    buckets: list[int] = field(default_factory=list)
    pending: list[float] = field(default_factory=list, repr=False, compare=False)
    """Observations recorded through a bound recorder and not yet folded into the summary."""

    def fold(self) -> None:
        """Add the pending observations to the summary (the collector holds its lock)."""
        pending = self.pending
        taken = len(pending)
        if not taken:
            return
        values = pending[:taken]
        del pending[:taken]  # appends made meanwhile (other threads) stay pending
        total = sum(values)
        self.value += total
        self.count += taken
        buckets = self.buckets
        if total == total and len(buckets) == len(DEFAULT_BUCKETS):  # no NaN among them
            try:  # one numpy pass: a third of a Python loop's cost per value
                array = np.fromiter(values, dtype=np.float64, count=taken)
            except (OverflowError, TypeError, ValueError):  # an int too big for a float
                pass
            else:
                low, high = values[array.argmin()], values[array.argmax()]
                if low > -_EXACT and high < _EXACT:  # every value is its float: the same order
                    self.min = min(self.min, low)  # the values themselves (an int stays one)
                    self.max = max(self.max, high)
                else:
                    self.min = min(self.min, *values)
                    self.max = max(self.max, *values)
                counts = np.bincount(np.searchsorted(_BOUNDS, array), minlength=_BINS)
                for index, count in enumerate(counts[:-1].tolist()):  # past every bound: none
                    if count:
                        buckets[index] += count
                return
        self.min = min(self.min, *values)
        self.max = max(self.max, *values)
        bounds, size = DEFAULT_BUCKETS, len(buckets)
        for value in values:
            index = bisect.bisect_left(bounds, value)
            if index < size:
                buckets[index] += 1

    @property
    def mean(self) -> float:
        return self.value / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Estimate of the q-quantile from the buckets (the bucket's upper bound, capped by max)."""
        if self.kind != "histogram" or not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for bound, n in zip(DEFAULT_BUCKETS, self.buckets, strict=False):
            seen += n
            if seen >= rank:
                return min(bound, self.max)
        return self.max


def _check_growth(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"counter {name!r} can only grow (got {value})")


class InMemoryMetrics:
    """A MetricsCollector that keeps everything and answers queries about it. Thread-safe."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, TagKey], Series] = {}
        self._by_given: dict[tuple[str, TagKey], Series] = {}
        """The same series keyed by the tags in the order callers give them (no sort)."""
        self._lock = threading.Lock()

    def _get(self, name: str, kind: Kind, tags: Tags | None) -> Series:
        given = (name, tuple(tags.items()) if tags else ())
        series = self._by_given.get(given)
        if series is not None and series.kind == kind:
            return series
        series = self._get_slow(name, kind, tags)
        self._by_given[given] = series
        return series

    def _get_slow(self, name: str, kind: Kind, tags: Tags | None) -> Series:
        key = (name, tag_key(tags))
        series = self._series.get(key)
        if series is None:
            series = Series(name, kind, dict(key[1]))
            if kind == "histogram":
                series.buckets = [0] * len(DEFAULT_BUCKETS)
            self._series[key] = series
        elif series.kind != kind:
            raise ValueError(f"metric {name!r} is a {series.kind}, not a {kind}")
        return series

    def increment_counter(self, name: str, value: float = 1, tags: Tags | None = None) -> None:
        _check_growth(name, value)
        with self._lock:
            self._get(name, "counter", tags).value += value

    def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        with self._lock:
            self._observe(self._get(name, "histogram", tags), value)

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        with self._lock:
            self._get(name, "gauge", tags).value = value

    def bind(self, kind: Kind, name: str, tags: Tags | None = None) -> Recorder:
        """A recorder for the series `name` with `tags`, resolved now: calling it records like
        the method of `kind` would, without looking the series up again."""
        with self._lock:
            series = self._get_slow(name, kind, tags)
        lock = self._lock
        if kind == "histogram":
            pending = series.pending
            append = pending.append

            def observe(value: float) -> None:
                append(value)
                if len(pending) >= FOLD_AT:
                    with lock:
                        series.fold()

            return observe
        if kind == "counter":

            def add(value: float) -> None:
                if value < 0:
                    _check_growth(name, value)
                with lock:
                    series.value += value

            return add

        def set_value(value: float) -> None:
            with lock:
                series.value = value

        return set_value

    @staticmethod
    def _observe(series: Series, value: float) -> None:
        series.value += value
        series.count += 1
        if value < series.min:
            series.min = value
        if value > series.max:
            series.max = value
        index = bisect.bisect_left(DEFAULT_BUCKETS, value)
        if index < len(series.buckets):
            series.buckets[index] += 1

    # queries ----------------------------------------------------------------------------

    def series(self, name: str | None = None) -> list[Series]:
        """All series (of one metric name if given), sorted by name then tags; current as of
        this call (pending observations folded in)."""
        with self._lock:
            found = [s for s in self._series.values() if name is None or s.name == name]
            for series in found:
                series.fold()
        return sorted(found, key=lambda s: (s.name, sorted(s.tags.items())))

    def get(self, name: str, **tags: str) -> Series | None:
        """The series with exactly these tags, if any; current as of this call."""
        series = self._series.get((name, tag_key(tags)))
        if series is not None and series.pending:
            with self._lock:
                series.fold()
        return series

    def total(self, name: str, **tags: str) -> float:
        """Sum of a counter (or histogram count) over every series whose tags include `tags`."""
        total = 0.0
        for series in self.series(name):
            if all(series.tags.get(k) == v for k, v in tags.items()):
                total += series.count if series.kind == "histogram" else series.value
        return total

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._series})

    def reset(self) -> None:
        """Zero every series (they stay listed, and recorders bound to them keep working)."""
        with self._lock:
            for series in self._series.values():
                series.pending.clear()
                series.value, series.count = 0.0, 0
                series.min, series.max = float("inf"), float("-inf")
                series.buckets = [0] * len(series.buckets)
