"""The collector the host hands out: fans out to the configured exporters and guards cardinality.

Two guards keep a metrics backend from being flooded by user data: tags whose key names an id or
free text (``room_id``, ``text``, ...) or whose value is long are dropped, and each metric may have
at most `max_series` tag combinations; past that, new combinations are dropped with one warning
per metric and counted in ``agenthost.metrics.dropped``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from loguru import logger

from contracts.metrics import MetricsCollector, Tags
from host.secrets import scrub

__all__ = ["FORBIDDEN_TAG_KEYS", "GuardedMetrics"]

FORBIDDEN_TAG_KEYS = frozenset(
    {"text", "message", "content", "prompt", "completion", "query", "input", "output", "url"}
)
"""Tag keys that carry user data; any key ending in ``_id`` but ``agent_id`` is dropped too."""
MAX_TAG_VALUE_LENGTH = 64
DROPPED = "agenthost.metrics.dropped"


def _forbidden(key: str) -> bool:
    return key in FORBIDDEN_TAG_KEYS or (key.endswith("_id") and key != "agent_id")


class GuardedMetrics:
    """A MetricsCollector forwarding to several collectors behind the cardinality guards."""

    def __init__(self, collectors: Sequence[MetricsCollector], *, max_series: int = 1000) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        self.collectors = tuple(collectors)
        self.max_series = max_series
        self._series: dict[str, set[tuple[tuple[str, str], ...]]] = {}
        self._clean: dict[tuple[tuple[str, str], ...], Tags | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._admitted: dict[tuple[str, tuple[tuple[str, str], ...]], Tags | None] = {}
        """(name, tags as given) -> cleaned tags, for series already admitted: the hot path."""

    def _admit(self, name: str, tags: Tags | None) -> tuple[bool, Tags | None]:
        fast = (name, tuple(tags.items()) if tags else ())
        found = self._admitted.get(fast, ...)
        if found is not ...:
            return True, found
        ok, clean = self._admit_slow(name, tags)
        if ok and len(self._admitted) < 100_000:
            self._admitted[fast] = clean
        return ok, clean

    def _admit_slow(self, name: str, tags: Tags | None) -> tuple[bool, Tags | None]:
        key = tuple(sorted(tags.items())) if tags else ()
        clean = self._clean.get(key, ...)
        if clean is ...:
            clean = self._strip(name, key)
        clean_key = tuple(sorted(clean.items())) if clean else ()
        with self._lock:
            seen = self._series.setdefault(name, set())
            if clean_key in seen:
                return True, clean
            if len(seen) >= self.max_series:
                self._warn_once(
                    name,
                    "series",
                    "metric {} reached {} tag combinations; new ones are dropped",
                    self.max_series,
                )
                return False, None
            seen.add(clean_key)
        return True, clean

    def _strip(self, name: str, key: tuple[tuple[str, str], ...]) -> Tags | None:
        kept: dict[str, str] = {}
        for tag, value in key:
            if _forbidden(tag) or len(str(value)) > MAX_TAG_VALUE_LENGTH:
                self._warn_once(
                    name, tag, "metric {}: tag {!r} dropped (user data is never a tag)", tag
                )
                continue
            kept[tag] = scrub(str(value))  # a secret never becomes a label either
        clean: Tags | None = kept or None
        if len(self._clean) < 10_000:
            self._clean[key] = clean
        return clean

    def _warn_once(self, name: str, what: str, message: str, arg: object) -> None:
        if (name, what) not in self._warned:
            self._warned.add((name, what))
            logger.warning(message, name, arg)
        for collector in self.collectors:
            collector.increment_counter(DROPPED, 1, {"metric": name})

    def increment_counter(self, name: str, value: float = 1, tags: Tags | None = None) -> None:
        ok, clean = self._admit(name, tags)
        if ok:
            for collector in self.collectors:
                collector.increment_counter(name, value, clean)

    def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        ok, clean = self._admit(name, tags)
        if ok:
            for collector in self.collectors:
                collector.record_histogram(name, value, clean)

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        ok, clean = self._admit(name, tags)
        if ok:
            for collector in self.collectors:
                collector.record_gauge(name, value, clean)
