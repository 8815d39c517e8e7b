"""Acronyms a document defines, mined at ingestion: "Pluggable Authentication Modules (PAM)" and
"PAM (Pluggable Authentication Modules)". Stored with the document (the `glossary` table), they let query
rewriting expand an acronym a user types into the words the documents use, and the reverse.

Only definitions whose words' initials spell the acronym are taken (small words like "of" may be skipped,
CamelCase words count once per capital), so "the default (PAM)" or "see below (NOTE)" are not definitions.
Every pattern here is linear: the text is scanned once for parentheses, and the words before or inside each are
checked in Python.
"""

from __future__ import annotations

import re

_PAREN = re.compile(r"\(([^()\n]{2,80})\)")
_ACRONYM = re.compile(r"[A-Za-z][A-Za-z0-9]{1,9}")
_WORDS = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
SMALL_WORDS = frozenset({"of", "and", "for", "the", "a", "an", "to", "in", "on", "with", "by", "or", "at"})
MAX_WORDS = 10


def is_acronym(token: str) -> bool:
    """PAM, TLS, IPv6, gRPC, PMCs: at least two capitals and at least half of it (TokenInfo is a name)."""
    capitals = sum(c.isupper() for c in token)
    return bool(_ACRONYM.fullmatch(token)) and capitals >= 2 and capitals * 2 >= len(token)


def _letters(acronym: str) -> list[str]:
    """The letters a definition must spell: the capitals and digits (IPv6 -> i p 6; gRPC -> r p c)."""
    return [c.lower() for c in acronym if c.isupper() or c.isdigit()]


def _initials(word: str) -> list[str]:
    """A word's initials: one, or one per CamelCase part ("JavaScript" -> j s)."""
    parts = _CAMEL.findall(word) if any(c.isupper() for c in word[1:]) else [word]
    return [p[0].lower() for p in parts if p]


def _spells(letters: list[str], words: list[str]) -> bool:
    """Whether the words' initials spell the letters in order, small words free to be skipped."""
    i = 0
    for n, word in enumerate(words):
        initials = _initials(word)
        if letters[i:i + len(initials)] == initials:
            i += len(initials)
        elif word.lower() not in SMALL_WORDS or n == 0:
            return False
    return i == len(letters)


def _definition_before(acronym: str, before: str) -> str | None:
    """The words right before "(ACR)" that define it, as written."""
    letters = _letters(acronym)
    spans = list(_WORDS.finditer(before[-200:]))
    for start in range(len(spans) - 1, max(-1, len(spans) - MAX_WORDS - 1), -1):
        words = [m.group() for m in spans[start:]]
        if _spells(letters, words):
            text = before[-200:]
            return " ".join(text[spans[start].start():spans[-1].end()].split())
    return None


def acronyms(text: str) -> list[tuple[str, str]]:
    """(acronym, expansion) pairs the text defines, each once, in order of first definition."""
    found: dict[tuple[str, str], None] = {}
    for m in _PAREN.finditer(text):
        inside = m.group(1).strip()
        if is_acronym(inside):  # "Long Form (ACR)"
            expansion = _definition_before(inside, text[max(0, m.start() - 200):m.start()])
            if expansion:
                found[(inside, expansion)] = None
            continue
        before = text[max(0, m.start() - 12):m.start()].rstrip()  # "ACR (Long Form)"
        tail = re.search(r"([A-Za-z][A-Za-z0-9]{1,9})$", before)
        words = _WORDS.findall(inside)
        if tail and is_acronym(tail.group(1)) and 1 < len(words) <= MAX_WORDS \
                and _spells(_letters(tail.group(1)), words):
            found[(tail.group(1), " ".join(inside.split()))] = None
    return list(found)
