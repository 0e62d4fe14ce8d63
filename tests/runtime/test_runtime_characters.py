"""Characters load from YAML/JSON (ElizaOS files as they are); errors name file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.agent import Character, CharacterError
from host.characters import default_character, load_character, load_characters

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parents[2]


def test_elizaos_character_json_loads_as_is() -> None:
    character = load_character(DATA / "elizaos_character.json")
    assert character.name == "Ada"
    assert character.username == "ada"
    assert character.system is not None and character.system.startswith("Respond to all")
    assert len(character.bio) == 3
    assert character.message_examples[0][1]["content"]["text"].startswith("Ada Lovelace")
    assert character.post_examples[0].startswith("The first computer bug")
    assert character.style["chat"] == ["ask clarifying questions"]
    assert character.plugins[0] == "@elizaos/plugin-sql"
    # unknown ElizaOS fields are kept in settings, known settings stay
    assert character.settings["lore"] == [
        "Once debugged a Difference Engine replica with a pencil."
    ]
    assert character.settings["knowledge"][1] == {
        "path": "knowledge/computing-history.md",
        "shared": False,
    }
    assert character.settings["clients"] == ["discord"]
    assert character.model_provider == "openai"  # honoured: see test_runtime_character_models
    assert "messageHandlerTemplate" in character.templates
    assert character.settings["voice"] == {"model": "en_US-hfc_female-medium"}
    # settings.secrets moved to secrets, never shown in repr
    assert character.secrets == {"OPENAI_API_KEY": "sk-test-not-a-real-key"}
    assert "secrets" not in character.settings
    assert "sk-test" not in repr(character)
    assert character.setting("OPENAI_API_KEY") == "sk-test-not-a-real-key"
    assert character.setting("avatar") == "https://example.invalid/ada.png"


def test_string_bio_becomes_list() -> None:
    assert Character.model_validate({"name": "B", "bio": "one line"}).bio == ["one line"]


def test_yaml_and_json_in_directory(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("name: Bob\nbio: [builder]\n")
    shutil.copy(DATA / "elizaos_character.json", tmp_path / "ada.json")
    (tmp_path / "notes.txt").write_text("not a character")
    found = load_characters(tmp_path, inline=[{"name": "Cy", "topics": ["x"]}])
    assert sorted(found) == ["Ada", "Bob", "Cy"]
    assert found["Cy"].topics == ["x"]


def test_missing_directory_is_empty(tmp_path: Path) -> None:
    assert load_characters(tmp_path / "nope") == {}


def test_validation_error_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nbio: [ok]\nstyle:\n  all: 3\n")
    with pytest.raises(CharacterError) as info:
        load_character(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "style.all" in message
    assert info.value.fields == ("style.all",)
    assert info.value.source == str(bad)


def test_missing_name_names_field(tmp_path: Path) -> None:
    bad = tmp_path / "noname.json"
    bad.write_text(json.dumps({"bio": ["x"], "messageExamples": [[{"name": "a"}]]}))
    with pytest.raises(CharacterError, match=r"noname\.json[\s\S]*'name'"):
        load_character(bad)


def test_nested_field_error_has_index(tmp_path: Path) -> None:
    bad = tmp_path / "idx.json"
    bad.write_text(json.dumps({"name": "I", "messageExamples": [[{"name": "a"}, "oops"]]}))
    with pytest.raises(CharacterError) as info:
        load_character(bad)
    assert info.value.fields == ("message_examples[0][1]",)


def test_syntax_error_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{name: ")
    with pytest.raises(CharacterError, match=r"broken\.json is not valid JSON"):
        load_character(bad)
    yml = tmp_path / "broken.yaml"
    yml.write_text("name: [unclosed\n")
    with pytest.raises(CharacterError, match=r"broken\.yaml is not valid YAML"):
        load_character(yml)


def test_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(CharacterError, match="expected a mapping"):
        load_character(bad)


def test_duplicate_names_name_both_sources(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: Same\n")
    with pytest.raises(CharacterError, match=r"a\.yaml and in config agents\.characters\[0\]"):
        load_characters(tmp_path, inline=[{"name": "Same"}])


def test_inline_error_names_config_entry() -> None:
    with pytest.raises(CharacterError, match=r"config agents\.characters\[1\][\s\S]*'topics'"):
        load_characters(None, inline=[{"name": "ok"}, {"name": "bad", "topics": "x"}])


def test_shipped_default_character_matches_builtin() -> None:
    shipped = load_characters(REPO / "config" / "characters")
    # the same agent whether config/characters is there or not (prompts, replays agree)
    assert shipped["Eliza"] == default_character()


@given(
    extra=st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).filter(
            lambda k: k not in Character.model_fields
        ),
        st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)),
        max_size=5,
    )
)
def test_unknown_fields_always_kept_in_settings(extra: dict[str, object]) -> None:
    character = Character.model_validate({"name": "H", **extra})
    for key, value in extra.items():
        assert character.settings[key] == value
