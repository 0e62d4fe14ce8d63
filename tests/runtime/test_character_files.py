"""Character files as people save them: encodings (UTF-8 with or without BOM, UTF-16 from
Windows editors), and hostile or broken ones (Latin-1, JSON nested 1,500 deep, YAML alias bombs,
integers over Python's 4,300 digits). Each loads, or fails with a `CharacterError` naming the
file, the field when there is one, and the reason; through ``agenthost chat`` and ``run`` that
is exit code 2 and one line, never a traceback. Fuzzed with hypothesis (bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.agent import Character, CharacterError
from host.characters import load_character

AGENTHOST = Path(sys.executable).with_name("agenthost")
ADA = {"name": "Zoé", "bio": ["Écrit en français, naïve"], "settings": {"n": 1}}

BOMB = """\
name: Bomb
settings:
  a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def dump(data: Any, suffix: str) -> str:
    return (
        json.dumps(data, ensure_ascii=False)
        if suffix == ".json"
        else yaml.safe_dump(data, allow_unicode=True)
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]
)
def test_utf8_with_or_without_bom_and_utf16_load(
    tmp_path: Path, suffix: str, encoding: str
) -> None:
    """``utf-16`` and ``utf-32`` write a byte order mark (as Notepad does); the ``-le``/``-be``
    ones do not, and are told by their zero bytes."""
    path = tmp_path / f"zoe{suffix}"
    path.write_bytes(dump(ADA, suffix).encode(encoding))
    character = load_character(path)
    assert (character.name, character.bio) == ("Zoé", ["Écrit en français, naïve"])


def failure(path: Path) -> CharacterError:
    with pytest.raises(CharacterError) as info:
        load_character(path)
    assert str(path) in str(info.value)
    assert info.value.source == str(path)
    return info.value


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_latin1_is_named_with_its_byte_and_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"zoe{suffix}"
    path.write_bytes(dump(ADA, suffix).encode("latin-1"))
    error = failure(path)
    assert str(error).startswith(f"cannot read character file {path} (line ")
    assert "not UTF-8 text: byte 0x" in str(error) and "save it as UTF-8" in str(error)


def test_a_broken_utf16_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_bytes('{"name": "x"}'.encode("utf-16") + b"\x00")  # odd length
    assert "not valid UTF-16 text" in str(failure(path))


