"""From per-case results to the report: per-route metrics, latency per stage, tokens, monthly cost, differences
between routes with bootstrap intervals, the recommendation, and the cases where routes disagree.
Written as JSON (for scripts), Markdown (for people) and a PNG (quality vs p95 latency; monthly cost)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from cluster.evaluation.cost import RouteCost, Usage, cost_table, monthly_cost
from cluster.evaluation.rules import Declared, Measured, recommend
from cluster.evaluation.runner import PRIMARY, STAGES, CaseResult
from cluster.evaluation.stats import Difference, mean, paired_difference, percentile
from cluster.evaluation.testset import Case
from cluster.profiles import CostSpec

DISAGREE = 0.5  # primary scores this far apart on one case: the routes disagree


def _primary_name(cases: Sequence[Case]) -> str:
    kinds = {("abstention" if c.unanswerable else c.kind) for c in cases}
    names = sorted({"correct_abstention" if k == "abstention" else PRIMARY[k] for k in kinds})
    return names[0] if len(names) == 1 else "primary (" + ", ".join(names) + ")"


def summarize(cases: Sequence[Case], results: Sequence[CaseResult], declared: Declared, costs: CostSpec,
              queries_per_day: float) -> dict[str, Any]:
    by_case = {c.id: c for c in cases}
    routes = list(dict.fromkeys(r.route for r in results))
    per_route: dict[str, list[CaseResult]] = {r: [x for x in results if x.route == r] for r in routes}
    primary_name = _primary_name(cases)
    summary: dict[str, Any] = {}
    for route, rs in per_route.items():
        ok = [r for r in rs if r.error is None]
        names = sorted({k for r in ok for k in r.metrics})
        latency = {stage: {"p50": percentile([r.timings[stage] for r in ok if stage in r.timings], 50),
                           "p95": percentile([r.timings[stage] for r in ok if stage in r.timings], 95)}
                   for stage in (*STAGES, "client_ms")}
        usage = Usage(prompt_tokens=mean([r.prompt_tokens for r in ok]) or 0.0,
                      completion_tokens=mean([r.completion_tokens for r in ok]) or 0.0,
                      compute_s=(mean([r.timings.get("total_ms") for r in ok]) or 0.0) / 1000,
                      reranks=any(r.reranked for r in ok))
        cost = monthly_cost(route, usage, costs, queries_per_day)
        summary[route] = {
            "cases": len(rs), "errors": len(rs) - len(ok),
            "quality": mean([r.primary(by_case[r.case_id]) for r in ok]),
            "metrics": {name: mean([r.metrics.get(name) for r in ok]) for name in names},
            "latency_ms": latency,
            "tokens": {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens},
            "monthly_cost": {"components": cost.components, "api_total": cost.api_total,
                             "self_hosted_total": cost.self_hosted_total},
        }
    scores = {route: {r.case_id: (r.primary(by_case[r.case_id]) if r.error is None else None) for r in rs}
              for route, rs in per_route.items()}
    ids = [c.id for c in cases]
    differences: dict[tuple[str, str], Difference | None] = {}
    for i, a in enumerate(routes):
        for b in routes[i + 1:]:
            differences[(a, b)] = paired_difference([scores[a].get(k) for k in ids], [scores[b].get(k) for k in ids])
    measured = [Measured(route, primary_name, summary[route]["quality"],
                         summary[route]["latency_ms"]["client_ms"]["p95"]) for route in routes]
    recommendation = recommend(measured, declared, differences)
    disagreements = []
    for case_id in ids:
        row = {route: scores[route].get(case_id) for route in routes}
        present = [v for v in row.values() if v is not None]
        if len(present) >= 2 and max(present) - min(present) >= DISAGREE:
            disagreements.append({"case": case_id, "question": by_case[case_id].question[:80], "scores": row})
    return {
        "primary_metric": primary_name, "cases": len(cases), "routes": summary,
        "differences": [{"a": a, "b": b, "b_minus_a": None if d is None else
                         {"mean": d.mean, "low": d.low, "high": d.high, "cases": d.cases,
                          "significant": d.significant}} for (a, b), d in differences.items()],
        "recommendation": {"route": recommendation.route, "reasons": recommendation.reasons},
        "declared": declared.__dict__, "queries_per_day": queries_per_day, "disagreements": disagreements,
    }


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any], png_name: str | None = None) -> str:
    routes = report["routes"]
    names = list(routes)
    metric_names = sorted({m for r in routes.values() for m in r["metrics"]})
    lines = [f"# Evaluation: {report['cases']} cases, routes {', '.join(names)}", "",
             f"**Recommendation: {report['recommendation']['route'] or 'none'}**", ""]
    lines += [f"- {reason}" for reason in report["recommendation"]["reasons"]]
    lines += ["", f"## Quality (mean per route; primary metric: {report['primary_metric']})", "",
              "| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names),
              "| **primary** | " + " | ".join(f"**{_f(routes[r]['quality'])}**" for r in names) + " |"]
    lines += [f"| {m} | " + " | ".join(_f(routes[r]["metrics"].get(m)) for r in names) + " |" for m in metric_names]
    lines += ["| errors | " + " | ".join(str(routes[r]["errors"]) for r in names) + " |", "",
              "## Latency (ms, p50 / p95) and tokens per query", "",
              "| stage | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for stage in (*STAGES, "client_ms"):
        lines.append(f"| {stage.removesuffix('_ms')} | " + " | ".join(
            f"{_f(routes[r]['latency_ms'][stage]['p50'], 0)} / {_f(routes[r]['latency_ms'][stage]['p95'], 0)}"
            for r in names) + " |")
    lines += ["| tokens in / out | " + " | ".join(
        f"{routes[r]['tokens']['prompt']:.0f} / {routes[r]['tokens']['completion']:.0f}" for r in names) + " |"]
    costs = {r: RouteCost(routes[r]["monthly_cost"]["components"], routes[r]["monthly_cost"]["api_total"],
                          routes[r]["monthly_cost"]["self_hosted_total"]) for r in names}
    lines += ["", f"## Monthly cost (USD) at {report['queries_per_day']:,.0f} queries/day", "", cost_table(costs),
              "", "## Differences (b - a of the primary metric, 95% bootstrap interval)", ""]
    for d in report["differences"]:
        x = d["b_minus_a"]
        lines.append(f"- {d['b']} - {d['a']}: " + ("too few paired cases" if x is None else
                     f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}] over {x['cases']} cases"
                     + ("" if x["significant"] else " (no significant difference)")))
    lines += ["", f"## Cases where routes disagree ({len(report['disagreements'])})", ""]
    if report["disagreements"]:
        lines += ["| case | question | " + " | ".join(names) + " |", "| --- | --- |" + " ---: |" * len(names)]
        lines += [f"| {d['case']} | {d['question'].replace('|', '/')} | "
                  + " | ".join(_f(d["scores"].get(r)) for r in names) + " |" for d in report["disagreements"]]
    if png_name:
        lines += ["", f"![quality vs p95 latency, monthly cost]({png_name})"]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Quality vs p95 latency per route, and the monthly cost per route (both totals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    routes = report["routes"]
    names = list(routes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        q, p95 = routes[name]["quality"], routes[name]["latency_ms"]["client_ms"]["p95"]
        if q is not None and p95 is not None:
            left.scatter([p95], [q], s=60)
            left.annotate(name, (p95, q), textcoords="offset points", xytext=(6, 4))
    left.set_xlabel("p95 latency per answer (ms)")
    left.set_ylabel(report["primary_metric"])
    left.set_title("quality vs latency")
    left.grid(alpha=0.3)
    x = range(len(names))
    right.bar([i - 0.2 for i in x], [routes[n]["monthly_cost"]["api_total"] for n in names], 0.4,
              label="API-equivalent inference")
    right.bar([i + 0.2 for i in x], [routes[n]["monthly_cost"]["self_hosted_total"] for n in names], 0.4,
              label="self-hosted inference")
    right.set_xticks(list(x), names)
    right.set_ylabel("USD per month")
    right.set_title(f"monthly cost at {report['queries_per_day']:,.0f} queries/day")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict[str, Any], results: Sequence[CaseResult], out_dir: Path) -> list[Path]:
    """report.json (summary + every case's result), report.md and report.png under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "report.png"]
    paths[0].write_text(json.dumps({**report, "results": [r.as_dict() for r in results]}, indent=2))
    plot(report, paths[2])
    paths[1].write_text(markdown(report, paths[2].name))
    return paths
