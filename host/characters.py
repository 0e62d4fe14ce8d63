"""Load characters from YAML/JSON files and from config, with errors naming file and field.

A characters directory holds one character per file (``*.yaml``, ``*.yml``, ``*.json``);
ElizaOS character JSON files load unchanged (see `contracts.agent.Character`). Config may also
define characters inline (``agents.characters``), as mappings of the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.agent import Character, CharacterError
from contracts.config import AgentsSettings
from host.character_fields import warn_unhonoured
from host.parsing import ParseError, decode, load_json, load_yaml

__all__ = [
    "CHARACTER_SUFFIXES",
    "DEFAULT_CHARACTER",
    "character_from_mapping",
    "configured_characters",
    "default_character",
    "load_character",
    "load_characters",
]

CHARACTER_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_CHARACTER = "eliza"
"""Name of the character used when none is configured (config/characters/eliza.yaml)."""


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(root)"


def character_from_mapping(data: Any, *, source: str) -> Character:
    """Validate one character mapping; `source` (a file path or ``config``) goes into errors."""
    if not isinstance(data, Mapping):
        raise CharacterError(
            f"character in {source}: expected a mapping of fields, got {type(data).__name__}",
            source=source,
        )
    try:
        character = Character.model_validate(dict(data))
    except ValidationError as exc:
        fields: list[str] = []
        lines: list[str] = []
        for error in exc.errors():
            where = _format_loc(error["loc"])
            fields.append(where)
            lines.append(f"  field {where!r}: {error['msg']}")
        raise CharacterError(
            f"invalid character in {source}:\n" + "\n".join(lines), source=source, fields=fields
        ) from exc
    except (TypeError, RecursionError) as exc:  # a validator's bug: still the file, not a trace
        raise CharacterError(
            f"invalid character in {source}: {type(exc).__name__}: {exc}", source=source
        ) from exc
    warn_unhonoured(data, source)
    return character


def load_character(path: str | Path) -> Character:
    """Read one character file (YAML or JSON, by suffix).

    UTF-8 with or without a byte order mark and UTF-16/32 (as Windows editors save) are read;
    another encoding, a syntax error, nesting deeper than `host.parsing.MAX_DEPTH`, a YAML
    alias bomb or an integer Python cannot read is a `CharacterError` naming the file, the line
    and key when known, and the reason."""
    file = Path(path)
    kind = "JSON" if file.suffix == ".json" else "YAML"
    try:
        text = decode(file.read_bytes())
    except OSError as exc:
        raise CharacterError(
            f"cannot read character file {file}: {exc.strerror or exc}", source=str(file)
        ) from None
    except ParseError as exc:
        raise CharacterError(
            f"cannot read character file {exc.describe(str(file))}", source=str(file)
        ) from None
    try:
        data = load_json(text) if kind == "JSON" else load_yaml(text)
    except ParseError as exc:
        position = f" ({exc.position})" if exc.position else ""
        raise CharacterError(
            f"character file {file} is not valid {kind}{position}: {exc.reason}",
            source=str(file),
            fields=[exc.path] if exc.path else (),
        ) from None
    return character_from_mapping(data, source=str(file))


def load_characters(
    directory: str | Path | None = None,
    inline: Iterable[Mapping[str, Any]] = (),
    files: Iterable[str | Path] = (),
) -> dict[str, Character]:
    """Every character in `directory` (sorted by file name), `files`, then `inline` ones.

    Keyed by character name; a name defined twice raises `CharacterError` naming both sources.
    A missing directory is simply empty.
    """
    found: dict[str, tuple[Character, str]] = {}

    def add(character: Character, source: str) -> None:
        key = character.name
        if key in found:
            raise CharacterError(
                f"character name {key!r} is defined twice: in {found[key][1]} and in {source}",
                source=source,
                fields=["name"],
            )
        found[key] = (character, source)

    paths: list[Path] = []
    if directory is not None:
        root = Path(directory)
        if root.is_dir():
            paths += sorted(p for p in root.iterdir() if p.suffix in CHARACTER_SUFFIXES)
    paths += [Path(p) for p in files]
    for path in paths:
        add(load_character(path), str(path))
    for index, data in enumerate(inline):
        source = f"config agents.characters[{index}]"
        add(character_from_mapping(data, source=source), source)
    return {name: character for name, (character, _source) in found.items()}


def configured_characters(settings: AgentsSettings) -> list[Character]:
    """The characters the host's config gives (``agents.characters_dir`` and inline ones), or
    the built-in one when it gives none: the agents a host started with it runs."""
    found = load_characters(settings.characters_dir, inline=settings.characters)
    return list(found.values()) or [default_character()]


def default_character() -> Character:
    """The built-in character (the same as config/characters/eliza.yaml), used as a fallback."""
    return Character(
        name="Eliza",
        username="eliza",
        bio=[
            "A Rogerian psychotherapist, after Joseph Weizenbaum's ELIZA (1966).",
            "Listens, reflects your words back and asks you to say more.",
        ],
        system=(
            "You are Eliza, a patient and curious listener. Reflect what the user says and"
            " invite them to go on. Keep answers short."
        ),
        adjectives=["patient", "curious", "reflective"],
        topics=["feelings", "family", "dreams", "everyday life"],
        style={"all": ["short sentences", "ask open questions"], "chat": ["never judge"]},
        message_examples=[
            [
                {"name": "{{user1}}", "content": {"text": "I feel sad today."}},
                {"name": "Eliza", "content": {"text": "Do you often feel sad?"}},
            ]
        ],
    )
