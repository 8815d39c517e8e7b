"""`ragtune eval` on the live cluster: a small set through every route, every field of the report checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.helpers import ragtune

ROUTES = ("rag", "finetuned", "hybrid", "plain", "search")


def _eval(*args: str) -> subprocess.CompletedProcess:
    return ragtune("eval", *args, timeout_s=600)


def _testset(path: Path) -> Path:
    rows = [
        {"id": "pgvector", "question": "What does pgvector add to Postgres?", "expected": "vector similarity search",
         "expected_sources": ["pkg/pgvector.md"]},
        {"id": "httpx", "question": "What is httpx?", "expected": "an HTTP client for Python",
         "expected_sources": ["pkg/httpx.md"], "tags": ["definition"]},
        {"id": "typer", "messages": [{"role": "user", "content": "What is Typer used for?"}],
         "expected": "building CLI applications", "expected_sources": ["pkg/typer.md"]},
        {"id": "unanswerable", "question": "Who won the 1930 football world cup?", "unanswerable": True},
        {"id": "json", "question": "Reply with only a JSON object {\"tool\": <the name>}: the tool is pgvector.",
         "kind": "json", "expected": {"tool": "pgvector"}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_runs_every_route_and_reports_every_field(live, seeded: dict[str, str], adapters: list[str],  # noqa: ANN001
                                                       tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _eval(str(_testset(tmp_path / "set.jsonl")), "--adapter", adapters[0], "--routes", ",".join(ROUTES),
                   "--json", "--out", str(out), "--max-tokens", "32", "--volume", "500",
                   "--labelled-examples", "1000")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["cases"] == 5 and list(report["routes"]) == list(ROUTES)
    for name, route in report["routes"].items():
        assert route["cases"] == 5 and route["errors"] == 0, (name, route)
        assert set(route["latency_ms"]) == {"rewrite_ms", "embed_ms", "search_ms", "rerank_ms", "ttft_ms",
                                            "generate_ms", "total_ms", "client_ms"}
        assert route["latency_ms"]["client_ms"]["p95"] >= route["latency_ms"]["client_ms"]["p50"] > 0
        assert set(route["monthly_cost"]) == {"components", "api_total", "self_hosted_total"}
        assert route["monthly_cost"]["self_hosted_total"] > 0
    search = report["routes"]["search"]["metrics"]
    assert search["recall_at_5"] >= 2 / 3 and search["mrr"] > 0  # hybrid search finds the expected documents
    for name in ("rag", "finetuned", "hybrid", "plain"):
        route = report["routes"][name]
        assert route["quality"] is not None and 0 <= route["quality"] <= 1
        assert {"token_f1", "exact_match", "contains", "valid_json", "schema_valid", "exact_fields",
                "correct_abstention", "false_abstention"} <= set(route["metrics"])
        assert route["tokens"]["prompt"] > 0 and route["tokens"]["completion"] > 0
    for name in ("rag", "hybrid"):  # the retrieving routes are scored on grounding and sources too
        metrics = report["routes"][name]["metrics"]
        assert {"has_citation", "attributable", "source_recall"} <= set(metrics)
        assert report["routes"][name]["latency_ms"]["embed_ms"]["p50"] > 0
    assert report["routes"]["rag"]["metrics"]["has_citation"] > 0  # the tracker cites on the RAG route
    assert report["routes"]["finetuned"]["monthly_cost"]["components"]["training (amortised)"] > 0
    assert report["routes"]["plain"]["monthly_cost"]["components"]["vector database"] == 0
    assert len(report["differences"]) == len(ROUTES) * (len(ROUTES) - 1) // 2
    assert report["recommendation"]["route"] in ("rag", "finetuned", "hybrid", "plain")
    assert report["recommendation"]["reasons"]
    written = json.loads((out / "report.json").read_text())
    assert len(written["results"]) == 25 and all(r["error"] is None for r in written["results"])
    assert "**Recommendation:" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    # The run is recorded on the cluster: listed, and its report drawn again from what was stored.
    listed = ragtune("evals", "list")
    assert listed.returncode == 0 and " completed " in listed.stdout, listed.stderr
    run_id = listed.stdout.split()[0]
    again = ragtune("evals", "show", run_id, "--out", str(tmp_path / "again"))
    assert again.returncode == 0 and "completed, 25/25 answers" in again.stdout, again.stderr
    assert json.loads((tmp_path / "again" / "report.json").read_text()) == written


def test_eval_refusals_and_the_quality_gate(live, seeded: dict[str, str], tmp_path: Path) -> None:  # noqa: ANN001
    cases = _testset(tmp_path / "set.jsonl")
    missing = _eval(str(cases), "--routes", "finetuned")
    assert missing.returncode == 2 and "need an adapter" in missing.stderr
    unknown = _eval(str(cases), "--routes", "hybrid", "--adapter", "no-such-adapter")
    assert unknown.returncode == 2 and "'no-such-adapter' is not served" in unknown.stderr
    gated = _eval(str(cases), "--routes", "search", "--out", str(tmp_path / "r"), "--fail-under", "search.mrr=1.01")
    assert gated.returncode == 1 and "below the floor: search mrr" in gated.stderr
    passed = _eval(str(cases), "--routes", "search", "--out", str(tmp_path / "r2"), "--fail-under", "mrr=0.1")
    assert passed.returncode == 0, passed.stderr[-2000:]
