"""The shipped evaluation sets are valid test sets of the promised size, built from the installed packages' own
metadata and the demo task's held-out split."""

from __future__ import annotations

from pathlib import Path

from cluster.content.package_docs import DEMO_PACKAGES
from cluster.demo import extraction
from cluster.demo.eval_sets import knowledge_qa, write_sets
from cluster.evaluation import testset


def test_the_shipped_sets_parse_and_are_large_enough(tmp_path: Path) -> None:
    (qa_path, n_qa), (ex_path, n_ex) = write_sets(tmp_path)
    qa, ex = testset.parse(qa_path.read_bytes()), testset.parse(ex_path.read_bytes())
    assert len(qa) == n_qa >= 100 and len(ex) == n_ex == len(extraction.split()[1])
    assert {c.kind for c in ex} == {"json"} and all(set(c.expected) == set(extraction.KEYS) for c in ex)
    assert any(c.unanswerable for c in qa) and all(c.expected_sources for c in qa if not c.unanswerable)
    assert len({c.question for c in qa}) == len(qa)  # no repeated question


def test_qa_answers_come_from_package_metadata_and_name_real_documents() -> None:
    cases = [c for c in knowledge_qa() if not c.get("unanswerable")]
    packages = {c["tags"][1] for c in cases}
    assert packages <= set(DEMO_PACKAGES) and len(packages) >= 15
    reverse = [c for c in cases if c["tags"][0] == "which-package"]
    assert all(c["expected"] == c["tags"][1] for c in reverse)
    assert all(c["expected_sources"][0].startswith(c["tags"][1] + ".") for c in cases)
