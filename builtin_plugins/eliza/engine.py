"""The ELIZA algorithm (Weizenbaum 1966) over the DOCTOR script in `script`.

For each input: normalise and substitute words (`PRE`), split it into clauses at punctuation
and "but", take the first clause holding a keyword, try that clause's keywords from the highest
rank down, and for the keyword's first decomposition rule that matches, produce its next
reassembly (each rule cycles through its replies, as the original did), with the matched parts'
pronouns reflected (`POST`). ``=key`` hands over to another keyword's rules, ``NEWKEY`` to the
next keyword. A rule marked ``memory`` stores a reply for later, chosen as the original chose
among the four MEMORY transformations: by the SLIP ``HASH`` (the middle bits of the square) of
the last word of the input, Hollerith-encoded as the IBM 7094 held it (`memory_choice`). With no
keyword in the input, the oldest stored reply is used when the input counter (``LIMIT``, 1 to 4,
advanced on every input) stands at 4, else a generic reply.

A `Session` holds what the original kept between inputs (reply counters, memory, the counter),
so one conversation's memory never shows up in another.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from .script import GREETING, KEYWORDS, NONE, POST, PRE, SYNONYMS, Keyword, Rule

__all__ = ["Session", "hollerith", "memory_choice", "reflect", "slip_hash"]

_BY_WORD: dict[str, Keyword] = {k.word: k for k in KEYWORDS}
_CLAUSES = re.compile(r"[.,;:!?]+|\bbut\b")
_WORD = re.compile(r"[a-z0-9']+")


_HOLLERITH = {
    **{str(digit): digit for digit in range(10)},
    **{letter: 0o21 + i for i, letter in enumerate("ABCDEFGHI")},
    **{letter: 0o41 + i for i, letter in enumerate("JKLMNOPQR")},
    **{letter: 0o62 + i for i, letter in enumerate("STUVWXYZ")},
    " ": 0o60,
    "'": 0o14,  # the code printed as a prime (') on some of the 7094's printers
}
"""IBM 7090/7094 BCD (Hollerith) character codes of what an input word can hold."""


def hollerith(cell: str) -> int:
    """Up to six characters as one 36-bit word: left-justified, space-padded, 6 bits each."""
    word = 0
    for char in cell.upper().ljust(6)[:6]:
        word = (word << 6) | _HOLLERITH.get(char, 0o60)
    return word


def slip_hash(datum: int, bits: int) -> int:
    """SLIP's ``HASH(D, N)``: the middle `bits` bits of D squared (D without its sign bit)."""
    magnitude = datum & 0o377777777777
    return ((magnitude * magnitude) >> (35 - bits // 2)) & ((1 << bits) - 1)


def memory_choice(words: list[str], choices: int) -> int:
    """Which of the MEMORY transformations the original applied to this input: ``HASH`` of the
    input's last list cell (a word, or the last six-character piece of a longer one), 2 bits."""
    if not words:
        return 0
    last = POST.get(words[-1], words[-1])  # the original had substituted the input in place
    cell = last[(len(last) - 1) // 6 * 6 :]
    return slip_hash(hollerith(cell), 2) % choices


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
    limit: int = 1
    """The original's LIMIT: advanced 1, 2, 3, 4, 1, ... on every input."""

    @staticmethod
    def greeting() -> str:
        return GREETING

    def respond(self, text: str) -> str:
        """ELIZA's reply to `text`."""
        self.limit = self.limit % 4 + 1
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
        if self.limit == 4 and self.memory:
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
                    chosen = rule.replies[memory_choice(words, len(rule.replies))]
                    self.memory.append(_assemble(chosen, parts))
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
