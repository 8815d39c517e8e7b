"""Rated answers as an eval test set or a fine-tuning file: the feedback loop closes through the existing eval and
fine-tuning paths, and each export is checked by the same parser that will read it (`testset.parse`,
`datasets.parse`), so a file the export writes is one `ragtune eval` and `ragtune train` accept.

eval:  every rated answer is a case. A downvote with a correction expects the correction; an upvote expects the
       answer that was liked (a regression case); a downvote without a correction has no expected answer (its
       latency, tokens and grounding are still measured). Tags: feedback, up|down, the route.
train: upvoted answers, and downvoted ones with a correction (the correction as the completion): the conversation
       with the answer as its last assistant turn.
"""

from __future__ import annotations

import json
from typing import Literal, Sequence

from cluster.evaluation import testset
from cluster.store.feedback import Rated
from cluster.training import datasets

Format = Literal["eval", "train"]


def eval_cases(rated: Sequence[Rated]) -> list[dict]:
    cases = []
    for r in rated:
        case: dict = {"id": r.response_id, "messages": r.messages, "tags": ["feedback", r.rating, r.route]}
        expected = r.correction if r.rating == "down" else r.answer
        if expected and expected.strip():
            case["expected"] = expected
        cases.append(case)
    return cases


def training_examples(rated: Sequence[Rated]) -> list[dict]:
    examples = []
    for r in rated:
        completion = r.answer if r.rating == "up" else r.correction
        if completion and completion.strip():
            examples.append({"messages": [*r.messages, {"role": "assistant", "content": completion}]})
    return examples


def export(rated: Sequence[Rated], as_: Format) -> tuple[bytes, int]:
    """The JSONL file and how many lines it has; raises DatasetError if the parser that reads it would refuse it."""
    lines = eval_cases(rated) if as_ == "eval" else training_examples(rated)
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    if lines:
        (testset.parse if as_ == "eval" else datasets.parse)(data, name=f"feedback export ({as_})")
    return data, len(lines)
