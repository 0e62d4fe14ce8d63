"""Python 3.12+ hygiene: a deprecation our code triggers fails the suite, and the SQLite event
store binds no numbered placeholders (a sequence bound to ``?1`` warns on 3.12, fails on 3.14)."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.eventstore import EncodedEvent
from host.eventstore import SqliteEventStore
from host.eventstore import sqlite as sqlite_store


@pytest.mark.parametrize("module", ["host.eventstore.sqlite", "contracts", "builtin_plugins.eliza"])
def test_a_deprecation_from_our_modules_is_an_error(module: str) -> None:
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module=module)


def test_a_deprecation_from_a_library_is_not_ours_to_fail() -> None:
    with warnings.catch_warnings(record=True):
        warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module="hostile.lib")


def test_no_numbered_placeholders_in_the_sqlite_store() -> None:
    for name in ("_INSERT", "_INSERT_JSON"):
        sql = getattr(sqlite_store, name)
        assert not re.search(r"\?\d|[:@$]\w", sql), name


async def test_append_encoded_binds_a_sequence_without_warnings(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            written = await store.append_encoded(
                [EncodedEvent("a", "t", '{"x": 1}', 1, datetime.now(UTC), metadata="{}")]
            )
        assert written == 1
        [event] = await store.get_events("a")
        assert event.data == {"x": 1}
    finally:
        await store.close()
