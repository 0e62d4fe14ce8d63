"""Dependency cycles and whole-graph validation."""

from __future__ import annotations

import pytest

from contracts.services import DependencyCycleError, MissingDependencyError, ScopeError
from contracts.tokens import Token
from host.di import Container


class A:
    def __init__(self, b: B) -> None:
        self.b = b


class B:
    def __init__(self, c: C) -> None:
        self.c = c


class C:
    def __init__(self, a: A) -> None:
        self.a = a


class Selfish:
    def __init__(self, me: Selfish) -> None:
        self.me = me


TA, TB, TC = Token("test.a", A), Token("test.b", B), Token("test.c", C)
SELFISH = Token("test.selfish", Selfish)


def test_cycle_is_reported_with_its_path(container: Container) -> None:
    container.register(TA, A, owner="alpha")
    container.register(TB, B, owner="beta")
    container.register(TC, C)
    with pytest.raises(DependencyCycleError) as caught:
        container.resolve(TB)
    assert str(caught.value) == (
        "dependency cycle between services: 'test.b' (plugin beta) -> 'test.c' (the host)"
        " -> 'test.a' (plugin alpha) -> 'test.b' (plugin beta)"
    )
    assert caught.value.cycle == ("test.b", "test.c", "test.a", "test.b")


def test_self_dependency_is_a_cycle(container: Container) -> None:
    container.register(SELFISH, Selfish, lifetime="transient")
    with pytest.raises(
        DependencyCycleError, match=r"'test\.selfish' \(the host\) -> 'test\.selfish'"
    ):
        container.resolve(SELFISH)


async def test_cycle_through_constructor_injection(container: Container) -> None:
    container.register(TA, A)
    container.register(TB, B)
    container.register(TC, C)

    class Plugin:
        def __init__(self, a: A) -> None:
            self.a = a

    with pytest.raises(DependencyCycleError, match=r"'test\.a' \(the host\) -> 'test\.b'"):
        await container.construct(Plugin, owner="p")


built: list[str] = []


class Fine:
    def __init__(self) -> None:
        built.append("fine")


class NeedsMessage:
    def __init__(self, fine: Fine, state: str) -> None:
        built.append("needs")


class Orphan:
    def __init__(self, missing: C) -> None:
        built.append("orphan")


def test_validate_reports_every_problem_without_building(container: Container) -> None:
    built.clear()
    container.register(TA, A)
    container.register(TB, B)
    container.register(TC, C)
    container.register(Token("test.fine", Fine), Fine)
    container.register(Token("test.state", str), lambda: "s", scope="message")
    container.register(Token("test.needs", NeedsMessage), NeedsMessage, scope="agent")
    problems = container.validate()
    kinds = sorted(type(problem).__name__ for problem in problems)
    assert kinds == ["DependencyCycleError", "ScopeError"]
    assert str(problems[-1]) == (
        "'test.needs' (the host) (singleton, agent scope) needs service 'test.state' (the host),"
        " which lives in the message scope: a longer-lived service cannot hold a shorter-lived"
        " one; make 'test.needs' message-scoped or transient"
    )
    assert built == []
    assert not container.closed and container.resolve(Token("test.fine", Fine)) is not None
    assert built == ["fine"]


def test_validate_is_empty_for_a_sound_graph(container: Container) -> None:
    container.register(Token("test.state", str), lambda: "s", scope="message")
    container.register(Token("test.n", int), lambda: 1)
    assert container.validate() == []


def test_validate_catches_missing_dependencies(container: Container) -> None:
    container.register(Token("test.orphan", Orphan), Orphan, owner="orphan")
    problems = container.validate()
    assert len(problems) == 1
    assert isinstance(problems[0], MissingDependencyError)
    assert str(problems[0]) == (
        "service 'test.orphan' (plugin orphan) needs C (parameter `missing` of Orphan.__init__),"
        " provided by nothing; installed providers: test.orphan (orphan)"
    )


def test_scope_error_class_is_shared() -> None:
    assert issubclass(ScopeError, Exception)


def test_validate_reports_a_pin_to_an_absent_plugin() -> None:
    container = Container(pins={"test.n": "postgres"})
    container.register(Token("test.n", int), lambda: 1, owner="sqlite")
    problems = container.validate()
    assert [type(problem).__name__ for problem in problems] == ["ServicePinError"]
    assert str(problems[0]).startswith("config services.test.n pins plugin postgres")
