"""Word overlap between an answer and a source: what the citation tracker attributes sentences by (serve) and what
the evaluation's grounding metrics check citations with (cluster.evaluation), defined once so both agree."""

from __future__ import annotations

import re

MARKER = re.compile(r"\[Source (\d+)(?::[^\]]*)?\]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")
MIN_OVERLAP = 0.5  # share of a sentence's content words a source must contain to support it
_WORD = re.compile(r"\w+")
_STOP = frozenset("""a an and are as at be by can for from has have how in is it its of on or that the this to
was were what when which who will with you your does do not no yes""".split())


def words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text))


def content_words(text: str) -> set[str]:
    """Lower-cased words of three letters or more that are not stop words."""
    return {w for w in (m.lower() for m in _WORD.findall(text)) if len(w) > 2 and w not in _STOP}


def overlap(sentence_words: set[str], source_words: set[str]) -> float:
    """Share of the sentence's content words that the source contains (0 when the sentence has none)."""
    return len(sentence_words & source_words) / len(sentence_words) if sentence_words else 0.0


def best_span(sentence: str, chunk: str) -> tuple[int, str]:
    """The longest run of consecutive words shared by sentence and chunk: (length in words, chunk text)."""
    s = [m.group().lower() for m in words(sentence)]
    matches = words(chunk)
    c = [m.group().lower() for m in matches]
    best, end = 0, 0
    previous = [0] * (len(c) + 1)
    for i in range(1, len(s) + 1):
        current = [0] * (len(c) + 1)
        for j in range(1, len(c) + 1):
            if s[i - 1] == c[j - 1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best:
                    best, end = current[j], j
        previous = current
    if best == 0:
        return 0, ""
    return best, chunk[matches[end - best].start():matches[end - 1].end()]


def sentences(text: str) -> list[str]:
    """The text cut after . ! ? followed by white space, and at line breaks; empty pieces dropped."""
    return [s.strip() for s in SENTENCE_END.split(text) if s and s.strip()]
