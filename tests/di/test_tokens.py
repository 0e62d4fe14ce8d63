from __future__ import annotations

from typing import Protocol

import pytest

from contracts.tokens import Token


class Clock(Protocol):
    def now(self) -> float: ...


def test_token_carries_name_and_type() -> None:
    token = Token("clock", Clock)
    assert token.name == "clock"
    assert token.type is Clock
    assert repr(token) == "Token('clock')"


def test_subscripted_token_is_typed_for_mypy_only() -> None:
    token = Token[Clock]("clock")
    assert token.type is None


def test_untyped_token_has_no_type() -> None:
    assert Token("opaque").type is None


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        Token(name, int)


def test_well_known_tokens_are_known_to_every_container() -> None:
    import contracts
    from host.di import Container

    well_known = {v.name: v for v in vars(contracts).values() if isinstance(v, Token)}
    container = Container()
    for token in well_known.values():
        if token.type is not None and isinstance(token.type, type):
            assert container.token_for(token.type) is token
