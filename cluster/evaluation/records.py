"""How a recorded eval run reads over HTTP, in OpenAI's Evals names, and back: the API writes output items and
run counts with these functions, and the CLI reads output items back into `CaseResult`s to draw its report.

An output item is one case on one route (`datasource_item_id` is the case's position in the test set): its
`results` are the metrics, `sample` the answer, usage and ragtune's timings and citation count.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from cluster.evaluation.rules import Declared
from cluster.evaluation.runner import ADAPTER_ROUTES, PASS, PRIMARY, SEARCH_K, CaseResult, RunOptions
from cluster.store.evals import EvalRun, StoredResult, Tally

DEFAULT_QUERIES_PER_DAY = 1000.0  # the monthly cost table's volume when a run does not say


def stored_options(options: RunOptions, declared: Declared, queries_per_day: float | None) -> dict[str, Any]:
    """How a run's settings are kept in `evals.options` (read back by `options_of`)."""
    return {"run": asdict(options), "declared": asdict(declared),
            "queries_per_day": DEFAULT_QUERIES_PER_DAY if queries_per_day is None else queries_per_day}


def options_of(run: EvalRun) -> tuple[RunOptions, Declared, float]:
    o = run.options
    return (RunOptions(**{**o["run"], "routes": tuple(o["run"]["routes"])}), Declared(**o["declared"]),
            float(o["queries_per_day"]))


def _model(run: EvalRun, route: str) -> str | None:
    if route == "search":
        return None
    return run.adapter if route in ADAPTER_ROUTES else run.model


def criterion(route: str, item: dict[str, Any]) -> str:
    """The testing criterion an answer passes or fails: its route's primary metric for the case's kind."""
    if route == "search":
        return f"search:recall_at_{SEARCH_K}"
    metric = "correct_abstention" if item.get("unanswerable") else PRIMARY[item.get("kind", "qa")]
    return f"{route}:{metric}"


def output_item(run: EvalRun, stored: StoredResult, item: dict[str, Any]) -> dict[str, Any]:
    r = stored.result
    usage = {"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
             "total_tokens": r["prompt_tokens"] + r["completion_tokens"], "cached_tokens": 0}
    return {
        "id": f"outputitem-{stored.id}", "object": "eval.run.output_item", "run_id": run.id, "eval_id": run.id,
        "created_at": int(stored.created_at.timestamp()), "status": stored.status,
        "datasource_item_id": stored.position, "datasource_item": item,
        "results": [{"name": name, "score": score, "passed": None if score is None else score >= PASS}
                    for name, score in sorted(r["metrics"].items())],
        "sample": {"model": _model(run, stored.route), "route": stored.route,
                   "output": [{"role": "assistant", "content": r["answer"]}], "usage": usage,
                   "error": None if r["error"] is None else {"code": "request_failed", "message": r["error"]},
                   "timings": r["timings"], "citations": r["citations"], "reranked": r["reranked"],
                   "criterion": criterion(stored.route, item), "attempt": stored.attempt},
    }


def case_result(output: dict[str, Any]) -> CaseResult:
    """The inverse of `output_item` (what the report needs of it)."""
    sample = output["sample"]
    return CaseResult(
        case_id=output["datasource_item"]["id"], route=sample["route"], answer=sample["output"][0]["content"],
        metrics={m["name"]: m["score"] for m in output["results"]}, timings=dict(sample["timings"]),
        prompt_tokens=sample["usage"]["prompt_tokens"], completion_tokens=sample["usage"]["completion_tokens"],
        citations=sample["citations"], reranked=sample["reranked"],
        error=None if sample["error"] is None else sample["error"]["message"])


def run_counts(run: EvalRun, tallies: Sequence[Tally]) -> dict[str, Any]:
    """`result_counts`, `per_model_usage` and `per_testing_criteria_results` of a run (and ragtune's `progress`)
    from its results grouped by route, case kind and verdict (`store.evals.tallies`)."""
    counts = {"pass": 0, "fail": 0, "error": 0, "unscored": 0}
    usage: dict[str, dict[str, Any]] = {}
    per_criterion: dict[str, dict[str, Any]] = {}
    for t in tallies:
        counts[t.status] += t.n
        model = _model(run, t.route)
        if model is not None:
            u = usage.setdefault(model, {"model_name": model, "invocation_count": 0, "prompt_tokens": 0,
                                         "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0})
            u["invocation_count"] += t.n
            u["prompt_tokens"] += t.prompt_tokens
            u["completion_tokens"] += t.completion_tokens
            u["total_tokens"] += t.prompt_tokens + t.completion_tokens
        name = criterion(t.route, {"kind": t.kind, "unanswerable": t.unanswerable})
        entry = per_criterion.setdefault(name, {"testing_criteria": name, "passed": 0, "failed": 0})
        if t.status in ("pass", "fail"):
            entry["passed" if t.status == "pass" else "failed"] += t.n
    recorded = sum(counts.values())
    return {
        "result_counts": {"total": recorded, "passed": counts["pass"], "failed": counts["fail"],
                          "errored": counts["error"]},
        "per_model_usage": sorted(usage.values(), key=lambda u: u["model_name"]),
        "per_testing_criteria_results": sorted(per_criterion.values(), key=lambda e: e["testing_criteria"]),
        "progress": {"completed": recorded, "total": run.total},
    }
