"""The two shipped evaluation sets, built from what the demo has (nothing hand-tuned to pass):

- knowledge QA: questions about the demo corpus's packages in five forms, each answered by the package's own
  one-line summary (its metadata `Summary`, which the ingested long description does not have to repeat), with
  the package's document as the expected source; plus questions the corpus cannot answer.
- extraction: the demo's held-out sentences (unseen names, cities and a quarter unseen phrasings) with the JSON
  record each should become, asked exactly as training formatted them.
"""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path
from typing import Any

from cluster.content.package_docs import DEMO_PACKAGES, package_docs
from cluster.demo import extraction

QUESTION_FORMS = (
    "What is {name}?",
    "What does the {name} package do?",
    "In one sentence, describe {name}.",
    "What is {name} used for?",
    "Which package is described as \"{summary}\"?",  # the answer is the package's name
)
UNANSWERABLE = (
    "What is the capital of Australia?",
    "Who wrote the novel Pride and Prejudice?",
    "How tall is Mount Everest in metres?",
    "What year did the Berlin Wall fall?",
    "Which planet has the most moons?",
    "What is the boiling point of ethanol?",
    "Who painted the Mona Lisa?",
    "How many players are on a cricket team?",
)


def _summary(package: str) -> str | None:
    """The package's one-line summary, if it says more than the name."""
    summary = (md.metadata(package).get("Summary") or "").strip().rstrip(".")
    words = summary.split()
    if len(words) < 4 or summary.lower().removeprefix(package.lower()).strip(" :,-") == "":
        return None
    return summary


def knowledge_qa() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for doc in package_docs(DEMO_PACKAGES):
        summary = _summary(doc.package)
        if summary is None:
            continue
        for i, form in enumerate(QUESTION_FORMS):
            reverse = "{summary}" in form
            cases.append({"id": f"{doc.package}-{i}", "question": form.format(name=doc.package, summary=summary),
                          "expected": doc.package if reverse else summary, "expected_sources": [doc.filename],
                          "tags": ["which-package" if reverse else "describe", doc.package]})
    cases += [{"id": f"unanswerable-{i}", "question": q, "unanswerable": True, "tags": ["unanswerable"]}
              for i, q in enumerate(UNANSWERABLE)]
    return cases


def extraction_set() -> list[dict[str, Any]]:
    _, held_out = extraction.split()
    return [{"id": f"extract-{i}", "kind": "json", "tags": ["extraction"],
             "messages": [{"role": "system", "content": extraction.SYSTEM_PROMPT}, *extraction.prompt(sentence)],
             "expected": json.loads(record.as_json())} for i, (sentence, record) in enumerate(held_out)]


def jsonl(cases: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(c) + "\n" for c in cases).encode()


def write_sets(out_dir: Path, cases: int | None = None) -> list[tuple[Path, int]]:
    """knowledge-qa.jsonl and extraction.jsonl in out_dir: (path, cases) each. `cases` keeps N of each set,
    spread evenly over it (a short run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, every in (("knowledge-qa", knowledge_qa()), ("extraction", extraction_set())):
        chosen = every[::max(1, len(every) // cases)][:cases] if cases else every
        path = out_dir / f"{name}.jsonl"
        path.write_bytes(jsonl(chosen))
        written.append((path, len(chosen)))
    return written
