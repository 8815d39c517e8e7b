"""Query rewriting before retrieval (deterministic: no model call), in the article's production order:

1. conversation: a follow-up ("and its default?", "what about the second one?") is searched together with the
   user's previous question (itself rewritten), so retrieval sees the referent;
2. decomposition: a question with several parts ("What does X do, and how do I configure Y?") becomes one
   query per part (a part that refers back, "how do I install it", keeps the first part with it);
   the parts' rankings are fused by reciprocal rank (KnowledgeService.search);
3. acronyms: an acronym the documents define (the glossary mined at ingestion) gets its expansion appended,
   and an expansion the query spells out gets its acronym, so either form finds chunks written in the other.

What ran is in the response (`retrieval.queries`, `retrieval.rewrites`) with `timings.rewrite_ms`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from cluster.content.glossary import is_acronym

Lookup = Callable[[Sequence[str], str], Awaitable[dict[str, str]]]

REFERRING = frozenset({"it", "its", "it's", "itself", "that", "this", "those", "these", "they", "them", "their",
                       "there", "one", "ones", "same", "former", "latter", "he", "she", "his", "her"})
FOLLOW_UP_OPENINGS = ("and ", "also ", "what about ", "how about ", "then ", "but ", "or ", "so ", "what else")
STOP_WORDS = frozenset({"a", "an", "the", "is", "are", "was", "be", "do", "does", "did", "what", "how", "which",
                        "who", "why", "when", "where", "can", "could", "should", "would", "i", "you", "me", "my",
                        "of", "to", "in", "on", "for", "with", "and", "or", "about", "tell", "more", "please",
                        "explain", "give", "show", "there", "any"})
MAX_PARTS = 4
MAX_CONTENT_OF_FOLLOW_UP = 3  # content words a message that refers back may name and still need its referent
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.'-]*")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]{1,9}")
_QUESTION_END = re.compile(r"(?<=\?)\s+(?=\S)")
_PART_JOIN = re.compile(r",?\s+(?:and|also)\s+(?=(?:what|how|which|where|when|why|who|does|do|is|are|can|should)\b)",
                        re.IGNORECASE)


@dataclass(frozen=True)
class Rewritten:
    queries: tuple[str, ...]  # what retrieval searches: one query, or one per part
    rewrites: tuple[str, ...] = ()  # which steps changed something: conversation, decomposition, acronyms


def _words(text: str) -> list[str]:
    return [w.lower().strip(".'-") for w in _WORD.findall(text)]


def is_follow_up(text: str) -> bool:
    """A message that leans on what came before: it opens like a continuation ("and its default?"), is too
    short to be searched alone ("default?"), or refers back and names little else ("How do I install it?").
    A long question with a "this" in it ("which function does this: parse a date?") stands alone."""
    lowered = " ".join(text.lower().split())
    words = _words(lowered)
    content = [w for w in words if w not in STOP_WORDS and w not in REFERRING]
    refers = bool(REFERRING & set(words))
    return lowered.startswith(FOLLOW_UP_OPENINGS) or not content or len(words) <= 2 or \
        (refers and len(content) <= MAX_CONTENT_OF_FOLLOW_UP)


def from_conversation(user_turns: Sequence[str]) -> tuple[str, bool]:
    """The retrieval query for the last user turn, and whether the earlier turns changed it."""
    query, changed = user_turns[-1], False
    if len(user_turns) > 1 and is_follow_up(query):
        previous, _ = from_conversation(user_turns[:-1])
        query, changed = f"{previous} {query}", True
    return query, changed


def decompose(query: str) -> list[str]:
    """The parts of a multi-part question (at most MAX_PARTS; one part: the query unchanged)."""
    parts = [p.strip() for sentence in _QUESTION_END.split(query.strip()) for p in _PART_JOIN.split(sentence)]
    parts = [p for p in parts if p]
    if len(parts) < 2:
        return [query]
    first = parts[0]
    joined = [first] + [f"{first} {p}" if is_follow_up(p) else p for p in parts[1:]]
    return joined[:MAX_PARTS - 1] + [" ".join(joined[MAX_PARTS - 1:])] if len(joined) > MAX_PARTS else joined


def expand_acronyms(query: str, glossary: dict[str, str]) -> str:
    """Append each defined acronym's expansion after its first use, and each spelled-out expansion's acronym."""
    out, lowered = query, query.lower()
    for acronym, expansion in sorted(glossary.items()):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(acronym)}(?![A-Za-z0-9])", out) and expansion not in lowered:
            out += f" ({expansion})"
        elif expansion in lowered and not re.search(rf"(?<![A-Za-z0-9]){re.escape(acronym)}(?![A-Za-z0-9])", out):
            out += f" ({acronym})"
    return out


def candidate_acronyms(text: str) -> list[str]:
    return sorted({t for t in _TOKEN.findall(text) if is_acronym(t)})


async def rewrite(user_turns: Sequence[str], lookup: Lookup, max_chars: int) -> Rewritten:
    """The last turn decomposed, each part that leans on the conversation searched with the previous question
    (itself rewritten), then acronyms; every query at most `max_chars` (the search limit)."""
    parts = decompose(user_turns[-1])
    previous = from_conversation(user_turns[:-1])[0] if len(user_turns) > 1 else None
    in_context = [f"{previous} {p}" if previous is not None and is_follow_up(p) else p for p in parts]
    rewrites = ["conversation"] if in_context != parts else []
    if len(parts) > 1:
        rewrites.append("decomposition")
    text = " ".join(in_context)
    glossary = await lookup(candidate_acronyms(text), text)
    parts = in_context
    expanded = [expand_acronyms(p, glossary) for p in parts]
    if expanded != parts:
        rewrites.append("acronyms")
    # the newest words are at the end (the follow-up, the expansions): a query too long loses its oldest words
    return Rewritten(tuple(q[-max_chars:] for q in expanded), tuple(rewrites))
