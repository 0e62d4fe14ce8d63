"""Reading a model's reply: the action directives it holds, and what of it may stream yet.

A reply asks for actions on a line ``ACTIONS: NAME, OTHER`` or with bracketed ``[NAME]``
tokens (`parse_actions`); a streamed reply holds back what may still become one
(`streamable`). An incoming message runs the actions whose keywords it contains (`mentions`).
"""

from __future__ import annotations

import re

from contracts.agent import Action

__all__ = ["mentions", "parse_actions", "streamable"]

_ACTIONS_LINE = re.compile(r"^\s*actions?\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_BRACKETED = re.compile(r"\[([A-Z][A-Z0-9_]{1,63})\]")


def parse_actions(text: str) -> tuple[str, list[str]]:
    """Split a model reply into (text without action directives, action names asked for).

    Recognised directives: a line ``ACTIONS: NAME, OTHER`` and bracketed ``[NAME]`` tokens.
    """
    names: list[str] = []
    for match in _ACTIONS_LINE.finditer(text):
        names += [n.strip().upper() for n in re.split(r"[,\s]+", match.group(1)) if n.strip()]
    stripped = _ACTIONS_LINE.sub("", text)
    names += [m.upper() for m in _BRACKETED.findall(stripped)]
    stripped = _BRACKETED.sub("", stripped)
    seen: dict[str, None] = dict.fromkeys(n for n in names if n not in ("NONE", ""))
    return re.sub(r"[ \t]+\n", "\n", stripped).strip(), list(seen)


_DIRECTIVE_AHEAD = re.compile(
    r"^\s*(?:a(?:c(?:t(?:i(?:o(?:n(?:s)?)?)?)?)?)?)?\s*\Z", re.IGNORECASE | re.MULTILINE
)
"""A last line that may still grow into an ``ACTIONS:`` line."""
_BRACKET_AHEAD = re.compile(r"\[(?:[A-Z][A-Z0-9_]{0,63})?\Z")
"""A trailing ``[`` that may still close into a ``[NAME]`` token."""


def streamable(raw: str) -> str:
    """The part of the reply text already final while the model's output so far is `raw`.

    `parse_actions` of `raw` cut before the first action directive and before a tail that may
    still become one (a last line ``ACTI``, a trailing ``[NAME``), so that a streamed reply
    never shows a directive the saved reply drops; what is held back comes with the end.
    """
    cut = len(raw)
    for pattern in (_ACTIONS_LINE, _DIRECTIVE_AHEAD, _BRACKET_AHEAD):
        match = pattern.search(raw)
        if match is not None:
            cut = min(cut, match.start())
    return parse_actions(raw[:cut])[0]


def mentions(text: str, action: Action) -> bool:
    """Whether `text` contains one of `action`'s keywords (whole words, any case)."""
    pattern = _KEYWORDS.get(action.keywords)
    if pattern is None:
        words = "|".join(re.escape(k.strip()) for k in action.keywords if k.strip())
        pattern = _KEYWORDS[action.keywords] = re.compile(
            rf"(?<!\w)(?:{words})(?!\w)" if words else r"(?!)", re.IGNORECASE
        )
    return pattern.search(text) is not None


_KEYWORDS: dict[tuple[str, ...], re.Pattern[str]] = {}
"""Compiled keyword patterns by keyword tuple (a plugin's actions are few and long-lived)."""
