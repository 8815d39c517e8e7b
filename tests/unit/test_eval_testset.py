"""Evaluation test sets: what a case may be, and every way a line is refused (with its line number)."""

from __future__ import annotations

import json

import pytest

from cluster.evaluation import testset
from cluster.training.datasets import DatasetError


def _jsonl(*rows: object) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def test_cases_take_defaults_and_keep_what_was_given() -> None:
    cases = testset.parse(_jsonl(
        {"question": "What is pgvector?", "expected": "a Postgres extension", "expected_sources": ["pgvector.md"],
         "key_terms": ["pgvector"]},
        "",
        {"id": "x1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
         "kind": "json", "expected": {"name": "A", "age": 3}, "tags": ["extraction"]},
        {"question": "Who won the 1930 world cup?", "unanswerable": True}))
    first, second, third = cases
    assert (first.id, first.kind, first.line, first.question) == ("line-1", "qa", 1, "What is pgvector?")
    assert first.expected_sources == ("pgvector.md",) and not first.unanswerable
    assert first.key_terms == ("pgvector",) and second.key_terms == ()
    assert testset.parse_items([testset.as_item(first)])[0].key_terms == ("pgvector",)  # kept with a run
    assert second.id == "x1" and second.kind == "json" and second.messages[0]["role"] == "system"
    assert third.unanswerable and third.expected is None and third.line == 4


@pytest.mark.parametrize(("row", "message"), [
    ("{not json", "not valid JSON"),
    ([1, 2], "expected a JSON object"),
    ({"question": "q", "expectd": "typo"}, "unknown field(s) ['expectd']"),
    ({"expected": "no question"}, "give exactly one of 'question'"),
    ({"question": "q", "messages": [{"role": "user", "content": "q"}]}, "give exactly one of 'question'"),
    ({"question": "  "}, "'question' must be a non-empty string"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "the last message must be a non-empty user turn"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "'messages' must be a non-empty list"),
    ({"question": "q", "kind": "json", "expected": "not an object"}, "kind 'json' needs an object 'expected'"),
    ({"question": "q", "kind": "exact", "expected": {"a": 1}}, "kind 'exact' needs a string 'expected'"),
    ({"question": "q", "kind": "essay"}, "'kind' must be one of qa, json, exact"),
    ({"question": "q", "expected": ""}, "'expected' is empty"),
    ({"question": "q", "expected_sources": "a.md"}, "'expected_sources' must be a list"),
    ({"question": "q", "unanswerable": True, "expected": "x"}, "an unanswerable case has no 'expected'"),
    ({"question": "q", "unanswerable": "yes"}, "'unanswerable' must be true or false"),
    ({"question": "q", "key_terms": ["ok", ""]}, "'key_terms' must be a list of non-empty strings"),
    ({"question": "q", "unanswerable": True, "key_terms": ["x"]}, "an unanswerable case has no 'expected'"),
])
def test_bad_lines_are_refused_with_their_line_number(row: object, message: str) -> None:
    with pytest.raises(DatasetError) as err:
        testset.parse(_jsonl({"question": "fine"}, row), name="set.jsonl")
    assert f"line 2: {message}" in str(err.value) and str(err.value).startswith("set.jsonl is invalid")
    assert len(err.value.problems) == 1  # the good first line is not blamed


def test_repeated_ids_empty_files_and_oversized_sets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match="line 3: id 'a' repeats line 1"):
        testset.parse(_jsonl({"id": "a", "question": "q"}, {"id": "b", "question": "q"}, {"id": "a", "question": "q"}))
    with pytest.raises(DatasetError, match="no cases"):
        testset.parse(b"\n\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        testset.parse(b"\xff\xfe")
    monkeypatch.setattr(testset, "MAX_CASES", 2)
    with pytest.raises(DatasetError, match="3 cases; the limit is 2"):
        testset.parse(_jsonl({"question": "a"}, {"question": "b"}, {"question": "c"}))
    monkeypatch.setattr(testset, "MAX_BYTES", 10)
    with pytest.raises(DatasetError, match="the limit is 10"):
        testset.parse(_jsonl({"question": "a long enough question"}))
