"""Issue 18's start-time cases through ``agenthost run`` itself (not only ``config show`` or
an in-process start): each ends with exit code 2, no traceback, and an ``error:`` naming the
file or variable, the field and the reason."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

AGENTHOST = Path(sys.executable).with_name("agenthost")
PASSWORD = "pw-not-to-be-shown-7f3e"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CASES = [
    ('logging:\n  file: "\\0"\n', {}, ["logging.file (from {file}): holds a NUL character"]),
    ("a: " + "[" * 5_000 + "]" * 5_000 + "\n", {}, ["invalid YAML in {file}:1 at a[0][0]"]),
    (
        "",
        {"AGENTHOST_PLUGINS__DISABLED": "[" * 3_000 + "]" * 3_000},
        ["plugins.disabled (from AGENTHOST_PLUGINS__DISABLED): its JSON: nested deeper"],
    ),
    ("data_dir: {a: 1}\n", {}, ["data_dir (from {file}): Input is not a valid path"]),
    (
        "plugins:\n  sqlite:\n    busy_timeout: abc\n",
        {},
        [
            "error: plugin sqlite, the store for service 'database'",
            "plugins.sqlite.busy_timeout (from {file}): Input should be a valid number",
        ],
    ),
    (
        "services:\n  database: postgres\n"
        "plugins:\n  postgres:\n    url: postgresql://agent:PASSWORD@127.0.0.1:PORT/db\n",
        {},
        ["cannot open PostgreSQL at postgresql://agent@127.0.0.1:{port}/db", "Connection refused"],
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    CASES,
    ids=[
        "nul-log-file",
        "yaml-5000-deep",
        "env-3000-deep",
        "data-dir-mapping",
        "sqlite-busy-timeout-abc",
        "postgres-unreachable",
    ],
)
def test_run_exits_2_naming_where_and_why(
    tmp_path: Path, text: str, env: dict[str, str], expected: list[str]
) -> None:
    port = closed_port()
    file = tmp_path / "my.yaml"
    file.write_text(text.replace("PASSWORD", PASSWORD).replace("PORT", str(port)))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    environ = {
        **inherited,
        "AGENTHOST_AGENTS__CHARACTERS_DIR": str(tmp_path / "no-characters"),
        **env,
    }
    done = subprocess.run(
        [str(AGENTHOST), "--config", str(file), "run", "--port", "0"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error: ")), None)
    assert start is not None, done.stderr[-2000:]
    error = "\n".join(lines[start:])  # the CLI's error, not the log lines before it
    for part in expected:
        assert part.replace("{file}", str(file)).replace("{port}", str(port)) in error, error
    assert PASSWORD not in done.stdout + done.stderr
