"""The OpenAPI schema checked against the real server with schemathesis: every route answers
what its schema says (status codes, content types, bodies, server-sent events) for valid and
invalid input, and no request gets a 500 (bounded examples: this runs in the suite).

Driven by hand (one hypothesis run per operation and generation mode) rather than through
schemathesis's pytest plugin, whose lazy loading reads a pytest internal that pytest 9 removed."""

from __future__ import annotations

from typing import Any

import schemathesis
import schemathesis.specs.openapi.schemas  # imported at collection (see below)
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from .conftest import LiveHost

# schemathesis is a pytest plugin, so pytest rewrites its modules' asserts when they are first
# imported; imported lazily deep inside a test, CPython 3.11.7's parser failed on one of them
# ("AST constructor recursion depth mismatch"). Imported above, at collection, it does not.

EXAMPLES = 10


def run(
    live_host: LiveHost,
    operation: APIOperation,
    mode: GenerationMode,
    path: dict[str, str],
    excluded: list[Any],
) -> None:
    """EXAMPLES generated requests to `operation`, each response validated by every check but
    `excluded`."""
    headers = {"X-API-Key": live_host.key}

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path or None))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live_host.url, headers=headers, excluded_checks=excluded)

    check()


def test_every_route_keeps_its_schema(live_host: LiveHost) -> None:
    schema = schemathesis.openapi.from_url(
        f"{live_host.url}/openapi.json", headers={"X-API-Key": live_host.key}
    )
    checked: list[str] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        raw = operation.definition.raw
        # A query string repeating a scalar parameter (?limit=1&limit=2) is answered with the
        # last value, as most servers do; schemathesis counts that as invalid data accepted.
        # Operations with a body keep the check.
        excluded: list[Any] = [] if "requestBody" in raw else [negative_data_rejection]
        # A cursor of the right shape can still name no position (it is opaque): 422.
        if any(p.get("name") == "cursor" for p in raw.get("parameters", [])):
            excluded.append(positive_data_acceptance)
        # a random agent name is a 404: most cases name the running agent
        variants: list[tuple[GenerationMode, dict[str, str]]] = [
            (GenerationMode.POSITIVE, {}),
            (GenerationMode.NEGATIVE, {}),
        ]
        if "{agent}" in operation.path:
            variants = [(mode, {"agent": "eliza"}) for mode, _ in variants]
            variants.append((GenerationMode.POSITIVE, {}))
        for mode, path in variants:
            try:
                run(live_host, operation, mode, path, excluded)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # every operation checked, all told
                failures.append(f"{operation.label} ({mode.value}, {path}): {exc}")
        checked.append(operation.label)
    assert "POST /agents/{agent}/messages/stream" in checked and len(checked) >= 8, checked
    assert not failures, "\n\n".join(failures)
