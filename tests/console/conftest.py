"""A real host for the console tests: ``agenthost run --dev`` in a subprocess on a free
127.0.0.1 port (ELIZA, SQLite and the audit trail in a temp dir, an API key), with two plugin
distributions of the tests' own on its path (one that loads, one whose setup fails with markup
in its error) and a character whose bio holds a ``<script>``; and, for the browser tests,
Debian's chromium driven by Playwright (module-scoped: one host and one browser per module)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
KEY = "console-test-key"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in containers
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS_ENV = "AGENTHOST_SCREENSHOTS"
"""Set to a directory (``docs/console`` refreshes the docs' pictures) to keep the screenshots."""


def screenshot_dir() -> Path:
    """Where the browser tests save screenshots: ``$AGENTHOST_SCREENSHOTS`` (relative to the
    repository) when set, else a temporary directory, so a test run leaves the worktree clean."""
    chosen = os.environ.get(SCREENSHOTS_ENV, "").strip()
    if chosen:
        return ROOT / chosen
    return Path(tempfile.gettempdir()) / f"agenthost-console-screenshots-{os.getuid()}"


PROBE = """
from typing import ClassVar
from contracts.agent import Provider, ProviderResult
from contracts.plugin import Manifest, Plugin

VALUE = "{value}"


class Probe(Plugin):
    manifest: ClassVar[Manifest] = Manifest(
        name="consoleprobe", description="A provider the console tests reload"
    )

    async def mood(self, message, state):
        return ProviderResult(text="# Probe mood\\n" + VALUE)

    def providers(self):
        return [Provider("probe_mood", self.mood)]
"""

BROKEN = """
from typing import ClassVar
from contracts.plugin import Manifest, Plugin


class Broken(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="brokenprobe")

    async def setup(self):
        raise RuntimeError('<script>window.__pwned = "plugin"</script> cannot reach its server')
"""

CHARACTER = """
name: Ada
username: ada
bio:
  - 'Counts things. <script>window.__pwned = "bio"</script>'
adjectives: [precise, <b>bold</b>]
topics: [engines]
settings:
  secrets: {ENGINE_TOKEN: ada-secret-value}
"""


@dataclass
class ConsoleHost:
    url: str
    key: str
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def probe(self) -> Path:
        return self.root / "site" / "consoleprobe" / "__init__.py"

    @property
    def events_file(self) -> Path:
        return self.root / "data" / "events.sqlite3"

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=30)


def _dist(site: Path, name: str, source: str) -> None:
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    info = site / f"{name}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    cls = "Probe" if name == "consoleprobe" else "Broken"
    (info / "entry_points.txt").write_text(f"[agenthost.plugins]\n{name} = {name}:{cls}\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def console_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleHost]:
    root = tmp_path_factory.mktemp("console")
    site = root / "site"
    _dist(site, "consoleprobe", PROBE.format(value="first"))
    _dist(site, "brokenprobe", BROKEN)
    characters = root / "characters"
    characters.mkdir()
    (characters / "ada.yaml").write_text(CHARACTER)
    shipped = ROOT / "config" / "characters" / "eliza.yaml"
    (characters / "eliza.yaml").write_text(shipped.read_text())
    port = _free_port()
    config = root / "agenthost.yaml"
    config.write_text(
        f"data_dir: {root / 'data'}\n"
        "dev: true\n"
        "reload: {debounce: 0.05}\n"
        f"http: {{host: 127.0.0.1, port: {port}, api_key: {KEY}}}\n"
        f"agents: {{characters_dir: {characters}}}\n"
        "logging: {level: WARNING}\n"
    )
    env = {
        **os.environ,
        "AGENTHOST_CONFIG": str(config),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }
    log = (root / "host.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from host.cli import main; main()", "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"host did not start:\n{(root / 'host.log').read_text()[-3000:]}")
        time.sleep(0.1)
    try:
        yield ConsoleHost(url, KEY, root, process)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"{CHROMIUM} is absent in CI: .ci/run installs it (scripts/install-chromium.sh)"
            )
        pytest.skip(
            f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium;"
            " .ci/run does it with scripts/install-chromium.sh)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
