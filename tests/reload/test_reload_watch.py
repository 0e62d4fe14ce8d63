"""What dev mode watches, how saves become reloads, and which plugins reload together."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from contracts.events import PLUGIN_FAILED, PLUGIN_RELOADED, Event
from host.app import Host
from host.reload import package_of

from .conftest import ROOM, HostFactory, Site, state_text

SIMPLE = """
from typing import ClassVar
from contracts.agent import Provider, ProviderResult
from contracts.plugin import Manifest, Plugin
{imports}

VALUE = "{value}"


class Plugin_(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="{name}"{manifest})
    {body}

    async def say(self, message, state):
        return ProviderResult(text="{name} says " + {said})

    def providers(self):
        return [Provider("{name}", self.say)]
"""


def simple(name: str, value: str = "v1", *, imports: str = "", manifest: str = "",
           body: str = "", said: str = "VALUE") -> str:  # fmt: skip
    return SIMPLE.format(
        name=name, value=value, imports=imports, manifest=manifest, body=body, said=said
    )


def package_dir(name: str) -> Path:
    return Path(next(iter(sys.modules[name].__path__))).resolve()


async def events(host: Host, name: str, count: int = 1) -> list[object]:
    """The next `count` payloads of event `name` (waits for them)."""
    got: list[object] = []
    enough = asyncio.Event()

    def record(event: Event[object], payload: object) -> None:
        if event.name == name:
            got.append(payload)
            if len(got) >= count:
                enough.set()

    subscription = host.events.on_any(record)
    try:
        await asyncio.wait_for(enough.wait(), 10)
    finally:
        subscription.cancel()
    return got


async def test_a_burst_of_saves_is_one_reload(site: Site, make_host: HostFactory) -> None:
    module = site.add("burst", simple("burst"))
    host = await make_host("burst", debounce=0.3)
    assert host.reloader is not None
    reloaded = asyncio.create_task(events(host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0)
    for n in range(5):  # five saves in a row, each inside the debounce of the one before
        module.write_text(simple("burst", f"save{n}"))
    await reloaded
    await asyncio.sleep(0.6)  # twice the debounce: a second reload would have started by now
    assert [r.name for r in host.reloader.history] == ["burst"]
    assert "burst says save4" in await state_text(host)


async def test_manifest_watch_paths_are_watched_instead_of_the_package(
    site: Site, make_host: HostFactory
) -> None:
    body = (
        "def __init__(self):\n"
        "        import pathlib\n"
        "        self.text = (pathlib.Path(__file__).parent / 'data' / 'greeting.json').read_text()"
    )
    module = site.add(
        "templated",
        simple("templated", manifest=", watch_paths=('data',)", body=body, said="self.text"),
    )
    data = module.parent / "data"
    data.mkdir()
    (data / "greeting.json").write_text('"hello"')
    host = await make_host("templated")
    assert host.reloader is not None
    assert host.reloader.watched() == {data.resolve(): {"templated"}}
    reloaded = asyncio.create_task(events(host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0.05)
    (data / "greeting.json").write_text('"bonjour"')
    await reloaded
    assert 'templated says "bonjour"' in await state_text(host)


async def test_a_single_module_plugin_watches_its_file_not_its_directory(
    site: Site, make_host: HostFactory
) -> None:
    (site.root / "solo.py").write_text(simple("solo"))
    site.add("solo_dist_only", "")  # a neighbour package in the same directory
    (site.root / "solo_dist_only" / "__init__.py").unlink()
    info = site.root / "solo-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: solo\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[agenthost.plugins]\nsolo = solo:Plugin_\n")
    host = await make_host("solo")
    assert host.reloader is not None
    assert host.reloader.watched() == {(site.root / "solo.py").resolve(): {"solo"}}
    reloaded = asyncio.create_task(events(host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0.05)
    (site.root / "solo.py").write_text(simple("solo", "v2"))
    await reloaded
    assert "solo says v2" in await state_text(host)
    sys.modules.pop("solo", None)


async def test_opted_out_and_builtin_plugins_are_not_watched(
    site: Site, make_host: HostFactory
) -> None:
    site.add("fixed", simple("fixed", manifest=", reloadable=False"))
    site.add("free", simple("free"))
    host = await make_host("fixed", "free")
    assert host.reloader is not None
    assert host.reloader.reloadable() == ["free"]
    assert set().union(*host.reloader.watched().values()) == {"free"}


async def test_builtins_watched_when_asked_reload_only_their_own_modules(
    make_host: HostFactory,
) -> None:
    host = await make_host(watch_builtins=True)
    assert host.reloader is not None
    # the storage plugins opt out (agents hold their adapters); eliza does not
    assert host.reloader.reloadable() == ["eliza"]
    assert host.reloader.watched()[package_dir("builtin_plugins.eliza")] == {"eliza"}
    sqlite_module = sys.modules["builtin_plugins.sqlite"]
    eliza_module = sys.modules["builtin_plugins.eliza"]
    result = await host.reloader.reload("eliza")
    assert result.ok and result.reloaded == ["eliza"]
    assert sys.modules["builtin_plugins.sqlite"] is sqlite_module  # not purged with eliza
    assert sys.modules["builtin_plugins.eliza"] is not eliza_module
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    reply = await runtime.process_message(
        runtime.new_message("I feel sad", room_id=ROOM, entity_id=uuid4())
    )
    assert reply.responded and reply.text


DEPENDENT = simple(
    "child",
    imports="import base",
    manifest=", dependencies=('base',)",
    body="async def setup(self):\n        assert base.VALUE != 'poison', 'base is poisoned'",
    said="base.VALUE",
)


async def test_dependents_reload_after_it_in_order(site: Site, make_host: HostFactory) -> None:
    base = site.add("base", simple("base"))
    site.add("child", DEPENDENT)
    host = await make_host("base", "child")
    assert host.reloader is not None
    base.write_text(simple("base", "v2"))
    result = await host.reloader.reload("base")
    assert result.reloaded == ["base", "child"]
    text = await state_text(host)
    assert "base says v2" in text and "child says v2" in text


async def test_a_dependent_failing_puts_the_whole_group_back(
    site: Site, make_host: HostFactory
) -> None:
    base = site.add("base", simple("base"))
    site.add("child", DEPENDENT)
    host = await make_host("base", "child")
    assert host.reloader is not None
    failed = asyncio.create_task(events(host, PLUGIN_FAILED.name))
    await asyncio.sleep(0)
    base.write_text(simple("base", "poison"))
    result = await host.reloader.reload("base")
    assert not result.ok and result.error is not None and "base is poisoned" in result.error
    payload = (await failed)[0]
    assert getattr(payload, "name", None) == "child"
    text = await state_text(host)  # base's new code would poison its dependent: both stay old
    assert "base says v1" in text and "child says v1" in text
    base.write_text(simple("base", "v3"))
    assert (await host.reloader.reload("base")).ok
    text = await state_text(host)
    assert "base says v3" in text and "child says v3" in text


async def test_a_plugin_needing_a_service_reloads_with_its_provider(
    site: Site, make_host: HostFactory
) -> None:
    maker = simple(
        "maker",
        imports=(
            "from contracts.services import Service\n"
            "class Greeter:\n    def __init__(self, word): self.word = word\n"
        ),
        manifest=", provides=(TOKEN,)",
        body="def services(self):\n        return [Service(TOKEN, lambda: Greeter(VALUE))]",
    ).replace('VALUE = "v1"', 'VALUE = "v1"\nfrom contracts.tokens import Token\n'
              'TOKEN = Token("maker.greeter", Greeter)')  # fmt: skip
    user = simple(
        "user",
        imports="from maker import Greeter",
        body="def __init__(self, greeter: Greeter):\n        self.greeter = greeter",
        said="self.greeter.word",
    )
    module = site.add("maker", maker)
    site.add("user", user)
    host = await make_host("maker", "user")
    assert host.reloader is not None
    assert "user says v1" in await state_text(host)
    module.write_text(maker.replace('VALUE = "v1"', 'VALUE = "v2"'))
    result = await host.reloader.reload("maker")
    assert result.reloaded == ["maker", "user"]  # no declared dependency: the constructor
    assert "user says v2" in await state_text(host)


@given(
    st.lists(
        st.lists(st.sampled_from("abc"), min_size=1, max_size=4).map(".".join),
        min_size=1,
        max_size=5,
        unique=True,
    )
)
def test_package_of_owns_no_other_plugins_module(modules: list[str]) -> None:
    """The package purged for a plugin is a prefix of its module that contains no other
    plugin's module, unless that one lives in the very same module or beneath it."""
    mine, others = modules[0], modules[1:]
    package = package_of(f"{mine}:Plugin", [f"{m}:Plugin" for m in others])
    assert mine == package or mine.startswith(package + ".")
    for other in others:
        if other == package or other.startswith(package + "."):
            assert package == mine  # only possible when nothing shorter was free


