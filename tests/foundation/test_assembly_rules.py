"""The assembly's rule, read from the source: only host/config.py reads ``AGENTHOST_*``
variables (the rest get their values through the config). That the test kit imports no
builtin plugin is tests/foundation/test_import_rules.py's (host imports none)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "host" / "config.py"


def _sources() -> list[Path]:
    return sorted([*(ROOT / "host").rglob("*.py"), *(ROOT / "builtin_plugins").rglob("*.py")])


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, variable) of each ``os.environ[...]``, ``os.environ.get(...)``,
    ``os.getenv(...)`` or ``setdefault`` naming an ``AGENTHOST_`` variable."""
    found = []
    for node in ast.walk(tree):
        name: ast.expr | None = None
        if isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
            name = node.slice
        elif isinstance(node, ast.Call) and node.args:
            called = ast.unparse(node.func)
            if "environ" in called or called.endswith("getenv"):
                name = node.args[0]
        if name is None:
            continue
        text = ast.unparse(name)
        if "AGENTHOST" in text:
            found.append((node.lineno, text))
    return found


def test_only_the_config_module_reads_agenthost_variables() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} reads {name}"
        for path in _sources()
        if path != CONFIG
        for line, name in _environment_reads(ast.parse(path.read_text()))
    ]
    assert offenders == []


def test_the_rule_sees_a_read() -> None:
    """The check above can fail: it finds the reads this snippet makes."""
    tree = ast.parse(
        'import os\nos.environ.get("AGENTHOST_DATA_DIR")\nos.environ["AGENTHOST_X"]\n'
        'os.getenv("AGENTHOST_Y")\nos.environ.get(OTHER)\n'
    )
    assert [line for line, _ in _environment_reads(tree)] == [2, 3, 4]
