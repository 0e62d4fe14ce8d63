"""docs/storekit.md: its examples run, in order, in one namespace, and it documents every name
the kit exports (the kit's stable surface is its ``__all__``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import host.storekit

DOC = Path(__file__).resolve().parents[2] / "docs" / "storekit.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_docs_examples_run() -> None:
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "docs_storekit"}
    for number, code in enumerate(blocks, start=1):
        try:
            exec(compile(code, f"{DOC.name} block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"docs/storekit.md python block {number} failed: {exc!r}\n{code}")


def test_every_kit_name_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in host.storekit.__all__ if f"`{name}`" not in text]
    assert not missing, f"docs/storekit.md does not mention {missing}"
    for name in host.storekit.__all__:
        assert getattr(host.storekit, name) is not None  # the lazy ones import too
