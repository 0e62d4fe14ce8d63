"""`host.secrets`: the registry masks every registered secret in plain and JSON text, leaves
text without one untouched (the same object: nothing copied on the hot paths), and its JSON
scrubbing always gives valid JSON equal to the data with the secrets masked in its strings."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr
from pydantic_core import to_json

from host.secrets import MASK, SecretRegistry, secret_values


def registry(*values: str) -> SecretRegistry:
    found = SecretRegistry()
    found.add(values)
    return found


def test_scrub_masks_every_occurrence_longest_first() -> None:
    secrets = registry("sk-abcd", "sk-abcdef", "xy")  # "xy": too short to register
    assert len(secrets) == 2
    assert secrets.scrub("a sk-abcdef b sk-abcd c xy") == f"a {MASK} b {MASK} c xy"


def test_text_without_a_secret_is_returned_as_is() -> None:
    text = "nothing to see here " * 10
    assert registry("sk-abcd").scrub(text) is text
    assert registry("sk-abcd").scrub_json(json.dumps({"a": text})) == json.dumps({"a": text})
    empty = SecretRegistry()
    assert not empty and empty.scrub(text) is text and empty.scrub_json(text) is text


def test_json_text_with_escaped_secrets_stays_valid_json() -> None:
    secrets = registry('pa"ss\\word', "n12345")
    text = to_json({'pa"ss\\word': ['x pa"ss\\word y'], "b": "\n12345"}).decode()
    out = secrets.scrub_json(text)
    # the key and the value are masked; "\n12345" is a newline then digits, not the secret
    assert json.loads(out) == {MASK: [f"x {MASK} y"], "b": "\n12345"}


def test_non_ascii_secrets_are_found_escaped_or_not() -> None:
    secrets = registry("clé-secrète")
    for text in (json.dumps({"k": "a clé-secrète"}), to_json({"k": "a clé-secrète"}).decode()):
        assert json.loads(secrets.scrub_json(text)) == {"k": f"a {MASK}"}


def test_secret_values_of_typed_and_named_settings() -> None:
    class Settings(BaseModel):
        passphrase: SecretStr
        url: str = "http://x"

    assert secret_values(Settings(passphrase=SecretStr("p-1234"))) == ["p-1234"]
    assert secret_values({"api_key": "k-1234", "url": "http://x"}) == ["k-1234"]


_SECRET = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="*"), min_size=4, max_size=12
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(secrets=st.lists(_SECRET, min_size=1, max_size=3), data=_JSON, where=st.integers(0, 2))
def test_scrubbed_json_is_valid_and_holds_no_secret(
    secrets: list[str], data: Any, where: int
) -> None:
    # plant a secret inside the data, somewhere
    planted = {"before": data, "planted": f"x{secrets[0]}y"} if where else [data, secrets[-1]]
    found = registry(*secrets)
    for text in (to_json(planted).decode(), json.dumps(planted), json.dumps(planted, indent=1)):
        out = found.scrub_json(text)
        decoded = json.loads(out)
        assert decoded == found.scrub_data(json.loads(text))
        assert not [s for s in _strings(decoded) for secret in secrets if secret in s]
