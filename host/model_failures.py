"""Why a model provider failed and what a call did about it: whether another provider may
succeed (`is_retryable`), the fixed word for the failure (`reason_of`), the providers a call
passed over (`FailurePath`, which says so in a WARNING and on the caller's `CallContext`), and
the error of a call every provider failed (`exhausted`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from contracts.models import ModelCallError, ModelType
from host.model_context import CallContext, FallbackMark
from host.model_providers import ProviderEntry

__all__ = ["NO_PATH", "FailurePath", "exhausted", "is_retryable", "reason_of"]


def is_retryable(exc: BaseException) -> bool:
    """Whether another provider may succeed where this failure happened."""
    if isinstance(exc, ModelCallError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


def reason_of(exc: BaseException) -> str:
    """A short fixed word for why a provider failed (metric label, the reply's mark)."""
    if isinstance(exc, ModelCallError):
        given = exc.reason
        if given is not None and given.isidentifier() and len(given) <= 32:
            return given
        if exc.status == 429:
            return "rate_limited"
        if exc.status is not None and exc.status >= 500:
            return "server_error"
        return "error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "unreachable"
    return "error"


@dataclass(slots=True)
class FailurePath:
    """The providers a call passed over so far, and why the first one was."""

    failed: tuple[str, ...] = ()
    reason: str | None = None
    error: str = ""

    @classmethod
    def of(cls, skipped: Sequence[ProviderEntry]) -> FailurePath:
        if not skipped:
            return cls()
        first = skipped[0].circuit
        return cls(
            tuple(e.provider for e in skipped),
            "circuit_open",
            f"skipped after {first.failures} failures in a row (circuit open)",
        )

    def add(self, entry: ProviderEntry, exc: BaseException) -> BaseException:
        if not self.failed:
            self.reason = reason_of(exc)
            self.error = f"{type(exc).__name__}: {exc}"
        self.failed = (*self.failed, entry.provider)
        return exc

    def fell_back(self, entry: ProviderEntry, caller: CallContext | None) -> None:
        """Another provider answers: a WARNING, and a mark for the caller's reply."""
        model_type = entry.handler.model_type.name
        reason = self.reason or "error"
        logger.bind(plugin="host").warning(
            "{}: provider {} was passed over ({}: {}); {} answered instead (fallback)",
            model_type,
            self.failed[0],
            reason,
            self.error,
            entry.provider,
        )
        if caller is not None:
            caller.fallbacks.append(
                FallbackMark(model_type, self.failed[0], entry.provider, reason)
            )


NO_PATH = FailurePath()
"""The path of a call that passed nobody over yet (shared: replaced, never added to)."""


def exhausted(
    model_type: ModelType[Any, Any], tried: Iterable[ProviderEntry], last: BaseException | None
) -> ModelCallError:
    """The error of a call that every provider of `model_type` failed (`last` its cause)."""
    names = ", ".join(e.provider for e in tried)
    error = ModelCallError(
        f"every provider of {model_type.name} failed ({names}); last error: {last!r}",
        provider=names,
        retryable=True,
    )
    error.__cause__ = last
    return error
