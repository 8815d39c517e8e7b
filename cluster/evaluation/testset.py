"""Evaluation test sets: JSONL, one case a line, validated on load with line numbers (like training files).

    {"id"?: str, "question": str | "messages": [...], "expected"?: str | object, "expected_sources"?: [str],
     "key_terms"?: [str], "kind"?: "qa" | "json" | "exact", "tags"?: [str], "unanswerable"?: bool}

`kind` picks the quality metrics (default `qa`); `json` needs an object `expected`, `exact` a string. Cases
without `expected` still get latency, tokens and grounding. `expected_sources` name documents by `source` (or
id). `key_terms` are what a right answer must name (the API or option asked about): any one, case-insensitive.
`unanswerable: true` marks a case the knowledge base cannot answer: the right answer is an abstention.
Unknown fields are refused (a typo in `expected` must not silently turn a case into one without an answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cluster.training.datasets import DatasetError, Problem, json_lines

Kind = Literal["qa", "json", "exact"]
KINDS: tuple[str, ...] = ("qa", "json", "exact")
FIELDS = frozenset({"id", "question", "messages", "expected", "expected_sources", "key_terms", "kind", "tags",
                    "unanswerable"})
ROLES = ("system", "user", "assistant")
MAX_CASES = 2000  # a test set is for measuring, not a benchmark dump: about 100-200 cases is what it wants
MAX_BYTES = 10_000_000


@dataclass(frozen=True)
class Case:
    line: int
    id: str
    messages: tuple[dict[str, str], ...]  # ends with the user's question
    expected: str | dict[str, Any] | None
    expected_sources: tuple[str, ...]
    kind: Kind
    tags: tuple[str, ...]
    unanswerable: bool
    key_terms: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def _case(obj: dict[str, Any], line: int) -> Case | Problem:
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        return Problem(line, f"unknown field(s) {unknown}; a case has {sorted(FIELDS)}")
    if ("question" in obj) == ("messages" in obj):
        return Problem(line, "give exactly one of 'question' (a string) or 'messages' (a list)")
    if "question" in obj:
        if not isinstance(obj["question"], str) or not obj["question"].strip():
            return Problem(line, "'question' must be a non-empty string")
        messages: tuple[dict[str, str], ...] = ({"role": "user", "content": obj["question"]},)
    else:
        raw = obj["messages"]
        if not isinstance(raw, list) or not raw or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in raw):
            return Problem(line, f"'messages' must be a non-empty list of {{'role': one of {'/'.join(ROLES)}, "
                                 "'content': string}")
        if raw[-1]["role"] != "user" or not raw[-1]["content"].strip():
            return Problem(line, "the last message must be a non-empty user turn (the question)")
        messages = tuple({"role": m["role"], "content": m["content"]} for m in raw)
    kind = obj.get("kind", "qa")
    if kind not in KINDS:
        return Problem(line, f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    expected = obj.get("expected")
    if kind == "json" and expected is not None and not isinstance(expected, dict):
        return Problem(line, f"kind 'json' needs an object 'expected' (its keys and types are the schema), got "
                             f"{type(expected).__name__}")
    if kind in ("qa", "exact") and expected is not None and not isinstance(expected, str):
        return Problem(line, f"kind {kind!r} needs a string 'expected', got {type(expected).__name__}")
    if isinstance(expected, str) and not expected.strip():
        return Problem(line, "'expected' is empty (leave it out for a case without an expected answer)")
    sources, tags = obj.get("expected_sources", []), obj.get("tags", [])
    if not _strings(sources):
        return Problem(line, "'expected_sources' must be a list of non-empty strings (document sources or ids)")
    if not _strings(tags):
        return Problem(line, "'tags' must be a list of non-empty strings")
    key_terms = obj.get("key_terms", [])
    if not _strings(key_terms):
        return Problem(line, "'key_terms' must be a list of non-empty strings")
    unanswerable = obj.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        return Problem(line, "'unanswerable' must be true or false")
    if unanswerable and (expected is not None or sources or key_terms):
        return Problem(line, "an unanswerable case has no 'expected' answer, 'expected_sources' or 'key_terms'")
    case_id = obj.get("id", f"line-{line}")
    if not isinstance(case_id, str) or not case_id.strip():
        return Problem(line, "'id' must be a non-empty string")
    return Case(line=line, id=case_id, messages=messages, expected=expected, expected_sources=tuple(sources),
                kind=kind, tags=tuple(tags), unanswerable=unanswerable, key_terms=tuple(key_terms))


def parse(data: bytes, name: str = "test set") -> list[Case]:
    """Every case; raises DatasetError naming each bad line (and a set over the size caps, or with repeated ids)."""
    if len(data) > MAX_BYTES:
        raise DatasetError([Problem(None, f"{len(data)} bytes; the limit is {MAX_BYTES}")], name)
    objects, problems = json_lines(data, name)
    return _validated(objects, problems, name)


def parse_items(items: list[Any], name: str = "test set") -> list[Case]:
    """The same checks over already-decoded cases (an API body's items); "line" N is the N-th item."""
    objects: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    for n, obj in enumerate(items, start=1):
        if isinstance(obj, dict):
            objects.append((n, obj))
        else:
            problems.append(Problem(n, f"a case is a JSON object, got {type(obj).__name__}"))
    return _validated(objects, problems, name)


def as_item(case: Case) -> dict[str, Any]:
    """A case as a test-set object again (stored with a run; `parse_items` reads it back to the same case)."""
    item: dict[str, Any] = {"id": case.id, "messages": [dict(m) for m in case.messages], "kind": case.kind}
    if case.expected is not None:
        item["expected"] = case.expected
    if case.expected_sources:
        item["expected_sources"] = list(case.expected_sources)
    if case.key_terms:
        item["key_terms"] = list(case.key_terms)
    if case.tags:
        item["tags"] = list(case.tags)
    if case.unanswerable:
        item["unanswerable"] = True
    return item


def _validated(objects: list[tuple[int, dict[str, Any]]], problems: list[Problem], name: str) -> list[Case]:
    if len(objects) > MAX_CASES:  # refused before any case is validated: the cap bounds the work
        raise DatasetError([Problem(None, f"{len(objects)} cases; the limit is {MAX_CASES}")], name)
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for line, obj in objects:
        parsed = _case(obj, line)
        if isinstance(parsed, Problem):
            problems.append(parsed)
        elif parsed.id in seen:
            problems.append(Problem(line, f"id {parsed.id!r} repeats line {seen[parsed.id]}"))
        else:
            seen[parsed.id] = line
            cases.append(parsed)
    problems.sort(key=lambda p: p.line or 0)
    if not cases and not problems:
        problems.append(Problem(None, "no cases (the file is empty)"))
    if problems:
        raise DatasetError(problems, name)
    return cases
