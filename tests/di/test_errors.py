"""The container's errors carry their facts as fields (token, plugin, parameter, scope, needed
by, candidates, ...): one test per kind checks the fields and the class, not the wording (the
wording is pinned by the other tests of tests/di)."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import AsyncIterator
from typing import Annotated

import pytest

from contracts import services as families
from contracts.tokens import Token
from host.di import Container, errors
from host.di.errors import Candidate, ServiceRef, Via


class Store:
    pass


class Repo:
    def __init__(self, store: Store) -> None:
        self.store = store


class Needs:
    def __init__(self, repo: Repo, missing: Annotated[Store, Token[Store]("t.absent")]) -> None:
        self.repo = repo


STORE = Token("t.store", Store)
REPO = Token("t.repo", Repo)
NAME = Token("t.name", str)


def raised(kind: type[BaseException], call: object) -> BaseException:
    """The error `call()` raises; it must be of `kind`."""
    with pytest.raises(kind) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_each_error_is_its_contract_class_by_name_and_type() -> None:
    for name in (
        "MissingDependencyError",
        "ServicePinError",
        "DependencyCycleError",
        "ScopeError",
        "ScopeClosedError",
        "AsyncServiceError",
        "ServiceConflictError",
        "InjectionError",
        "ServiceReleaseError",
    ):
        mine, family = getattr(errors, name), getattr(families, name)
        assert mine.__name__ == name and issubclass(mine, family), name
        assert issubclass(mine, families.DependencyError) and dataclasses.is_dataclass(mine)


async def test_missing_token_fields() -> None:
    container = Container(pins={"t.name": "absent"})
    container.register(STORE, Store, owner="storage")
    exc = raised(errors.MissingDependencyError, lambda: container.resolve(NAME))
    assert isinstance(exc, errors.MissingDependencyError)
    assert (exc.token, exc.parameter, exc.needed_by, exc.pin) == ("t.name", None, None, "absent")
    assert exc.installed["t.store"] == ("storage",)
    assert exc.args == (str(exc),)  # the message is rendered once, at construction


async def test_missing_parameter_fields_for_a_plugin_and_for_a_service() -> None:
    container = Container()
    container.register(REPO, Repo, owner="repos")
    with pytest.raises(errors.MissingDependencyError) as caught:
        await container.construct(Needs, owner="needy")
    exc = caught.value
    assert (exc.plugin, exc.service, exc.parameter) == ("repos", "t.repo", "store")
    assert (exc.token, exc.target, exc.wants) == (None, "Repo.__init__", "Store")
    container.register(STORE, Store)
    with pytest.raises(errors.MissingDependencyError) as caught:
        await container.construct(Needs, owner="needy")
    exc = caught.value
    assert (exc.plugin, exc.service, exc.parameter, exc.token) == (
        "needy",
        None,
        "missing",
        "t.absent",
    )
    assert exc.target == "Needs.__init__" and "t.repo" in exc.installed


def test_pin_fields() -> None:
    container = Container(pins={"t.store": "postgres"})
    container.register(STORE, Store, owner="sqlite", priority=100)
    container.register(STORE, Store, owner="inmemory", priority=10)
    exc = raised(errors.ServicePinError, lambda: container.resolve(STORE))
    assert isinstance(exc, errors.ServicePinError)
    assert (exc.token, exc.pin) == ("t.store", "postgres")
    assert exc.candidates == (Candidate("sqlite", 100), Candidate("inmemory", 10))


class A:
    def __init__(self, b: B) -> None: ...


class B:
    def __init__(self, a: A) -> None: ...


def make_repo(name: str) -> Repo:
    return Repo(Store())


def test_cycle_fields() -> None:
    container = Container()
    container.register(Token("t.a", A), A, owner="alpha")
    container.register(Token("t.b", B), B)
    exc = raised(errors.DependencyCycleError, lambda: container.resolve(Token("t.a", A)))
    assert isinstance(exc, errors.DependencyCycleError)
    assert exc.cycle == ("t.a", "t.b", "t.a")
    assert exc.services == (ServiceRef("t.a", "alpha"), ServiceRef("t.b", None), exc.services[0])


async def test_scope_error_fields_for_each_kind() -> None:
    container = Container()
    container.register(NAME, lambda: "m", scope="message", owner="runtime")
    container.register(REPO, make_repo, owner="repos", scope="agent")
    exc = raised(errors.ScopeError, lambda: container.resolve(NAME))
    assert isinstance(exc, errors.ScopeError)
    assert (exc.kind, exc.token, exc.plugin, exc.scope, exc.current, exc.needed_by) == (
        "not_open",
        "t.name",
        "runtime",
        "message",
        "app",
        None,
    )
    agent = container.create_scope("agent")
    exc = raised(errors.ScopeError, lambda: agent.resolve(REPO))
    assert isinstance(exc, errors.ScopeError) and exc.kind == "shorter_lived"
    assert (exc.token, exc.scope, exc.needed_by, exc.needed_by_plugin) == (
        "t.name",
        "message",
        "t.repo",
        "repos",
    )
    assert (exc.needed_by_lifetime, exc.needed_by_scope) == ("singleton", "agent")
    message = agent.create_scope("message")
    exc = raised(errors.ScopeError, lambda: message.create_scope("agent"))
    assert isinstance(exc, errors.ScopeError)
    assert (exc.kind, exc.requested, exc.current) == ("nesting", "agent", "message")

    class Plugin:
        def __init__(self, name: str) -> None: ...

    with pytest.raises(errors.ScopeError) as caught:
        await container.construct(Plugin, owner="chat")
    assert caught.value.via == Via("chat", "name", "test_scope_error_fields_for_each_kind"
                                   ".<locals>.Plugin.__init__")  # fmt: skip
    assert caught.value.kind == "not_open" and caught.value.token == "t.name"
    await container.aclose()


async def test_closed_scope_fields() -> None:
    container = Container()
    agent = container.create_scope("agent")
    await agent.aclose()
    exc = raised(errors.ScopeClosedError, lambda: agent.resolve(NAME))
    assert isinstance(exc, errors.ScopeClosedError)
    assert (exc.scope, exc.opening, exc.token) == ("agent", None, None)
    exc = raised(errors.ScopeClosedError, lambda: agent.create_scope("message"))
    assert isinstance(exc, errors.ScopeClosedError)
    assert (exc.scope, exc.opening) == ("agent", "message")


async def test_async_service_fields() -> None:
    async def connect() -> Store:
        return Store()

    container = Container()
    container.register(STORE, connect, owner="net")
    container.register(REPO, Repo)
    exc = raised(errors.AsyncServiceError, lambda: container.resolve(STORE))
    assert isinstance(exc, errors.AsyncServiceError)
    assert (exc.token, exc.plugin, exc.resource, exc.async_dependency) == (
        "t.store",
        "net",
        False,
        None,
    )
    assert exc.factory is not None and exc.factory.endswith("connect")
    exc = raised(errors.AsyncServiceError, lambda: container.resolve(REPO))
    assert isinstance(exc, errors.AsyncServiceError)
    assert (exc.token, exc.factory, exc.async_dependency) == (
        "t.repo",
        None,
        ServiceRef("t.store", "net"),
    )
    await container.aclose()


def test_conflict_fields_for_each_kind() -> None:
    container = Container()
    container.register(NAME, lambda: "a", owner="one")

    def check(call: object) -> errors.ServiceConflictError:
        exc = raised(errors.ServiceConflictError, call)
        assert isinstance(exc, errors.ServiceConflictError)
        return exc

    exc = check(lambda: container.register(Token("t.name", int), lambda: 1, owner="two"))
    assert (exc.kind, exc.token, exc.plugin, exc.type, exc.bound_type, exc.bound_by) == (
        "type_conflict",
        "t.name",
        "two",
        int,
        str,
        "one",
    )
    exc = check(lambda: container.register(STORE, Store, lifetime="forever"))  # type: ignore[arg-type]
    assert (exc.kind, exc.option, exc.value) == ("unknown_choice", "lifetime", "forever")
    assert exc.choices == ("singleton", "scoped", "transient")
    exc = check(lambda: container.register(STORE, Store, scope="request", owner="web"))  # type: ignore[arg-type]
    assert (exc.kind, exc.option, exc.value, exc.plugin) == (
        "unknown_choice",
        "scope",
        "request",
        "web",
    )
    assert exc.choices == ("app", "agent", "message")
    exc = check(lambda: container.register(STORE, 3))  # type: ignore[arg-type]
    assert (exc.kind, exc.token, exc.factory) == ("not_callable", "t.store", 3)

    async def session() -> AsyncIterator[Store]:
        yield Store()

    exc = check(lambda: container.register(STORE, session, lifetime="transient"))
    assert exc.kind == "transient_generator" and str(exc.factory).endswith("session")


async def test_injection_fields_for_each_kind() -> None:
    class Legacy:
        def __init__(self, db) -> None:  # type: ignore[no-untyped-def]
            self.db = db

    class Two:
        def __init__(self, s: Annotated[Store, STORE, Token[Store]("t.other")]) -> None: ...

    class Broken:
        def __init__(self, thing: NotImportedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
            ...

    class Ambiguous:
        def __init__(self, store: Store) -> None: ...

    container = Container()

    def check(call: object) -> errors.InjectionError:
        exc = raised(errors.InjectionError, call)
        assert isinstance(exc, errors.InjectionError)
        return exc

    exc = check(lambda: container.register(Token("t.legacy", Legacy), Legacy, owner="old"))
    assert (exc.kind, exc.parameter, exc.token, exc.plugin) == (
        "unannotated",
        "db",
        "t.legacy",
        "old",
    )
    assert exc.target.endswith("Legacy.__init__")
    exc = check(lambda: container.requirements(Two))
    assert (exc.kind, exc.parameter, exc.candidates, exc.token) == (
        "several_tokens",
        "s",
        ("t.store", "t.other"),
        None,
    )
    exc = check(lambda: container.requirements(Broken))
    assert exc.kind == "unreadable" and exc.unresolved and "NotImportedAnywhere" in exc.reason
    container.declare_tokens([STORE, Token("t.store2", Store)])
    with pytest.raises(errors.InjectionError) as caught:
        await container.construct(Ambiguous, owner="amb")
    exc = caught.value
    assert (exc.kind, exc.parameter, exc.plugin, exc.type) == ("ambiguous", "store", "amb", Store)
    assert exc.candidates == ("t.store", "t.store2")


async def test_release_fields() -> None:
    async def fragile() -> AsyncIterator[str]:
        yield "x"
        raise OSError("disk gone")

    container = Container()
    container.register(NAME, fragile, scope="message")
    message = container.create_scope("message")
    await message.aresolve(NAME)
    with pytest.raises(errors.ServiceReleaseError) as caught:
        await message.aclose()
    assert caught.value.scope == "message"
    assert [type(error) for error in caught.value.errors] == [OSError]


def test_fields_render_the_message_again_when_replaced() -> None:
    exc = errors.MissingDependencyError(token="t.x")
    moved = dataclasses.replace(exc, via=Via("p", "x", "P.__init__"))
    assert str(moved) == f"plugin p (parameter `x` of P.__init__): {exc}"


def test_errors_pickle_with_their_fields() -> None:
    exc = errors.ScopeError(kind="nesting", requested="agent", current="message")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is errors.ScopeError and (copy.kind, copy.requested) == ("nesting", "agent")
    assert str(copy) == str(exc)
