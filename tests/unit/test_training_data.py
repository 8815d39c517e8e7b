"""Dataset validation: every bad line is reported by number; good lines become chat prompt/completion pairs."""

from __future__ import annotations

import json

import pytest

from cluster.training import datasets
from cluster.training.datasets import DatasetError


def _jsonl(*rows: object) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


def test_instruction_and_chat_lines_become_prompt_completion_pairs() -> None:
    examples = datasets.parse(_jsonl(
        {"instruction": "Extract JSON.", "input": "Ann is 3.", "output": "{\"name\": \"Ann\"}"},
        "",
        {"instruction": "Say hi.", "output": "hi"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}]},
    ), system_prompt="You extract.")
    assert [e.line for e in examples] == [1, 3, 4]
    first = examples[0].as_record()
    assert first["prompt"] == [{"role": "system", "content": "You extract."},
                               {"role": "user", "content": "Extract JSON.\n\nAnn is 3."}]
    assert first["completion"] == [{"role": "assistant", "content": "{\"name\": \"Ann\"}"}]
    assert examples[1].prompt[-1]["content"] == "Say hi."  # no input: no blank lines appended
    assert examples[2].prompt[0] == {"role": "system", "content": "Be brief."}  # its own system prompt wins


def test_every_bad_line_is_reported_with_its_number() -> None:
    with pytest.raises(DatasetError) as caught:
        datasets.parse(_jsonl(
            {"instruction": "ok", "output": "ok"},
            "{not json",
            [1, 2],
            {"instruction": "no output"},
            {"instruction": "x", "output": 5},
            {"messages": [{"role": "user", "content": "q"}]},
            {"messages": [{"role": "assistant", "content": "a"}]},
            {"text": "wrong shape"},
            {"instruction": "x", "output": "   "},
        ))
    lines = [p.line for p in caught.value.problems]
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9]
    message = str(caught.value)
    assert "line 2: not valid JSON" in message and "line 4: missing field 'output'" in message
    assert "line 6: the last message must be a non-empty assistant turn" in message


def test_empty_and_non_utf8_files_are_refused() -> None:
    with pytest.raises(DatasetError, match="no examples"):
        datasets.parse(b"\n  \n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        datasets.parse(b"\xff\xfe{}")


class _CharTokenizer:
    """One token per character of the formatted conversation: enough to test the length check."""

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: object) -> list[int]:
        return [0] * sum(len(m["content"]) + 4 for m in conversation)


def test_examples_longer_than_max_length_are_refused_by_line() -> None:
    examples = datasets.parse(_jsonl({"instruction": "a", "output": "b"},
                                          {"instruction": "a" * 100, "output": "b"}))
    assert datasets.check_lengths(examples[:1], _CharTokenizer(), 64) == [10]
    with pytest.raises(DatasetError, match=r"line 2: 109 tokens exceeds max_length 64"):
        datasets.check_lengths(examples, _CharTokenizer(), 64)
