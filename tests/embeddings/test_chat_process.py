"""Done when, through the real commands: `agenthost knowledge add` in one process, then
`agenthost chat` with piped input in another; the agent (e5 extra, ELIZA answering) recalls a
memory asked about in other words and reads the added document. ELIZA does not quote what it
was given, so the test reads the prompts it saw from the audit trail (`agenthost events`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .helpers import DATA
from .test_end_to_end import PASSPORT, _section, needs_e5

REPO = Path(__file__).resolve().parents[2]


def _agenthost(env: dict[str, str], *args: str, text: str = "") -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("agenthost")), *args],
        input=text,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


@needs_e5
def test_knowledge_add_then_chat_recalls_and_reads(tmp_path: Path) -> None:
    characters = tmp_path / "characters"
    characters.mkdir()
    (characters / "ada.json").write_text(
        json.dumps({"name": "Ada", "bio": "Ada helps with adoptions at the kennel."})
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("greyhound-rescue.md", "garden-rules.md"):
        (docs / name).write_text((DATA / "docs" / name).read_text())
    env = {
        **os.environ,
        "AGENTHOST_DATA_DIR": str(tmp_path / "data"),
        "AGENTHOST_AGENTS__CHARACTERS_DIR": str(characters),
        "USER": "sam",
        "COLUMNS": "200",
    }
    added = _agenthost(env, "knowledge", "add", str(docs))
    assert "added" in added and "garden-rules.md" in added

    script = f"{PASSPORT}\n/new\nWhere are my travel papers?\nAre weed killers allowed?\n"
    out = _agenthost(env, "chat", "--agent", "ada", text=script)
    assert out.count("Ada>") == 3 and "new conversation" in out

    events = _agenthost(
        env, "events", "list", "--type", "model:used", "--json", "--limit", "1000"
    ).splitlines()
    prompts: dict[str, str] = {}
    for line in events:
        data: dict[str, Any] = json.loads(line)["data"]
        params = data.get("params") or {}
        if data["model_type"] == "text_large" and "prompt" in params:
            message = params["prompt"].rsplit("# Message from sam\n", 1)[1].strip()
            prompts[message] = params["prompt"]
    assert set(prompts) == {PASSPORT, "Where are my travel papers?", "Are weed killers allowed?"}

    papers = prompts["Where are my travel papers?"]
    assert PASSPORT in _section(papers, "Relevant memories")  # recalled: shares no word but "my"
    assert PASSPORT not in _section(papers, "Recent conversation")  # /new: another room
    rules = _section(prompts["Are weed killers allowed?"], "Knowledge")
    assert "garden-rules.md, part" in rules and "weed killers" in rules
