"""``agenthost plugins new``: the package it makes, right after ``pip install -e``, passes its
own tests, ruff and ``mypy --strict``, and a host discovers it and runs it (settings from YAML
and the environment, its action triggered by a keyword with ELIZA)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from host.cli import app
from host.scaffold import ScaffoldError, names_for, scaffold

AGENTHOST = Path(sys.executable).with_name("agenthost")


def run(*args: str | Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_COLOR": "1", **env},
    )  # fmt: skip
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.parametrize("name", ["", "Weather", "1st", "a b", "x" * 31, "we--ather", "ok-"])
def test_bad_names_are_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(ScaffoldError, match="lowercase letters and digits"):
        names_for(name)


def test_the_cli_refuses_a_bad_name_or_a_used_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plugins", "new", "Bad Name", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "lowercase letters" in result.output
    (tmp_path / "agenthost-taken").mkdir()
    (tmp_path / "agenthost-taken" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["plugins", "new", "taken", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert [p.name for p in (tmp_path / "agenthost-taken").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("name", ["x", "my-weather-station", "abcdefghij_klmnopqrst_uvwxyzab"])
def test_every_name_makes_a_lint_clean_package(tmp_path: Path, name: str) -> None:
    target, written = scaffold(name, tmp_path)
    names = names_for(name)
    assert target == tmp_path / names.dist
    assert {p.relative_to(target).as_posix() for p in written} == {
        "README.md", "pyproject.toml", "tests/test_plugin.py",
        f"src/{names.package}/__init__.py", f"src/{names.package}/plugin.py",
        f"src/{names.package}/py.typed",
    }  # fmt: skip
    run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=target)
    run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=target)


def isolated_venv(directory: Path) -> Path:
    """A venv that sees this environment's packages (agenthost, pytest, ruff, mypy, hatchling)
    through a .pth file, so what is installed into it stays out of the suite's environment."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    parent = sysconfig.get_path("purelib")
    (Path(purelib) / "agenthost-parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n"
    )
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_new_plugin_installs_passes_its_checks_and_runs_in_the_host(tmp_path: Path) -> None:
    made = run(AGENTHOST, "plugins", "new", "greeter", "--dir", tmp_path)
    package = tmp_path / "agenthost-greeter"
    assert str(package) in made.stdout and "pip install -e" in made.stdout
    python = isolated_venv(tmp_path / "venv")
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        "--no-index", "--no-build-isolation", "-e", package,
    )  # fmt: skip

    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert "3 passed" in tests.stdout, tests.stdout
    run(python, "-m", "ruff", "check", "--no-cache", ".", cwd=package)
    run(python, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=package)
    typed = run(python, "-m", "mypy", "--strict", "--cache-dir", tmp_path / "mypy", cwd=package)
    assert "Success" in typed.stdout

    port = free_port()
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "http": {"port": port},
        "agents": {"characters_dir": str(tmp_path / "no-characters")},
        "plugins": {"enabled": ["sqlite", "eliza", "greeter"], "greeter": {"keywords": ["howdy"]}},
    }))  # fmt: skip
    cli = [python, "-c", "from host.cli import main; main()", "--config", config]
    listed = json.loads(run(*cli, "plugins", "list", "--json").stdout)
    greeter = next(row for row in listed if row["name"] == "greeter")
    assert greeter["status"] == "loaded" and greeter["distribution"] == "agenthost-greeter"

    env = {**os.environ, "AGENTHOST_PLUGINS__GREETER__GREETING": "Hi there"}
    host = subprocess.Popen(
        [str(a) for a in (*cli, "run")], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert host.poll() is None, host.stderr.read() if host.stderr else ""
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the host did not get ready"
            time.sleep(0.2)
        reply = httpx.post(
            f"{url}/agents/eliza/messages", json={"text": "Howdy, Eliza"}, timeout=30
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["text"].endswith(
            "Hi there from greeter!"
        )  # keyword from YAML, greeting from env
        quiet = httpx.post(f"{url}/agents/eliza/messages", json={"text": "I feel sad"}, timeout=30)
        assert "from greeter" not in quiet.json()["text"]
    finally:
        host.terminate()
        host.wait(30)
