"""The ELIZA algorithm (Weizenbaum 1966) over the DOCTOR script in `script`.

For each input: normalise and substitute words (`PRE`), split it into clauses at punctuation
and "but", take the first clause holding a keyword, try that clause's keywords from the highest
rank down, and for the keyword's first decomposition rule that matches, produce its next
reassembly (each rule cycles through its replies, as the original did), with the matched parts'
pronouns reflected (`POST`). ``=key`` hands over to another keyword's rules, ``NEWKEY`` to the
next keyword. A rule marked ``memory`` stores a reply for later; with no keyword in the input,
the oldest stored reply is used, else a generic one.

A `Session` holds what the original kept between inputs (reply counters and memory), so one
conversation's memory never shows up in another.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from .script import GREETING, KEYWORDS, NONE, POST, PRE, SYNONYMS, Keyword, Rule

__all__ = ["Session", "reflect"]

_BY_WORD: dict[str, Keyword] = {k.word: k for k in KEYWORDS}
_CLAUSES = re.compile(r"[.,;:!?]+|\bbut\b")
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return [PRE.get(w, w) for w in _WORD.findall(text.lower().replace("\u2019", "'"))]


def _split(words: list[str]) -> list[str]:
    """Some PRE substitutions produce two words (``you're`` -> ``you are``)."""
    return " ".join(words).split()


def reflect(words: list[str]) -> str:
    """Swap first and second person: ``my mother made me`` -> ``your mother made you``."""
    return " ".join(POST.get(w, w) for w in words)


def _match(pattern: tuple[str, ...], words: list[str]) -> list[list[str]] | None:
    """The parts matched by the pattern's ``*`` and ``@group`` elements, or None."""
    if not pattern:
        return [] if not words else None
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        for cut in range(len(words) + 1):
            tail = _match(rest, words[cut:])
            if tail is not None:
                return [words[:cut], *tail]
        return None
    if not words:
        return None
    if head.startswith("@"):
        if words[0] not in SYNONYMS[head[1:]]:
            return None
        tail = _match(rest, words[1:])
        return None if tail is None else [[words[0]], *tail]
    if words[0] != head:
        return None
    return _match(rest, words[1:])


def _assemble(template: str, parts: list[list[str]]) -> str:
    def part(m: re.Match[str]) -> str:
        index = int(m.group(1)) - 1
        return reflect(parts[index]) if 0 <= index < len(parts) else ""

    text = re.sub(r"\{(\d+)\}", part, template)
    text = re.sub(r"\s+([?.!,])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    return text[:1].upper() + text[1:]


@dataclass(slots=True)
class Session:
    """One conversation with ELIZA."""

    counters: dict[int, int] = field(default_factory=dict)
    memory: deque[str] = field(default_factory=lambda: deque(maxlen=10))
    fallback: int = 0

    @staticmethod
    def greeting() -> str:
        return GREETING

    def respond(self, text: str) -> str:
        """ELIZA's reply to `text`."""
        clauses = [_split(_words(c)) for c in _CLAUSES.split(text.lower())]
        for clause_words in clauses:
            keywords = [_BY_WORD[w] for w in clause_words if w in _BY_WORD]
            if not keywords:
                continue
            ranked = sorted(
                dict.fromkeys(keywords), key=lambda k: -k.rank
            )  # stable: leftmost first
            for keyword in ranked:
                reply = self._try(keyword, clause_words, depth=0)
                if reply is not None:
                    return reply
        if self.memory:
            return self.memory.popleft()
        reply = NONE[self.fallback % len(NONE)]
        self.fallback += 1
        return reply

    def _try(self, keyword: Keyword, words: list[str], depth: int) -> str | None:
        if depth > 5:
            return None
        for rule in keyword.rules:
            if rule.memory:
                parts = _match(rule.pattern, words)
                if parts is not None:
                    self.memory.append(_assemble(self._next(rule), parts))
        for rule in keyword.rules:
            parts = _match(rule.pattern, words)
            if parts is None or rule.memory:
                continue
            template = self._next(rule)
            if template == "NEWKEY":
                return None
            if template.startswith("="):
                target = _BY_WORD[template[1:]]
                return self._try(target, words, depth + 1)
            return _assemble(template, parts)
        return None

    def _next(self, rule: Rule) -> str:
        key = id(rule)
        count = self.counters.get(key, 0)
        self.counters[key] = count + 1
        return rule.replies[count % len(rule.replies)]