async def test_watch_paths_changed_by_a_reload_are_watched(
    site: Site, make_host: HostFactory
) -> None:
    module = site.add("moving", simple("moving", manifest=", watch_paths=('one',)"))
    for sub in ("one", "two"):
        (module.parent / sub).mkdir()
    host = await make_host("moving")
    assert host.reloader is not None
    assert host.reloader.watched() == {(module.parent / "one").resolve(): {"moving"}}
    module.write_text(simple("moving", "v2", manifest=", watch_paths=('two',)"))
    assert (await host.reloader.reload("moving")).ok
    assert host.reloader.watched() == {(module.parent / "two").resolve(): {"moving"}}
    reloaded = asyncio.create_task(events(host, PLUGIN_RELOADED.name))
    await asyncio.sleep(0.05)
    (module.parent / "two" / "settings.yaml").write_text("a: 1\n")
    await reloaded
    assert [r.ok for r in host.reloader.history] == [True, True]


async def test_saving_a_plugin_and_its_dependent_together_is_one_reload(
    site: Site, make_host: HostFactory
) -> None:
    base = site.add("base", simple("base"))
    child = site.add("child", DEPENDENT)
    host = await make_host("base", "child", debounce=0.3)
    assert host.reloader is not None
    reloaded = asyncio.create_task(events(host, PLUGIN_RELOADED.name, count=2))
    await asyncio.sleep(0.05)
    child.write_text(DEPENDENT.replace("base.VALUE", "'child ' + base.VALUE"))
    base.write_text(simple("base", "v2"))
    await reloaded
    await asyncio.sleep(0.6)  # twice the debounce: a second reload would have started by now
    assert [(r.name, r.reloaded) for r in host.reloader.history] == [("base", ["base", "child"])]
    assert "child says child v2" in await state_text(host)


async def test_a_new_dependency_that_is_not_loaded_keeps_the_old_version(
    site: Site, make_host: HostFactory
) -> None:
    module = site.add("lonely", simple("lonely"))
    host = await make_host("lonely")
    assert host.reloader is not None
    module.write_text(simple("lonely", "v2", manifest=", dependencies=('nothere',)"))
    result = await host.reloader.reload("lonely")
    assert not result.ok and result.error is not None
    assert result.error.startswith("the new version depends on nothere, which is not loaded")
    assert result.error.endswith(f"({module})")  # the plugin's file, not the host's
    assert "lonely says v1" in await state_text(host)
