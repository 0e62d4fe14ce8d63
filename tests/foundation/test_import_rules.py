"""Who may import whom (docs/storekit.md): plugins see `contracts` and one kit, the host never
sees the builtin plugins, and `contracts` sees neither.

- a module of ``builtin_plugins/`` imports no ``host`` module but `host.storekit`;
- a module of ``host/`` imports nothing of ``builtin_plugins`` (it finds plugins through their
  entry points: `host.plugin_lookup`), but for `HOST_ALLOWED` below;
- a module of ``contracts/`` imports neither ``host`` nor ``builtin_plugins``.

Every import counts: top-level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module`` / ``__import__`` with a literal name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

KIT = "host.storekit"
"""The one host module a builtin plugin may import (the store kit)."""

HOST_ALLOWED: dict[str, str] = {}
"""host/ files allowed to import builtin_plugins (file -> why); none: the test kit and its
pytest fixtures find their default plugins through the entry points (`host.assembly`)."""


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module name) of every import in `tree`, wherever it is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # `from host import vectors` imports host.vectors
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if name in ("import_module", "__import__") and literal:
                yield node.lineno, str(first.value)  # type: ignore[attr-defined]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(source: str, where: str) -> list[str]:
    """The imports of `source` (the file `where`, relative to the root) its layer may not make."""
    tree = ast.parse(source, where)
    layer = where.split("/", 1)[0]
    found: list[str] = []
    for line, module in imported(tree):
        if layer == "builtin_plugins":
            bad = _within(module, "host") and module not in ("host", KIT)
            bad = bad and not _within(module, KIT)
        elif layer == "host":
            bad = _within(module, "builtin_plugins")
        elif layer == "contracts":
            bad = _within(module, "host") or _within(module, "builtin_plugins")
        else:
            bad = False
        if bad:
            found.append(f"{where}:{line} imports {module}")
    return found


def sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", ["builtin_plugins", "host", "contracts"])
def test_layer_imports_only_what_it_may(layer: str) -> None:
    files = sources(layer)
    assert len(files) > 5, f"no sources found under {layer}/"
    problems: list[str] = []
    for path in files:
        where = path.relative_to(ROOT).as_posix()
        if where in HOST_ALLOWED:
            continue
        problems += violations(path.read_text(), where)
    assert not problems, "imports across the layers' rules:\n" + "\n".join(problems)


def test_allowlist_is_needed() -> None:
    """An allowed file that no longer imports builtin_plugins leaves the list."""
    for where in HOST_ALLOWED:
        path = ROOT / where
        assert path.exists(), f"{where} is allowlisted but does not exist"
        source = path.read_text()
        hits = [m for _, m in imported(ast.parse(source)) if _within(m, "builtin_plugins")]
        assert hits, f"{where} no longer imports builtin_plugins: remove it from HOST_ALLOWED"


@pytest.mark.parametrize(
    ("where", "source", "bad"),
    [
        ("builtin_plugins/x/a.py", "from host.vectors import IndexSet\n", "host.vectors"),
        ("builtin_plugins/x/a.py", "import host.memory\n", "host.memory"),
        ("builtin_plugins/x/a.py", "from host import pgpool\n", "host.pgpool"),
        (
            "builtin_plugins/x/a.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from host.app import Host\n",
            "host.app",
        ),
        ("host/a.py", "def f():\n    from builtin_plugins.sqlite import SqliteAdapter\n", "b"),
        ("host/a.py", "import importlib\nimportlib.import_module('builtin_plugins.e5')\n", "b"),
        ("contracts/a.py", "from host.secrets import MASK\n", "host.secrets"),
    ],
)
def test_the_rules_catch_a_forbidden_import(where: str, source: str, bad: str) -> None:
    found = violations(source, where)
    assert found, f"{source!r} in {where} passed"
    assert bad == "b" or any(bad in f for f in found)


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("builtin_plugins/x/a.py", "from host.storekit import IndexSet, unbatched\n"),
        ("builtin_plugins/x/a.py", "from contracts import Plugin\nimport hosted\n"),
        ("host/a.py", "from contracts.storage import DATABASE\nimport builtin_pluginsx\n"),
    ],
)
def test_the_rules_let_allowed_imports_pass(where: str, source: str) -> None:
    assert violations(source, where) == []


TEMPLATE_IMPORT = re.compile(r"^\s*(?:from|import)\s+([\w$.]+)", re.MULTILINE)


def test_the_plugin_template_teaches_contracts_only() -> None:
    """``agenthost plugins new`` writes a plugin importing `contracts` (and pydantic, the
    standard library, its own package), never the host."""
    sources = sorted((ROOT / "host" / "plugin_template" / "src").rglob("*.tmpl"))
    assert sources, "no plugin template sources"
    modules = {m for path in sources for m in TEMPLATE_IMPORT.findall(path.read_text())}
    assert "contracts" in modules
    hosts = sorted(m for m in modules if _within(m, "host") or _within(m, "builtin_plugins"))
    assert not hosts, f"the plugin template imports {hosts}"
