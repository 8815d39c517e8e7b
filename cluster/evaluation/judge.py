"""An optional LLM judge: the served base model grades an answer against the expected one on a 1-5 scale,
several times at a sampling temperature, and the mean (scaled to 0-1) is the case's `judge_score`.

It is one more metric, never the primary one (routes are compared on the deterministic metrics), and it is off
where the served model is too small to grade (cpu-dev's 135M model agrees with itself, not with the answers).
`judge_parsed` is the share of the judge's replies that carried a grade: a low value means the score means little.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

RUBRIC = ("You grade answers. Compare the ANSWER with the EXPECTED answer to the QUESTION. Reply with one digit: "
          "5 = same meaning and complete, 4 = correct but incomplete, 3 = partly correct, 2 = mostly wrong, "
          "1 = wrong, off-topic or empty.")
_GRADE = re.compile(r"\b([1-5])\b")


def prompt(question: str, expected: str | dict[str, Any], answer: str) -> list[dict[str, str]]:
    shown = expected if isinstance(expected, str) else json.dumps(expected, sort_keys=True)
    return [{"role": "system", "content": RUBRIC},
            {"role": "user", "content": f"QUESTION: {question}\nEXPECTED: {shown}\nANSWER: {answer or '(empty)'}\n"
                                        "Grade (1-5):"}]


def grade(reply: str) -> int | None:
    """The first digit 1-5 standing alone in the reply; None when there is none."""
    found = _GRADE.search(reply)
    return int(found.group(1)) if found else None


def judge(ask: Callable[[list[dict[str, str]], int], str], question: str, expected: str | dict[str, Any],
          answer: str, runs: int) -> dict[str, float | None]:
    """`ask(messages, run)` returns the judge's reply for run number `run` (a different seed each)."""
    grades = [grade(ask(prompt(question, expected, answer), run)) for run in range(runs)]
    parsed = [g for g in grades if g is not None]
    return {"judge_score": (sum(parsed) / len(parsed) - 1) / 4 if parsed else None,
            "judge_parsed": len(parsed) / runs}
