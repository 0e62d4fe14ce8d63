"""Registration, lifetimes, priorities, config pins, replacing and unregistering bindings."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.services import (
    MissingDependencyError,
    ServiceConflictError,
    ServicePinError,
)
from contracts.tokens import Token
from host.di import Container


class Store:
    """A tiny real service: counts the instances made."""

    made = itertools.count()

    def __init__(self, label: str = "store") -> None:
        self.label = label
        self.serial = next(Store.made)


class Repo:
    def __init__(self, store: Store) -> None:
        self.store = store


STORE = Token("test.store", Store)
REPO = Token("test.repo", Repo)
LABEL = Token("test.label", str)


def test_singleton_is_built_once(container: Container) -> None:
    container.register(STORE, Store)
    assert container.resolve(STORE) is container.resolve(STORE)


def test_transient_is_built_every_time(container: Container) -> None:
    container.register(STORE, Store, lifetime="transient")
    first, second = container.resolve(STORE), container.resolve(STORE)
    assert first is not second
    assert second.serial > first.serial


def test_factory_parameters_are_injected_by_type(container: Container) -> None:
    container.register(STORE, Store)
    container.register(REPO, Repo, lifetime="transient")
    repo = container.resolve(REPO)
    assert repo.store is container.resolve(STORE)
    assert container.resolve(REPO) is not repo


def test_parameter_with_default_keeps_it_when_nothing_provides(container: Container) -> None:
    container.register(STORE, Store)
    assert container.resolve(STORE).label == "store"
    container.provide(LABEL, "injected")
    other = Container()
    other.provide(LABEL, "injected")
    other.register(STORE, Store)
    assert other.resolve(STORE).label == "injected"


def test_provide_binds_an_existing_object(container: Container) -> None:
    store = Store("given")
    container.provide(STORE, store)
    assert container.resolve(STORE) is store
    assert container.has(STORE)


def test_missing_service_error_names_it_and_lists_providers(container: Container) -> None:
    container.register(STORE, Store, owner="sqlite")
    with pytest.raises(MissingDependencyError) as caught:
        container.resolve(REPO)
    assert str(caught.value) == (
        "service 'test.repo' is provided by nothing; installed providers: test.store (sqlite)"
    )
    assert not container.has(REPO)


def test_missing_dependency_of_a_service_names_the_parameter(container: Container) -> None:
    container.register(REPO, Repo, owner="repos")
    with pytest.raises(MissingDependencyError) as caught:
        container.resolve(REPO)
    assert str(caught.value) == (
        "service 'test.repo' (plugin repos) needs Store (parameter `store` of Repo.__init__),"
        " provided by nothing; installed providers: test.repo (repos)"
    )


def test_higher_priority_wins_and_the_choice_is_logged(
    container: Container, logs: list[str]
) -> None:
    container.register(STORE, lambda: Store("inmemory"), owner="inmemory", priority=10)
    container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=100)
    container.register(STORE, lambda: Store("postgres"), owner="postgres", priority=50)
    assert container.resolve(STORE).label == "sqlite"
    assert logs[-1] == (
        "INFO service 'test.store': using plugin sqlite (priority 100) over plugin inmemory"
        " (priority 10), plugin postgres (priority 50)"
    )


def test_a_choice_is_logged_again_only_when_it_changes(
    container: Container, logs: list[str]
) -> None:
    container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=100)
    container.register(STORE, lambda: Store("postgres"), owner="postgres", priority=50)
    container.register(STORE, lambda: Store("inmemory"), owner="inmemory", priority=10)
    choices = [line for line in logs if "service 'test.store': using" in line]
    assert choices == [
        "INFO service 'test.store': using plugin sqlite (priority 100) over plugin postgres"
        " (priority 50)",
        "INFO service 'test.store': using plugin sqlite (priority 100) over plugin postgres"
        " (priority 50), plugin inmemory (priority 10)",
    ]
    logs.clear()
    container.unregister_owner("inmemory")  # a loser leaving: the same choice, not repeated
    container.register(STORE, lambda: Store("inmemory"), owner="inmemory", priority=10)
    assert not [line for line in logs if "using" in line]  # ... nor when it comes back
    container.unregister_owner("sqlite")  # the winner leaving: a new choice, logged
    assert [line for line in logs if "using" in line] == [
        "INFO service 'test.store': using plugin postgres (priority 50) over plugin inmemory"
        " (priority 10)"
    ]
    assert container.resolve(STORE).label == "postgres"


def test_registrations_in_one_start_log_the_final_choice_once(
    container: Container, logs: list[str]
) -> None:
    with container.announcing_once():
        container.register(STORE, lambda: Store("postgres"), owner="postgres", priority=50)
        container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=100)
        assert container.resolve(STORE).label == "sqlite"  # chosen at once, logged later
        container.register(STORE, lambda: Store("inmemory"), owner="inmemory", priority=10)
        assert not [line for line in logs if "using" in line]
    assert [line for line in logs if "using" in line] == [
        "INFO service 'test.store': using plugin sqlite (priority 100) over plugin postgres"
        " (priority 50), plugin inmemory (priority 10)"
    ]


def test_equal_priority_later_wins_with_a_warning(container: Container, logs: list[str]) -> None:
    container.register(STORE, lambda: Store("a"), owner="a")
    container.register(STORE, lambda: Store("b"), owner="b")
    assert container.resolve(STORE).label == "b"
    assert logs[-1].startswith("WARNING service 'test.store': using plugin b (priority 0)")
    assert logs[-1].endswith("equal priorities, pin one with config services.test.store")


def test_config_pin_beats_priority(logs: list[str]) -> None:
    container = Container(pins={"test.store": "postgres"})
    container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=100)
    container.register(STORE, lambda: Store("postgres"), owner="postgres", priority=50)
    assert container.resolve(STORE).label == "postgres"
    assert logs[-1] == (
        "INFO service 'test.store': using plugin postgres (pinned by config"
        " services.test.store) over plugin sqlite (priority 100)"
    )


def test_pin_to_a_plugin_that_does_not_provide_the_token_is_an_error() -> None:
    container = Container(pins={"test.store": "postgres"})
    container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=100)
    with pytest.raises(ServicePinError) as caught:
        container.resolve(STORE)
    assert str(caught.value) == (
        "config services.test.store pins plugin postgres, which does not provide"
        " 'test.store'; it is provided by: plugin sqlite (priority 100)"
    )


def test_pins_can_be_set_later_and_rebuild_the_service(container: Container) -> None:
    container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=100)
    container.register(STORE, lambda: Store("postgres"), owner="postgres", priority=50)
    assert container.resolve(STORE).label == "sqlite"
    container.set_pins({"test.store": "postgres"})
    assert container.pins == {"test.store": "postgres"}
    assert container.resolve(STORE).label == "postgres"
    container.set_pins({})
    assert container.resolve(STORE).label == "sqlite"


def test_same_owner_registering_again_replaces_its_binding(container: Container) -> None:
    container.register(STORE, lambda: Store("old"), owner="p")
    assert container.resolve(STORE).label == "old"
    container.register(STORE, lambda: Store("new"), owner="p")
    assert container.resolve(STORE).label == "new"
    assert [info.factory for info in container.bindings()] == [
        "test_same_owner_registering_again_replaces_its_binding.<locals>.<lambda>"
    ]


def test_unregister_owner_falls_back_and_rebuilds_dependents(container: Container) -> None:
    container.register(STORE, lambda: Store("inmemory"), owner="inmemory", priority=1)
    container.register(STORE, lambda: Store("sqlite"), owner="sqlite", priority=2)
    container.register(REPO, Repo, owner="repos")
    repo = container.resolve(REPO)
    assert repo.store.label == "sqlite"
    container.unregister_owner("sqlite")
    again = container.resolve(REPO)
    assert again is not repo
    assert again.store.label == "inmemory"
    container.unregister_owner("inmemory")
    with pytest.raises(MissingDependencyError):
        container.resolve(REPO)


def test_unregister_keeps_unrelated_singletons(container: Container) -> None:
    count = Token("test.count", int)
    container.register(STORE, Store, owner="a")
    container.provide(count, 1, owner="b")
    store = container.resolve(STORE)
    container.unregister_owner("b")
    assert container.resolve(STORE) is store


def test_unregister_rebuilds_a_singleton_whose_optional_input_left(container: Container) -> None:
    container.provide(LABEL, "from-b", owner="b")
    container.register(STORE, Store, owner="a")
    assert container.resolve(STORE).label == "from-b"
    container.unregister_owner("b")
    assert container.resolve(STORE).label == "store"


def test_same_token_name_with_another_type_is_a_conflict(container: Container) -> None:
    container.register(STORE, Store, owner="a")
    impostor = Token("test.store", Repo)
    with pytest.raises(ServiceConflictError) as caught:
        container.register(impostor, lambda: Repo(Store()), owner="b")
    assert str(caught.value) == (
        "token name 'test.store' is bound to two different types: Store by 'test.store'"
        " (plugin a) and Repo by plugin b; token names must be unique (prefix a plugin's own"
        " tokens with its name)"
    )


def test_a_token_recreated_with_the_same_name_finds_the_service(container: Container) -> None:
    container.register(STORE, Store)
    assert container.resolve(Token("test.store", Store)) is container.resolve(STORE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"lifetime": "forever"},
            "service 'test.store' of plugin p: unknown lifetime 'forever'; use one of"
            " singleton, scoped, transient",
        ),
        (
            {"scope": "request"},
            "service 'test.store' of plugin p: unknown scope 'request'; use one of"
            " app, agent, message",
        ),
    ],
)
def test_invalid_lifetime_or_scope(
    container: Container, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ServiceConflictError) as caught:
        container.register(STORE, Store, owner="p", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_non_callable_factory(container: Container) -> None:
    with pytest.raises(ServiceConflictError, match="factory 3 is not callable"):
        container.register(STORE, 3)  # type: ignore[arg-type]


def test_bindings_lists_every_candidate_and_the_chosen_one(container: Container) -> None:
    container.register(STORE, Store, owner="a", priority=1)
    container.register(STORE, Store, owner="b", priority=2, lifetime="transient")
    rows = {
        (info.owner, info.priority, info.lifetime, info.chosen) for info in container.bindings()
    }
    assert rows == {("a", 1, "singleton", False), ("b", 2, "transient", True)}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.integers(-3, 3)),
        min_size=1,
        max_size=12,
    ),
    st.sets(st.sampled_from("abcde")),
)
def test_priority_choice_invariant(registrations: list[tuple[str, int]], removed: set[str]) -> None:
    """The winner is the highest priority among live bindings, the latest on ties; an owner
    re-registering replaces its binding; unregistering falls back to the next best."""
    container = Container()
    live: dict[str, tuple[int, int]] = {}
    for seq, (owner, priority) in enumerate(registrations):
        container.register(LABEL, (lambda o=owner: o), owner=owner, priority=priority)
        live[owner] = (priority, seq)
    for owner in removed:
        container.unregister_owner(owner)
        live.pop(owner, None)
    if not live:
        assert not container.has(LABEL)
        return
    expected = max(live, key=lambda owner: live[owner])
    assert container.resolve(LABEL) == expected
