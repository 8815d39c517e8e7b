"""Training data for the grounded-answering adapter (the RAG route's answer behaviour on cpu-dev): the article's
hybrid pattern applied to ragtune itself, fine-tune for behaviour, retrieve for knowledge.

SmolLM2-135M does not follow "cite the sources as [Source N]" from instructions alone. Each example here is the
RAG route's real prompt (`serve.services.prompts.with_sources`, the profile's chunking) with numbered sources,
the right chunk among distractors from other documents, and a question about a term of one of its sentences;
the answer is that sentence in the source's words followed by its marker. About one in five has no source that
answers, and the answer is the route's not-found sentence. Questions are made from the text by templates (no
model writes them): a definition ("X is ...") asks "What is X?", an identifier asks what it does, any other
sentence asks about its rarest content word.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from cluster.content.overlap import content_words, sentences

_IDENTIFIER = re.compile(r"`([A-Za-z_][\w.\-]*(?:\(\))?)`|\b([a-z]+_[a-z_0-9]+|[a-z]+\.[a-z_][\w.]*)\b")
_DEFINITION = re.compile(r"^(?:The\s+)?([A-Z][\w\-]*(?:\s[A-Z][\w\-]*){0,3}|`[^`]+`)\s+(?:is|are|provides|lets|"
                         r"allows)\s+(.{20,})$")
_PROSE = re.compile(r"^[A-Z`\"'(].*[.!]$")


@dataclass(frozen=True)
class Passage:
    title: str
    text: str
    document: str  # which document it came from: distractors are always from other documents


def _clean(sentence: str) -> str:
    return " ".join(sentence.replace("**", "").split())


_LEANS_BACK = frozenset({"it", "its", "this", "that", "these", "those", "they", "there", "we", "you", "he", "she",
                         "our", "their", "here", "also", "however"})


def _answerable(sentence: str) -> bool:
    """A sentence that says something on its own: prose of a fair length, not code or a table, not leaning on
    the one before ("It is bounded by ...")."""
    words = sentence.split()
    return 8 <= len(words) <= 45 and bool(_PROSE.match(sentence)) and words[0].lower().strip(",") not in \
        _LEANS_BACK and not any(
        s in sentence for s in ("|", "```", ">>>", "http://", "https://", "[!", "](", "::", "<", "{", "}"))


def _question(sentence: str, rarity: dict[str, float], rng: random.Random) -> str | None:
    """A question the sentence answers, naming its key term (so the right source is findable)."""
    d = _DEFINITION.match(sentence)
    if d:
        return rng.choice(["What is {0}?", "What does {0} do?", "Describe {0}."]).format(d.group(1).strip("`"))
    ident = _IDENTIFIER.search(sentence)
    if ident:
        name = ident.group(1) or ident.group(2)
        return rng.choice(["What does {0} do?", "How is {0} used?", "What is {0} for?"]).format(name)
    words = sentence.rstrip(".!").split()
    names = [w.strip(",;:()") for w in words[1:] if w[:1].isupper() and w.strip(",;:()").isalnum()
             and not w.isupper()]  # Kubernetes, PyTorch: a name is what people ask about
    if names:
        term = max(names, key=lambda w: (rarity.get(w.lower(), 0.0), w))
    else:  # the rarest pair of adjacent content words: "workload identity", "diffusion process"
        pairs = [(a.strip(",;:()"), b.strip(",;:()")) for a, b in zip(words, words[1:])]
        pairs = [(a, b) for a, b in pairs if a.isalpha() and b.isalpha() and len(a) > 3 and len(b) > 3
                 and {a.lower(), b.lower()} <= content_words(sentence)]
        if not pairs:
            return None
        a, b = max(pairs, key=lambda p: (rarity.get(p[0].lower(), 0.0) + rarity.get(p[1].lower(), 0.0), p))
        term = f"{a.lower()} {b.lower()}"
    return rng.choice(["What do the docs say about {0}?", "Tell me about {0}.", "What is said about {0}?",
                       "What should I know about {0}?"]).format(term)


def _window(text: str, words: int, rng: random.Random, around: str | None = None) -> str:
    """A run of whole sentences of about `words` words: around the answer sentence, or anywhere. Keeps examples
    short enough to train on two CPU cores (a served prompt has up to four full chunks)."""
    parts = [_clean(s) for s in sentences(text)]
    if not parts:
        return text
    start = parts.index(around) if around in parts else rng.randrange(len(parts))
    lo, hi = start, start + 1
    while sum(len(p.split()) for p in parts[lo:hi]) < words and (lo > 0 or hi < len(parts)):
        if hi < len(parts) and (lo == 0 or rng.random() < 0.5):
            hi += 1
        else:
            lo -= 1
    return " ".join(parts[lo:hi])


def passages(documents: Sequence[tuple[str, str, Sequence[str]]]) -> list[Passage]:
    """(document name, title, chunk texts) -> every chunk as a passage."""
    return [Passage(title, text, name) for name, title, chunks in documents for text in chunks]


def synthesize(pool: Sequence[Passage], n: int, seed: int, sources: int = 3, unanswerable_share: float = 0.2,
               words_per_source: int | None = None) -> list[dict[str, Any]]:
    """`n` examples in the training format ({"messages": [...]}, cluster/training/datasets.py)."""
    from serve.services import prompts

    rng = random.Random(seed)
    df = Counter(w for p in pool for w in content_words(p.text))
    rarity = {w: math.log(len(pool) / c) for w, c in df.items()}
    candidates = [(p, _clean(s)) for p in pool for s in sentences(p.text) if _answerable(_clean(s))]
    rng.shuffle(candidates)
    out: list[dict[str, Any]] = []
    for passage, sentence in candidates:
        if len(out) >= n:
            break
        question = _question(sentence, rarity, rng)
        if question is None:
            continue
        others = [p for p in rng.sample(list(pool), min(len(pool), sources * 4)) if p.document != passage.document]
        if len(others) < sources:
            continue
        unanswerable = rng.random() < unanswerable_share
        if unanswerable:
            key = content_words(question)
            chosen = [p for p in others if not key & content_words(p.text)][:sources]
            if len(chosen) < sources:
                continue
            answer = prompts.NOT_FOUND
        else:
            chosen = others[:sources - 1]
            position = rng.randrange(sources)
            chosen.insert(position, passage)
            answer = f"{sentence} [Source {position + 1}]"
        texts = [p.text if words_per_source is None else _window(p.text, words_per_source, rng,
                                                                   sentence if p is passage else None)
                 for p in chosen]
        blocks = [prompts.source_block(i, p.title, t) for i, (p, t) in enumerate(zip(chosen, texts), start=1)]
        messages = prompts.with_sources([{"role": "user", "content": question}], blocks, prompts.RAG_SYSTEM)
        out.append({"messages": [*messages, {"role": "assistant", "content": answer}]})
    return out
