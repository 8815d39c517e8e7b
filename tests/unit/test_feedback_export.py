"""Rated answers exported as an eval test set and a fine-tuning file, read back by the parsers `ragtune eval` and
`ragtune train` use."""

from __future__ import annotations

import json

import pytest

from cluster.evaluation import feedback, testset
from cluster.store.feedback import Rated
from cluster.training import datasets

ASKED = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is BM25?"}]
RATED = [
    Rated("chatcmpl-up", "rag", None, ASKED, "A ranking function. [Source 1]", "up", None),
    Rated("chatcmpl-fixed", "finetuned", "support@3", [{"role": "user", "content": "Port of the API?"}],
          "8080", "down", "8000"),
    Rated("chatcmpl-bad", "plain", None, [{"role": "user", "content": "Who wrote ragtune?"}], "Nobody.", "down", None),
]


def test_eval_export_expects_corrections_and_liked_answers_and_parses_as_a_test_set() -> None:
    data, lines = feedback.export(RATED, "eval")
    cases = {c.id: c for c in testset.parse(data)}
    assert lines == 3 and set(cases) == {"chatcmpl-up", "chatcmpl-fixed", "chatcmpl-bad"}
    assert cases["chatcmpl-fixed"].expected == "8000"  # the correction, not the downvoted answer
    assert cases["chatcmpl-up"].expected == "A ranking function. [Source 1]"
    assert cases["chatcmpl-bad"].expected is None  # measured for latency and grounding only
    assert cases["chatcmpl-up"].messages == tuple(ASKED) and "down" in cases["chatcmpl-bad"].tags


def test_train_export_keeps_liked_and_corrected_answers_only_and_parses_as_a_training_file() -> None:
    data, lines = feedback.export(RATED, "train")
    examples = datasets.parse(data)
    assert lines == len(examples) == 2
    completions = [json.loads(line)["messages"][-1]["content"] for line in data.decode().splitlines()]
    assert completions == ["A ranking function. [Source 1]", "8000"]
    assert examples[0].prompt[0] == {"role": "system", "content": "Be brief."}


def test_an_export_the_parser_would_refuse_is_an_error_not_a_file() -> None:
    broken = [Rated("chatcmpl-x", "plain", None, [{"role": "assistant", "content": "no question"}], "a", "up", None)]
    with pytest.raises(datasets.DatasetError):
        feedback.export(broken, "eval")
    assert feedback.export([], "train") == (b"", 0)
