"""docs/models.md's YAML blocks are what they say: the openai settings validate, the character
loads with the model names the text lists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from builtin_plugins.openai import OpenAISettings
from host.characters import character_from_mapping

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_the_yaml_blocks_of_docs_models() -> None:
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]
    characters = [b for b in blocks if "name" in b]
    configs = [b for b in blocks if "plugins" in b]
    assert len(characters) == 1 and len(configs) == 1
    ada = character_from_mapping(characters[0], source="docs/models.md")
    assert ada.model_provider == "openai"
    assert ada.model_names() == {
        "text_small": "qwen2.5:7b",
        "text_large": "llama3.2",
        "object_small": "llama3.2",
        "object_large": "llama3.2",
        "text_embedding": "nomic-embed-text",
    }
    settings = OpenAISettings.model_validate(configs[0]["plugins"]["openai"])
    assert settings.model_for("text_large") == ("llama3.2", "models.text_large")
    assert settings.model_for("object_small") == ("llama3.2", "models.text_small")
    assert settings.model_for("text_embedding") == ("nomic-embed-text", "models.text_embedding")
