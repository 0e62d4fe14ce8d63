"""Which character fields agenthost does nothing with, said once per file and field.

ElizaOS character files load unchanged (`contracts.agent.Character`), but some of their fields
have no equivalent here (``clients``, ``plugins``, ``lore``, most templates...); ``knowledge``
is added to the knowledge base when the agent starts (host/character_knowledge.py).
They are kept (in ``settings`` or their field) so nothing is lost, and each gets one WARNING
naming the file and the field, instead of being ignored without a word.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loguru import logger

from contracts.agent import Character
from host.templates import HONOURED_TEMPLATES

__all__ = ["unhonoured_fields", "warn_unhonoured"]

_ALIASES = {"messageExamples", "postExamples", "modelProvider", "knowledge"}
_WHY = {
    "clients": "agenthost serves agents over its HTTP API and `agenthost chat`",
    "plugins": "agenthost's plugins are Python distributions enabled in config",
    "lore": "not put into prompts",
}
_log = logger.bind(plugin="host")


def unhonoured_fields(data: Mapping[str, Any]) -> dict[str, str]:
    """Field path -> why nothing uses it, for the fields of `data` (a character mapping)."""
    known = set(Character.model_fields) | _ALIASES
    found: dict[str, str] = {}
    for key, value in data.items():
        if key == "plugins":
            if value:
                found[key] = _WHY[key]
        elif key not in known:
            found[key] = _WHY.get(key, "agenthost has no equivalent")
    templates = data.get("templates")
    if isinstance(templates, Mapping):
        for name in templates:
            if name not in HONOURED_TEMPLATES:
                found[f"templates.{name}"] = (
                    "only templates." + ", templates.".join(sorted(HONOURED_TEMPLATES)) + " is used"
                )
    return found


def warn_unhonoured(data: Mapping[str, Any], source: str) -> list[str]:
    """One WARNING per field of `data` that nothing uses, naming `source`; the fields."""
    found = unhonoured_fields(data)
    for field, why in found.items():
        _log.warning(
            "character in {}: field {!r} is kept but not used ({}): ignored", source, field, why
        )
    return list(found)
