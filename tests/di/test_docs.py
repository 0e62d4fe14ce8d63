"""docs/di.md's table of well-known tokens is true (its python blocks run in tests/docs)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "di.md"


WELL_KNOWN_ROW = re.compile(
    r"^\| `([A-Z_]+)` \| `([a-z_.]+)` \| .*? \| (contracts/\w+\.py) \|", re.MULTILINE
)


def test_well_known_token_table_matches_the_contracts() -> None:
    """Every token in the docs table exists, named and placed as documented, and every
    typed token exported by `contracts` is in the table."""
    import importlib

    import contracts
    from contracts.tokens import Token

    rows = WELL_KNOWN_ROW.findall(DOC.read_text())
    assert len(rows) >= 8
    documented = set()
    for constant, name, module_path in rows:
        documented.add(constant)
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        token = getattr(module, constant, None)
        assert isinstance(token, Token), f"{module_path} has no token {constant}"
        assert token.name == name, f"{constant} is named {token.name!r}, docs say {name!r}"
    exported = {key for key, value in vars(contracts).items() if isinstance(value, Token)}
    assert exported <= documented, f"undocumented well-known tokens: {exported - documented}"
