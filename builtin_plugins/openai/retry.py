"""Retrying a model request: rate limits and transient errors, honouring ``Retry-After``.

stamina (a typed, async-aware wrapper around tenacity) runs the loop: bounded attempts and
total time, exponential backoff with jitter, and a backoff hook that replaces the backoff with
the wait the server asked for. A wait longer than `RetrySettings.max_retry_after`, or than the
time left, is not waited for: the failure goes up at once and the registry's next provider
(ELIZA) answers, marked as a fallback.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.logging import Logger
from contracts.models import ModelCallError

__all__ = ["NOT_RETRIED", "RetrySettings", "parse_retry_after", "with_retries"]

T = TypeVar("T")


@cache
def _quiet_stamina() -> None:
    """Each retry is logged by `with_retries`, through the plugin's logger (its name, the
    failure, the wait). stamina's default hooks would add a bare "stamina.retry_scheduled"
    stdlib line (the host does not route stdlib logging) and a counter in prometheus_client's
    global registry, which the host does not serve: they are turned off (process-wide: nothing
    else here uses stamina), at the first request rather than at import (start-up)."""
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks(())


NOT_RETRIED = frozenset({"model_not_served", "unreachable", "stream_cut", "bad_response"})
"""Retryable for the registry (another provider may answer) but not worth asking again:
the name is not served, nothing listens at the URL, part of the answer is already out, the
URL answers something that is not the API."""


class RetrySettings(BaseModel):
    """Config section ``plugins.openai.retry``."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=3, ge=1)
    """Requests in all (1: no retry) for a rate limit (429), 408/409/425, a 5xx or a timeout."""
    timeout: float = Field(default=20.0, gt=0)
    """Seconds of retrying at most before the failure goes to the fallback."""
    wait_initial: float = Field(default=0.5, ge=0)
    """First backoff (doubling, with up to `wait_jitter` random seconds) without Retry-After."""
    wait_max: float = Field(default=5.0, ge=0)
    wait_jitter: float = Field(default=0.5, ge=0)
    max_retry_after: float = Field(default=10.0, ge=0)
    """A ``Retry-After`` longer than this is not waited for: the fallback answers at once."""


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI), or ``Retry-After`` in seconds or as an
    HTTP date; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    except OverflowError:
        return None


async def with_retries(
    call: Callable[[], Awaitable[T]], settings: RetrySettings, log: Logger, what: str
) -> T:
    """`call()` until it succeeds, retrying retryable `ModelCallError`s (see the module doc)."""
    started = time.monotonic()

    def backoff(exc: BaseException) -> bool | float:
        if not isinstance(exc, ModelCallError) or not exc.retryable or exc.reason in NOT_RETRIED:
            return False
        left = settings.timeout - (time.monotonic() - started)
        wait = exc.retry_after
        if wait is not None and (wait > settings.max_retry_after or wait > left):
            limit = min(settings.max_retry_after, left)
            log.warning(
                "{}: {}; the server asks to retry after {:.1f}s, over the {:.1f}s allowed"
                " (plugins.openai.retry): not retried",
                what,
                exc,
                wait,
                max(limit, 0.0),
            )
            return False
        log.info(
            "{}: {}; retrying in {}",
            what,
            exc,
            "the backoff" if wait is None else f"{wait:.1f}s (Retry-After)",
        )
        return True if wait is None else wait

    import stamina  # at the first request, not at start-up

    _quiet_stamina()
    async for attempt in stamina.retry_context(
        on=backoff,
        attempts=settings.attempts,
        timeout=settings.timeout,
        wait_initial=settings.wait_initial,
        wait_max=settings.wait_max,
        wait_jitter=settings.wait_jitter,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: stamina re-raises the last failure")  # pragma: no cover