@pytest.mark.parametrize("depth", [150, 1_500, 50_000])
def test_json_nested_deeper_than_the_limit(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"name": "D", "settings": {"x": ' + "[" * depth + "]" * depth + "}}")
    error = failure(path)
    assert f"character file {path} is not valid JSON" in str(error)
    assert "nested deeper than 100 levels" in str(error)


def test_yaml_nested_deeper_than_the_limit_names_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: D\nsettings:\n  x: " + "[" * 5_000 + "]" * 5_000 + "\n")
    error = failure(path)
    assert "is not valid YAML (line 3, at settings.x[0][0][0]...)" in str(error)
    assert error.fields == ("settings.x[0][0][0]...",)


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    error = failure(path)
    assert "holds more than 100,000 values (YAML aliases expanded" in str(error)
    assert error.fields[0].startswith("settings.g[")


def test_yaml_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: L\nsettings:\n  me: &me [*me]\n")
    assert "nested deeper than 100 levels" in str(failure(path))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_an_integer_over_4300_digits_names_line_and_field(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"big{suffix}"
    path.write_text(dump({"name": "B", "settings": {"n": 1}}, suffix).replace("1", "7" * 5_000))
    error = failure(path)
    assert "an integer of 5000 digits: Python reads at most 4,300" in str(error)
    assert error.fields == ("settings.n",)


def test_an_impossible_yaml_date_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    path.write_text("name: T\nsettings:\n  born: 2024-13-45\n")
    error = failure(path)
    assert "(line 3, at settings.born): '2024-13-45' looks like a date" in str(error)


# -- fuzz -----------------------------------------------------------------------------------

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"]
_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**4300, max_value=10**4400)
    | st.floats()
    | st.text(max_size=8)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def character_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes): a character-like mapping, sometimes nested deep, in some encoding;
    or raw bytes; or a valid document cut short."""
    suffix = draw(st.sampled_from([".json", ".yaml"]))
    shape = draw(st.sampled_from(["document", "bytes", "cut"]))
    if shape == "bytes":
        return suffix, draw(st.binary(max_size=200))
    data: dict[Any, Any] = {"name": draw(st.text(max_size=10))}
    data.update(
        draw(
            st.dictionaries(
                st.sampled_from([*list(Character.model_fields), "lore"]), _values, max_size=4
            )
        )
    )
    depth = draw(st.sampled_from([0, 5, 99, 101, 1_200]))
    data["settings"] = {"deep": _nest(draw(_values), depth)}
    try:
        text = dump(data, suffix)
    except (ValueError, RecursionError):  # the serialiser's own limits
        text = "name: [" * depth
    encoded = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if shape == "cut":
        encoded = encoded[: draw(st.integers(0, len(encoded)))]
    return suffix, encoded


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(character_files())
def test_fuzzed_character_files_load_or_name_the_file(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    suffix, data = case
    path = tmp_path_factory.mktemp("fuzz") / f"fuzzed{suffix}"
    path.write_bytes(data)
    try:
        character = load_character(path)
    except CharacterError as exc:
        assert str(path) in str(exc) and exc.source == str(path)
        assert "Traceback" not in str(exc)
    else:
        assert isinstance(character, Character)


# -- through the command line --------------------------------------------------------------


def agenthost(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENTHOST_DATA_DIR": str(cwd / "data"),
        "AGENTHOST_AGENTS__CHARACTERS_DIR": str(cwd / "characters"),
    }
    env.pop("AGENTHOST_CONFIG", None)
    return subprocess.run(
        [str(AGENTHOST), *args],
        cwd=cwd,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("command", "name", "content", "expected"),
    [
        (
            ["chat"],
            "latin.json",
            json.dumps({"name": "Zoé"}, ensure_ascii=False).encode("latin-1"),
            "(line 1): not UTF-8 text: byte 0xe9",
        ),
        (
            ["run", "--port", "0"],
            "deep.json",
            ('{"name": "D", "bio": ' + "[" * 1_500 + "]" * 1_500 + "}").encode(),
            "is not valid JSON: nested deeper than 100 levels",
        ),
        (
            ["chat"],
            "big.yaml",
            ("name: B\nsettings:\n  n: " + "9" * 4_500 + "\n").encode(),
            "(line 3, at settings.n): an integer of 4500 digits",
        ),
        (["run", "--port", "0"], "bomb.yaml", BOMB.encode(), "holds more than 100,000 values"),
    ],
    ids=["chat-latin1", "run-deep-json", "chat-long-integer", "run-yaml-bomb"],
)
def test_chat_and_run_exit_2_naming_the_file(
    tmp_path: Path, command: list[str], name: str, content: bytes, expected: str
) -> None:
    (tmp_path / "characters").mkdir()
    (tmp_path / "characters" / name).write_bytes(content)
    done = agenthost(tmp_path, *command)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert str(Path("characters") / name) in line or str(tmp_path / "characters" / name) in line
    assert expected in line


def test_chat_talks_to_a_character_saved_as_utf16(tmp_path: Path) -> None:
    (tmp_path / "characters").mkdir()
    text = json.dumps({"name": "Zoé", "bio": ["Écrit en français"]}, ensure_ascii=False)
    (tmp_path / "characters" / "zoe.json").write_bytes(text.encode("utf-16"))
    done = agenthost(tmp_path, "chat", "--agent", "Zoé")
    assert done.returncode == 0, done.stderr
    assert "Chatting with Zoé" in done.stdout
