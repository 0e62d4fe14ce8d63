"""Typing tests: mypy must reject every `reject/*.py` file exactly where marked, and accept every
`accept/*.py` file.

A line that must fail carries ``# E: <fragment of the expected mypy message>`` (or a bare ``# E``
for "some error"); several expectations on one line are written ``# E: first # E: second``.
Unmarked errors in a reject file fail the test too, so a file cannot pass for the wrong reason.
mypy runs once over all files (with the project's strict config) and its output is split per file.
Areas prefix their files with their area name (``events_wrong_payload.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REJECT = sorted((HERE / "reject").glob("*.py"))
ACCEPT = sorted((HERE / "accept").glob("*.py"))

_LINE = re.compile(r"^(?P<path>.+?\.py):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*)$")
_MARK = re.compile(r"#\s*E\b:?\s*(?P<fragment>(?:(?!#\s*E\b).)*)")


@dataclass
class MypyRun:
    """mypy's errors, per resolved file path and line."""

    returncode: int
    output: str
    errors: dict[Path, dict[int, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )


def _run_mypy(files: list[Path]) -> MypyRun:
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--show-error-codes",
        "--no-error-summary",
        "--no-pretty",
        "--hide-error-context",
        "--no-color-output",
        "--cache-dir",
        str(ROOT / ".mypy_cache" / "typing-tests"),
        *[str(path.relative_to(ROOT)) for path in files],
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    run = MypyRun(done.returncode, done.stdout + done.stderr)
    for raw in done.stdout.splitlines():
        match = _LINE.match(raw)
        if match is None or match["severity"] != "error":
            continue
        path = (ROOT / match["path"]).resolve()
        run.errors[path][int(match["line"])].append(match["message"])
    return run


@pytest.fixture(scope="module")
def mypy_run() -> MypyRun:
    files = REJECT + ACCEPT
    if not files:
        pytest.skip("no typing test files")
    run = _run_mypy(files)
    if run.returncode not in (0, 1):  # 2: mypy itself failed (crash, bad config)
        pytest.fail(f"mypy failed to run (exit {run.returncode}):\n{run.output}")
    return run


def expected_errors(path: Path) -> dict[int, list[str]]:
    """Line number -> expected message fragments ('' for any error) from `# E` markers."""
    expected: dict[int, list[str]] = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if "#" not in text:
            continue
        fragments = [m["fragment"].strip() for m in _MARK.finditer(text[text.index("#") :])]
        if fragments:
            expected[number] = fragments
    return expected


def check_reject(path: Path, found: dict[int, list[str]]) -> list[str]:
    """Problems with a reject file's mypy errors; empty if exactly the marked lines fail."""
    problems: list[str] = []
    expected = expected_errors(path)
    if not expected:
        problems.append("no `# E:` markers: a reject file must mark the lines that must fail")
    for line, fragments in sorted(expected.items()):
        messages = found.get(line, [])
        if not messages:
            problems.append(f"line {line}: expected an error ({' / '.join(fragments)}), got none")
            continue
        for fragment in fragments:
            if fragment and not any(fragment in message for message in messages):
                problems.append(
                    f"line {line}: no error contains {fragment!r}; got: {' | '.join(messages)}"
                )
    for line, messages in sorted(found.items()):
        if line not in expected:
            problems.append(f"line {line}: unexpected error: {' | '.join(messages)}")
    return problems


@pytest.mark.parametrize("path", REJECT, ids=[path.name for path in REJECT])
def test_reject(path: Path, mypy_run: MypyRun) -> None:
    problems = check_reject(path, mypy_run.errors.get(path.resolve(), {}))
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", ACCEPT, ids=[path.name for path in ACCEPT])
def test_accept(path: Path, mypy_run: MypyRun) -> None:
    found = mypy_run.errors.get(path.resolve(), {})
    lines = [f"line {line}: {' | '.join(msgs)}" for line, msgs in sorted(found.items())]
    assert not lines, f"{path.name} must type-check:\n  " + "\n  ".join(lines)


def test_marker_parsing(tmp_path: Path) -> None:
    """The runner itself: markers, fragments, and the exact-match rule."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "x: int = 'a'  # E: Incompatible types\n"
        "y = 1\n"
        "z: str = 1  # E\n"
        "w = f()  # E: first  # E: second\n"
    )
    expected = expected_errors(sample)
    assert expected == {1: ["Incompatible types"], 3: [""], 4: ["first", "second"]}
    ok = {1: ["Incompatible types in assignment"], 3: ["anything"], 4: ["first; second"]}
    assert check_reject(sample, ok) == []
    missing = check_reject(sample, {1: ["Incompatible types"], 4: ["first", "second"]})
    assert missing == ["line 3: expected an error (), got none"]
    wrong = check_reject(sample, {**ok, 1: ["Name 'x' is not defined"]})
    assert len(wrong) == 1 and "'Incompatible types'" in wrong[0]
    extra = check_reject(sample, {**ok, 2: ["Unused"]})
    assert extra == ["line 2: unexpected error: Unused"]
    unmarked = tmp_path / "unmarked.py"
    unmarked.write_text("x = 1\n")
    assert check_reject(unmarked, {}) == [
        "no `# E:` markers: a reject file must mark the lines that must fail"
    ]
