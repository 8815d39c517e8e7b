"""The report built from per-case results (no cluster): per-route means, differences, the recommendation, the
cases where routes disagree, and the three files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.evaluation import testset
from cluster.evaluation.report import markdown, summarize, write
from cluster.evaluation.rules import Declared
from cluster.evaluation.runner import CaseResult, check_routes
from cluster.profiles import PROFILES


def _cases(n: int) -> list[testset.Case]:
    rows = [json.dumps({"id": f"c{i}", "question": f"q{i}?", "expected": "the answer"}) for i in range(n)]
    return testset.parse("\n".join(rows).encode())


def _result(case: str, route: str, f1: float, total_ms: float) -> CaseResult:
    return CaseResult(case_id=case, route=route, answer="x", metrics={"token_f1": f1, "exact_match": 0.0},
                      timings={"total_ms": total_ms, "client_ms": total_ms + 5}, prompt_tokens=100,
                      completion_tokens=10)


def test_a_clearly_better_route_is_recommended_with_its_numbers(tmp_path: Path) -> None:
    cases = _cases(20)
    results = [_result(c.id, "rag", 0.2, 900) for c in cases] + [_result(c.id, "hybrid", 0.9, 1500) for c in cases]
    results[0] = CaseResult(case_id="c0", route="rag", error="the database is unavailable")
    report = summarize(cases, results, Declared(labelled_examples=1000), PROFILES["cpu-dev"].costs, 1000)
    rag, hybrid = report["routes"]["rag"], report["routes"]["hybrid"]
    assert rag["errors"] == 1 and rag["cases"] == 20
    assert rag["quality"] == pytest.approx(0.2) and hybrid["quality"] == pytest.approx(0.9)
    assert hybrid["latency_ms"]["total_ms"]["p95"] == 1500 and hybrid["tokens"] == {"prompt": 100, "completion": 10}
    assert hybrid["monthly_cost"]["components"]["training (amortised)"] > 0 == rag["monthly_cost"]["components"][
        "training (amortised)"]
    (diff,) = report["differences"]
    assert (diff["a"], diff["b"]) == ("rag", "hybrid") and diff["b_minus_a"]["significant"]
    assert diff["b_minus_a"]["cases"] == 19  # the failed case is not paired
    assert report["recommendation"]["route"] == "hybrid"
    assert len(report["disagreements"]) == 19 and report["disagreements"][0]["scores"]["rag"] == pytest.approx(0.2)
    text = markdown(report)
    assert "**Recommendation: hybrid**" in text and "| component | rag | hybrid |" in text
    paths = write(report, results, tmp_path)
    assert [p.name for p in paths] == ["report.json", "report.md", "report.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[2].stat().st_size > 10_000
    assert len(json.loads(paths[0].read_text())["results"]) == 40


def test_equal_routes_disagree_nowhere_and_the_simpler_one_wins() -> None:
    cases = _cases(20)
    results = [_result(c.id, r, 0.5 + 0.01 * (i % 3), 1000) for r in ("rag", "hybrid") for i, c in enumerate(cases)]
    report = summarize(cases, results, Declared(labelled_examples=1000), PROFILES["cpu-dev"].costs, 10)
    assert report["recommendation"]["route"] == "rag" and report["disagreements"] == []
    assert not report["differences"][0]["b_minus_a"]["significant"]


def test_unknown_routes_and_missing_adapters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown route"):
        check_routes(["rag", "fast"], None, {"base"})
    with pytest.raises(ValueError, match="need an adapter"):
        check_routes(["hybrid"], None, {"base"})
    with pytest.raises(ValueError, match="'nope' is not served"):
        check_routes(["finetuned"], "nope", {"base"})
    check_routes(["rag", "search", "finetuned"], "mine", {"base", "mine"})
