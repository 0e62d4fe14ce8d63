"""Reading an OpenAI-compatible server's answers: the JSON object of a response, its token
usage, and its failures as `ModelCallError` (error statuses, retryable or not; requests that
got no answer). Errors quote the response, never the request (it carries the key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from contracts.models import ModelCallError, Usage

if TYPE_CHECKING:
    import httpx

__all__ = ["RETRYABLE_STATUS", "fail", "json_object", "transport_error", "usage_of"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def transport_error(exc: httpx.HTTPError, what: str, base_url: str) -> ModelCallError:
    """A request that got no answer (timeout, connection) as a retryable `ModelCallError`."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return ModelCallError(
            f"{what} timed out", provider="openai", retryable=True, reason="timeout"
        )
    reason = "unreachable" if isinstance(exc, httpx.ConnectError) else "network"
    return ModelCallError(
        f"cannot reach {base_url}: {exc}",
        provider="openai",
        retryable=True,
        reason=reason,
    )


def json_object(path: str, response: httpx.Response, base_url: str) -> dict[str, Any]:
    """The JSON object a successful response holds, or a retryable error saying what came."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # e.g. a base_url that serves a web page: retryable, so another provider answers
        kind = response.headers.get("content-type") or "no content type"
        raise ModelCallError(
            f"{base_url.rstrip('/')}/{path} answered {response.status_code}"
            f" with {kind}, not a JSON object: is base_url an OpenAI-compatible API"
            " (it usually ends in /v1)?",
            provider="openai",
            retryable=True,
            status=response.status_code,
            reason="bad_response",
        )
    return data


def usage_of(data: Any) -> Usage | None:
    """The token counts of an OpenAI ``usage`` object (None when there is none)."""
    if not isinstance(data, dict):
        return None
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
    )


def fail(status: int, body: str, retry_after: float | None = None) -> NoReturn:
    """Raise the error for an HTTP error status (the response text, not the request: no key)."""
    retryable = status in RETRYABLE_STATUS or status >= 500
    reason = "rate_limited" if status == 429 else "server_error" if status >= 500 else None
    detail = body[:300].replace("\n", " ")
    raise ModelCallError(
        f"HTTP {status}: {detail}",
        provider="openai",
        retryable=retryable,
        status=status,
        reason=reason or ("http_error" if retryable else None),
        retry_after=retry_after,
    )
