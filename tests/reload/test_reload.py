"""Hot reload: real files edited on disk, the new behaviour observed through the runtime."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from typer.testing import CliRunner

from contracts.errors import AgentHostError
from contracts.events import PLUGIN_FAILED, PLUGIN_RELOADED, PluginFailedPayload
from host.app import Host
from host.cli import app

from .conftest import HostFactory, PluginFiles, state_text


async def next_event(host: Host, *names: str, within: float = 10.0) -> object:
    """The next plugin:reloaded / plugin:failed payload."""
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def record(event: object, payload: object) -> None:
        if getattr(event, "name", None) in names and not got.done():
            got.set_result(payload)

    subscription = host.events.on_any(record)
    try:
        return await asyncio.wait_for(got, within)
    finally:
        subscription.cancel()


async def test_an_edit_is_picked_up_live(dev_host: Host, plugin_files: PluginFiles) -> None:
    assert "mood: v1" in await state_text(dev_host)
    waiting = asyncio.ensure_future(next_event(dev_host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0.05)
    plugin_files.write("v2")
    payload = await waiting
    assert payload.name == "reloadme" and payload.duration < 5
    text = await state_text(dev_host)
    assert "mood: v2" in text and "dependent sees v2" in text
    assert dev_host.reloader is not None
    assert dev_host.reloader.history[-1].reloaded == ["reloadme", "dependent"]


async def test_a_broken_edit_keeps_the_old_version(
    dev_host: Host, plugin_files: PluginFiles
) -> None:
    waiting = asyncio.ensure_future(next_event(dev_host, PLUGIN_FAILED.name))
    await asyncio.sleep(0.05)
    plugin_files.break_it()
    failed = await waiting
    assert isinstance(failed, PluginFailedPayload) and failed.stage == "reload"
    assert failed.file is not None and failed.file.endswith("reloadme/__init__.py")
    assert failed.line is not None and failed.line > 10
    assert "SyntaxError" in failed.error
    assert "mood: v1" in await state_text(dev_host)  # the old version still serves
    waiting = asyncio.ensure_future(next_event(dev_host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0.05)
    plugin_files.write("v3")
    await waiting
    assert "mood: v3" in await state_text(dev_host)


async def test_an_edit_that_breaks_the_manifest_is_named_and_keeps_the_old_version(
    dev_host: Host, plugin_files: PluginFiles
) -> None:
    source = plugin_files.module.read_text()
    declared = 'manifest: ClassVar[Manifest] = Manifest(name="reloadme")'
    edits = {
        'manifest = {"name": "reloadme", "priority": "high"}': "invalid manifest in "
        "reloadme:ReloadMe: priority: Input should be a valid integer",
        'manifest: ClassVar[Manifest] = Manifest(name="renamed")': "manifest name 'renamed' in "
        "reloadme:ReloadMe differs from its entry point name 'reloadme'",
    }
    for edit, expected in edits.items():
        waiting = asyncio.ensure_future(next_event(dev_host, PLUGIN_FAILED.name))
        await asyncio.sleep(0.05)
        broken = source.replace(declared, edit)
        assert broken != source
        plugin_files.module.write_text(broken)
        failed = await waiting
        assert isinstance(failed, PluginFailedPayload) and failed.stage == "reload"
        assert f"after the edit, {expected}" in failed.error
        assert "mood: v1" in await state_text(dev_host)  # the old version still serves


async def test_messages_keep_flowing_during_reloads(
    dev_host: Host, plugin_files: PluginFiles
) -> None:
    assert dev_host.agents is not None
    runtime = dev_host.agents.get("Eliza")
    stop = asyncio.Event()
    replies = []

    async def chatter() -> None:
        while not stop.is_set():
            message = runtime.new_message("I feel fine", room_id=uuid4(), entity_id=uuid4())
            replies.append(await runtime.process_message(message))

    talkers = [asyncio.create_task(chatter()) for _ in range(3)]
    for version in ("a", "broken", "b", "broken", "c"):
        expected = PLUGIN_FAILED.name if version == "broken" else PLUGIN_RELOADED.name
        waiting = asyncio.ensure_future(next_event(dev_host, expected))
        await asyncio.sleep(0.05)
        if version == "broken":
            plugin_files.break_it()
        else:
            plugin_files.write(version)
        await waiting
    stop.set()
    await asyncio.gather(*talkers)  # any failed message would raise here
    assert len(replies) > 3 and all(r.responded and r.text for r in replies)
    assert "mood: c" in await state_text(dev_host)


async def test_reload_through_the_cli_and_http(dev_host: Host, plugin_files: PluginFiles) -> None:
    assert dev_host.http is not None
    args = ["plugins", "reload", "reloadme", "--url", dev_host.http.url]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert "reloaded reloadme, dependent" in result.output
    async with httpx.AsyncClient(base_url=dev_host.http.url) as client:
        listed = {p["name"]: p for p in (await client.get("/plugins")).json()}
    assert listed["reloadme"]["last_reload"]["ok"] is True
    assert listed["reloadme"]["last_reload"]["reloaded"] == ["reloadme", "dependent"]
    assert listed["eliza"]["last_reload"] is None
    missing = await asyncio.to_thread(
        CliRunner().invoke, app, ["plugins", "reload", "nope", "--url", dev_host.http.url]
    )
    assert missing.exit_code == 1


async def test_a_failed_reload_through_the_cli_names_the_file_and_line(
    dev_host: Host, plugin_files: PluginFiles
) -> None:
    assert dev_host.http is not None and dev_host.reloader is not None
    dev_host.reloader.debounce = 60.0  # only the CLI reloads in this test
    plugin_files.break_it()
    args = ["plugins", "reload", "reloadme", "--url", dev_host.http.url]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 1
    assert "SyntaxError" in result.output and "__init__.py:" in result.output
    assert "mood: v1" in await state_text(dev_host)
    async with httpx.AsyncClient(base_url=dev_host.http.url) as client:
        shown = (await client.get("/plugins/reloadme")).json()
    # still loaded (the old version serves), the failed reload reported beside it
    assert shown["status"] == "loaded" and shown["error"] is None
    last = shown["last_reload"]
    assert last["ok"] is False and last["reloaded"] == [] and "SyntaxError" in last["error"]
    table = await asyncio.to_thread(
        CliRunner().invoke, app, ["plugins", "list", "--url", dev_host.http.url]
    )
    assert table.exit_code == 0, table.output
    cells = re.sub(r"[\s│]+", "", table.output)  # the table folds long cells over lines
    assert "reloadme" in cells and "lastreloadfailed(thepreviousversionserves):SyntaxError" in cells


async def test_no_reload_route_without_dev_mode(make_host: HostFactory) -> None:
    host = await make_host(dev=False, http=True)
    assert host.reloader is None and host.http is not None
    async with httpx.AsyncClient(base_url=host.http.url) as client:
        response = await client.post("/plugins/eliza/reload")
    assert response.status_code == 404
    with pytest.raises(AgentHostError, match="dev mode"):
        await host.reload_plugin("eliza")


async def test_plugins_that_opt_out_or_bind_agent_services_are_refused(
    make_host: HostFactory,
) -> None:
    host = await make_host("inmemory", watch_builtins=True)
    assert host.reloader is not None
    sqlite = await host.reload_plugin("sqlite")
    assert not sqlite.ok and sqlite.error is not None and "reloadable=False" in sqlite.error
    host.loader.loaded["inmemory"].manifest = host.loader.loaded["inmemory"].manifest.model_copy(
        update={"reloadable": True}
    )
    held = await host.reload_plugin("inmemory")
    assert not held.ok and held.error is not None and "'database'" in held.error
    assert "inmemory" not in host.reloader.reloadable()


GUARDED = """
from pathlib import Path
from typing import ClassVar
from contracts.agent import Provider, ProviderResult
from contracts.plugin import Manifest, Plugin

