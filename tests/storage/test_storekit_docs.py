"""docs/storekit.md documents every name the kit exports (the kit's stable surface is its
``__all__``). Its examples run with every other document's, in tests/docs/test_docs_blocks.py."""

from __future__ import annotations

from pathlib import Path

import host.storekit

DOC = Path(__file__).resolve().parents[2] / "docs" / "storekit.md"


def test_every_kit_name_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in host.storekit.__all__ if f"`{name}`" not in text]
    assert not missing, f"docs/storekit.md does not mention {missing}"
    for name in host.storekit.__all__:
        assert getattr(host.storekit, name) is not None  # the lazy ones import too
