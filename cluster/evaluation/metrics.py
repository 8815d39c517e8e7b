"""Deterministic metrics of one answer: quality by the case's kind, retrieval of the expected sources, grounding
of the answer in the sources it cites, and abstention.

Every metric is a number in [0, 1] (1 is best) or None where it does not apply (no expected answer, no citation
to check): a None is left out of a route's mean, never counted as 0 or 1.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from typing import Any, Sequence

from cluster.content.overlap import MARKER, MIN_OVERLAP, content_words, overlap, sentences

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# How answers say "not in the sources"; the RAG route's own answer when nothing is relevant is the first.
ABSTENTIONS = re.compile(
    r"could not find|couldn't find|cannot find|can't find|no information|not (?:mentioned|covered|contained|"
    r"provided|in the (?:sources|knowledge base|context))|do(?:es)? not (?:know|contain|say|mention)|"
    r"don't know|unable to (?:find|answer)|there is no (?:mention|information)", re.I)


def normalize(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def _plain(answer: str) -> str:
    return MARKER.sub("", answer)


def exact_match(answer: str, expected: str) -> float:
    return float(normalize(_plain(answer)) == normalize(expected))


def token_f1(answer: str, expected: str) -> float:
    """Harmonic mean of token precision and recall of the normalized answer against the expected one."""
    got, want = normalize(_plain(answer)).split(), normalize(expected).split()
    common = sum((Counter(got) & Counter(want)).values())
    if not got or not want or common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def contains(answer: str, expected: str) -> float:
    """Whether the expected answer appears, normalized, inside the answer."""
    want = normalize(expected)
    return float(bool(want) and f" {want} " in f" {normalize(_plain(answer))} ")


def parse_json_reply(text: str) -> dict[str, Any] | None:
    """The reply as a JSON object, tolerating surrounding white space or a ```json fence; None if it is not one."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _same_type(value: Any, like: Any) -> bool:
    if isinstance(like, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(like, bool)
    if isinstance(like, (int, float)):
        return isinstance(value, (int, float))
    return like is None and value is None or type(value) is type(like)


def schema_of(expected: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema `schema_valid` checks: exactly expected's keys, each with expected's JSON type. The eval
    sends it as `response_format` when a run asks for structured output."""
    def kind(value: Any) -> str | list[str]:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, (int, float)):
            return "number"
        return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]

    return {"type": "object", "properties": {k: {"type": kind(v)} for k, v in expected.items()},
            "required": list(expected), "additionalProperties": False}


def json_scores(answer: str, expected: dict[str, Any]) -> dict[str, float]:
    """valid_json: the answer is a JSON object; schema_valid: exactly expected's keys, each of expected's type;
    exact_fields: the share of expected's fields whose values are equal."""
    got = parse_json_reply(answer)
    if got is None:
        return {"valid_json": 0.0, "schema_valid": 0.0, "exact_fields": 0.0}
    schema = set(got) == set(expected) and all(_same_type(got[k], v) for k, v in expected.items())
    fields = sum(k in got and got[k] == v for k, v in expected.items()) / len(expected) if expected else 1.0
    return {"valid_json": 1.0, "schema_valid": float(schema), "exact_fields": fields}


def quality(kind: str, answer: str, expected: str | dict[str, Any] | None) -> dict[str, float]:
    """The quality metrics of the case's kind; none when the case has no expected answer."""
    if expected is None:
        return {}
    if kind == "json":
        assert isinstance(expected, dict)
        return json_scores(answer, expected)
    assert isinstance(expected, str)
    if kind == "exact":
        return {"exact": float(answer.strip() == expected.strip())}
    return {"exact_match": exact_match(answer, expected), "token_f1": token_f1(answer, expected),
            "contains": contains(answer, expected)}


def retrieval(expected_sources: Sequence[str], retrieved: Sequence[str], k: int) -> dict[str, float]:
    """recall@k: the share of expected sources among the first k retrieved (sources or document ids); MRR: 1 / the
    rank of the first expected one (0 when none is retrieved)."""
    if not expected_sources:
        return {}
    wanted = set(expected_sources)
    found = wanted & set(retrieved[:k])
    rank = next((i for i, s in enumerate(retrieved, 1) if s in wanted), None)
    return {f"recall_at_{k}": len(found) / len(wanted), "mrr": 1 / rank if rank else 0.0}


def names_key_term(answer: str, key_terms: Sequence[str]) -> float:
    """1 when the answer names any key term (case-insensitive, whole words or identifiers), citation markers
    aside."""
    text = MARKER.sub(" ", answer).lower()
    return float(any(re.search(rf"(?<![\w-]){re.escape(t.lower())}(?![\w-])", text) for t in key_terms))


def abstained(answer: str) -> bool:
    return bool(ABSTENTIONS.search(answer))


def abstention(answer: str, unanswerable: bool) -> dict[str, float]:
    """correct_abstention on cases marked unanswerable; false_abstention on the others (1 = it wrongly declined)."""
    if unanswerable:
        return {"correct_abstention": float(abstained(answer))}
    return {"false_abstention": float(abstained(answer))}


def grounding(answer: str, citations: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """has_citation: the answer carries at least one [Source N]. citation_precision: the share of the markers whose
    source was sent and resolved (a citation with that number), whose quote is text of that chunk, and whose chunk
    supports the sentences that cite it. attributable: the share of the answer's sentences that a cited chunk
    supports (at least half their content words). An empty answer is grounded in nothing: all zero."""
    cited = {int(c["source_number"]): c for c in citations}
    by_marker: dict[int, list[str]] = {}
    claims: list[set[str]] = []
    for sentence in sentences(answer):
        for n in MARKER.findall(sentence):
            by_marker.setdefault(int(n), []).append(sentence)
        words = content_words(MARKER.sub("", sentence))
        if len(words) >= 2:
            claims.append(words)
    chunk_words = {n: content_words(c.get("chunk_text") or "") for n, c in cited.items()}

    def precise(n: int, citing: list[str]) -> bool:
        c = cited.get(n)
        if c is None:
            return False  # a marker naming a source that was not sent
        chunk = " ".join((c.get("chunk_text") or "").split())
        quote = " ".join((c.get("quote") or "").split())
        supported = all(overlap(content_words(MARKER.sub("", s)), chunk_words[n]) >= MIN_OVERLAP for s in citing)
        return bool(quote) and quote in chunk and supported

    precision = (sum(precise(n, s) for n, s in by_marker.items()) / len(by_marker)) if by_marker else None
    supported = sum(any(overlap(words, cw) >= MIN_OVERLAP for cw in chunk_words.values()) for words in claims)
    return {"has_citation": float(bool(by_marker)), "citation_precision": precision,
            "attributable": supported / len(claims) if claims else 0.0}