VALUE = "{value}"


class ReloadMe(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="reloadme")

    async def setup(self):
        if Path({marker!r}).exists():
            raise RuntimeError("the service this plugin needs is down")

    async def mood(self, message, state):
        return ProviderResult(text="mood: " + VALUE)

    def providers(self):
        return [Provider("mood", self.mood)]
"""


async def test_a_plugin_whose_old_version_cannot_come_back_is_loaded_by_the_next_save(
    plugin_files: PluginFiles, make_host: HostFactory, tmp_path: Path
) -> None:
    """A reload fails and the old version fails to set up again too (what it needs is down):
    the plugin is unloaded, said so, and the next save to its files loads it anew."""
    marker = tmp_path / "service-down"
    plugin_files.module.write_text(GUARDED.format(value="v1", marker=str(marker)))
    host = await make_host("reloadme", http=True)
    assert host.reloader is not None and "mood: v1" in await state_text(host)
    marker.touch()
    failed = asyncio.ensure_future(next_event(host, PLUGIN_FAILED.name))
    await asyncio.sleep(0.05)
    plugin_files.module.write_text(GUARDED.format(value="v2", marker=str(marker)))
    await failed
    for _ in range(100):  # the rollback's own load failing comes right after
        if host.reloader.lost:
            break
        await asyncio.sleep(0.05)
    assert host.reloader.lost == ["reloadme"] and "reloadme" not in host.loader.loaded
    assert "mood:" not in await state_text(host)
    assert host.http is not None
    async with httpx.AsyncClient(base_url=host.http.url) as client:
        still_down = await client.post("/plugins/reloadme/reload")  # by hand: tried, fails
    assert still_down.status_code == 200 and still_down.json()["ok"] is False
    assert "the service this plugin needs is down" in still_down.json()["error"]
    marker.unlink()
    back = asyncio.ensure_future(next_event(host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0.05)
    plugin_files.module.write_text(GUARDED.format(value="v3", marker=str(marker)))
    payload = await back
    assert payload.name == "reloadme"  # type: ignore[attr-defined]
    assert "mood: v3" in await state_text(host)
    assert host.reloader.lost == [] and host.reloader.history[-1].reloaded == ["reloadme"]
