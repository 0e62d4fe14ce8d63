"""In-tree plugin classes for the loader tests; each records its lifecycle in `JOURNAL`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from contracts.agent import Provider, ProviderResult, State
from contracts.memory import Memory
from contracts.plugin import Manifest, Plugin

JOURNAL: list[str] = []


class Recording(Plugin):
    manifest: ClassVar[Manifest]

    async def setup(self) -> None:
        JOURNAL.append(f"setup:{self.manifest.name}")

    async def teardown(self) -> None:
        JOURNAL.append(f"teardown:{self.manifest.name}")


def make(name: str, *, deps: tuple[str, ...] = (), priority: int = 0) -> type[Recording]:
    manifest = Manifest(name=name, dependencies=deps, priority=priority)
    return type(f"Plugin_{name}", (Recording,), {"manifest": manifest})


Alpha = make("alpha", deps=("beta",))
Beta = make("beta", priority=-5)
Gamma = make("gamma", priority=50)
NeedsGhost = make("needs-ghost", deps=("ghost",))
NeedsNeedsGhost = make("needs-needs-ghost", deps=("needs-ghost",))
CycleX = make("cycle-x", deps=("cycle-y",))
CycleY = make("cycle-y", deps=("cycle-x",))
AfterCycle = make("after-cycle", deps=("cycle-x",))


async def _noop(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text="noop")


class FailsSetup(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="fails-setup")

    def providers(self) -> Sequence[Provider]:
        return (Provider("fails-setup-provider", _noop),)

    async def setup(self) -> None:
        raise RuntimeError("cannot reach the weather service")


class FailsTeardown(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="fails-teardown", priority=10)

    async def teardown(self) -> None:
        JOURNAL.append("teardown:fails-teardown")
        raise RuntimeError("teardown exploded")


class WrongName(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="not-the-entry-point-name")


class NotAPlugin:
    """No manifest at all."""
