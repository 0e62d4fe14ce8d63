"""ElizaOS character fields: ``modelProvider``, ``settings.model`` / ``settings.models`` and
``templates.messageHandlerTemplate`` are honoured; the fields nothing uses get one WARNING each,
naming the file and the field."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from loguru import logger

from contracts.agent import Action, ActionResult, Character, CharacterError, ProviderResult, State
from contracts.memory import Content, Memory
from host.character_fields import unhonoured_fields
from host.characters import load_character
from host.templates import render_message_template

DATA = Path(__file__).parent / "data"


@pytest.fixture
def warnings() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = logger.add(sink, level="WARNING", format="{message}")
    yield sink
    logger.remove(handler)


def test_each_field_without_an_equivalent_is_warned_once_naming_file_and_field(
    warnings: io.StringIO,
) -> None:
    path = DATA / "elizaos_character.json"
    character = load_character(path)
    lines = warnings.getvalue().splitlines()
    fields = sorted(line.split("field ")[1].split(" is kept")[0] for line in lines)
    assert fields == ["'clients'", "'lore'", "'plugins'"]  # knowledge: the knowledge plugin
    assert all(line.startswith(f"character in {path}: field ") for line in lines)
    # honoured ones are not warned, and are where the runtime reads them
    assert character.model_provider == "openai"
    assert "messageHandlerTemplate" in character.templates
    assert character.plugins[0] == "@elizaos/plugin-sql"  # kept, said to be unused


def test_templates_without_an_equivalent_and_empty_plugins() -> None:
    found = unhonoured_fields(
        {
            "name": "X",
            "plugins": [],
            "modelProvider": "openai",
            "messageExamples": [],
            "templates": {"messageHandlerTemplate": "a", "shouldRespondTemplate": "b"},
            "twitterProfile": {"id": "x"},
        }
    )
    assert sorted(found) == ["templates.shouldRespondTemplate", "twitterProfile"]


def test_model_names_from_settings() -> None:
    character = Character.model_validate(
        {
            "name": "M",
            "modelProvider": "openai",
            "settings": {
                "model": "llama3.2",
                "embeddingModel": "nomic-embed-text",
                "models": {"text_small": "qwen2.5:7b"},
            },
        }
    )
    assert character.model_provider == "openai"
    assert character.model_names() == {
        "text_small": "qwen2.5:7b",
        "text_large": "llama3.2",
        "object_small": "llama3.2",
        "object_large": "llama3.2",
        "text_embedding": "nomic-embed-text",
    }
    assert Character(name="plain").model_names() == {}
    # ElizaOS model plugins' settings (secrets first, as getSetting), the provider's prefix last
    eliza_os = Character.model_validate(
        {
            "name": "E",
            "modelProvider": "ollama",
            "settings": {
                "model": "generic",
                "LARGE_MODEL": "big",
                "OLLAMA_LARGE_MODEL": "llama3.2",
                "secrets": {"SMALL_MODEL": "qwen2.5:7b", "OPENAI_EMBEDDING_MODEL": "other"},
            },
        }
    )
    assert eliza_os.model_names() == {
        "text_small": "qwen2.5:7b",
        "text_large": "llama3.2",
        "object_small": "qwen2.5:7b",
        "object_large": "llama3.2",
    }


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"model": 3}, "settings.model must be a model name"),
        ({"models": ["llama3.2"]}, "settings.models must map model type names"),
        ({"models": {"text_large": 1}}, "settings.models must map model type names"),
    ],
)
def test_bad_model_settings_name_the_file_and_the_setting(
    tmp_path: Path, settings: dict[str, object], says: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "Bad", "settings": settings}))
    with pytest.raises(CharacterError) as info:
        load_character(path)
    assert str(path) in str(info.value) and says in str(info.value)


def _message(text: str) -> Memory:
    return Memory(
        agent_id=uuid4(), entity_id=uuid4(), room_id=uuid4(), content=Content(text=text, name="Bo")
    )


async def _noop(_ctx: object) -> ActionResult:
    return ActionResult()


def test_message_template_placeholders() -> None:
    character = Character(name="Ada", bio=["a", "b"], adjectives=["dry"])
    state = State(
        text="# Facts\nsky is blue",
        values={"mood": "calm"},
        providers={"recent_messages": ProviderResult(text="# Recent\nBo: hi")},
    )
    actions = [Action(name="WAVE", description="wave back", handler=_noop)]
    template = (
        "{{agentName}} ({{adjectives}})\n{{bio}}\n{{providers}}\n{{recentMessages}}\n"
        "{{actionNames}}|{{actions}}|{{mood}}|{{unknown}}|{{ senderName }}: {{message}}"
    )
    prompt = render_message_template(template, character, state, _message("hello"), actions)
    assert prompt == (
        "Ada (dry)\na\nb\n# Facts\nsky is blue\n# Recent\nBo: hi\n"
        "WAVE|- WAVE: wave back|calm||Bo: hello"
    )
    # a template that does not place the message gets it appended, as the default prompt ends
    plain = render_message_template("Be {{agentName}}.", character, state, _message("hi"))
    assert plain == "Be Ada.\n\n# Message from Bo\nhi"
