"""The examples in docs/isolation.md run: the docs cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.agent import ProviderResult
from host.components import ComponentRegistry
from host.events import EventBus

DOC = Path(__file__).resolve().parents[2] / "docs" / "isolation.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_docs_examples_run_and_register() -> None:
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) == 1
    namespace: dict[str, object] = {"__name__": "docs_isolation"}
    try:
        exec(compile(blocks[0], f"{DOC.name} block 1", "exec"), namespace)
    except Exception as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"docs/isolation.md python block failed: {exc!r}\n{blocks[0]}")
    provider = namespace["provider"]
    ComponentRegistry().add("stocks", providers=[provider])  # type: ignore[list-item]
    assert isinstance(provider.get(None, None), ProviderResult)  # type: ignore[attr-defined]
    EventBus().subscribe_plugin(
        "stocks", type("P", (), {"event_handlers": lambda s: [namespace["handler"]]})()
    )
