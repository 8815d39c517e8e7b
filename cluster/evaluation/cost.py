"""Monthly cost per route, laid out like the article's cost table: components as rows, routes as columns.

Per-query items scale with the measured tokens and compute-seconds per query and the declared volume; fixed items
are the route's infrastructure (the vector database, re-embedding updates, the reranker) and, for the adapter
routes, the training runs amortised by how often the adapter is retrained. Two totals: with inference priced as
an API-equivalent (per token) and self-hosted (the compute hour times compute-seconds per query).
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.profiles import CostSpec

DAYS_PER_MONTH = 30
RETRIEVING = frozenset({"rag", "hybrid", "search"})
ADAPTER = frozenset({"finetuned", "hybrid"})
GENERATING = frozenset({"rag", "finetuned", "hybrid", "plain"})


@dataclass(frozen=True)
class Usage:
    """What one query of a route cost, as measured: mean tokens and compute-seconds per query."""

    prompt_tokens: float
    completion_tokens: float
    compute_s: float
    reranks: bool


@dataclass(frozen=True)
class RouteCost:
    components: dict[str, float]  # component -> USD per month
    api_total: float
    self_hosted_total: float


COMPONENTS = ("inference (API-equivalent)", "inference (self-hosted compute)", "vector database",
              "embedding of updates", "reranker", "training (amortised)")


def monthly_cost(route: str, usage: Usage, costs: CostSpec, queries_per_day: float) -> RouteCost:
    queries = queries_per_day * DAYS_PER_MONTH
    generating = route in GENERATING
    retrieving = route in RETRIEVING
    c = {
        "inference (API-equivalent)": queries * (usage.prompt_tokens * costs.api_input_per_mtok
                                                 + usage.completion_tokens * costs.api_output_per_mtok) / 1e6
        if generating else 0.0,
        "inference (self-hosted compute)": queries * usage.compute_s / 3600 * costs.compute_hour,
        "vector database": costs.vector_db_month if retrieving else 0.0,
        "embedding of updates": costs.embedding_updates_month if retrieving else 0.0,
        "reranker": costs.reranker_month if retrieving and usage.reranks else 0.0,
        "training (amortised)": costs.training_run * costs.retrains_per_month if route in ADAPTER else 0.0,
    }
    fixed = c["vector database"] + c["embedding of updates"] + c["reranker"] + c["training (amortised)"]
    return RouteCost(components={k: round(v, 2) for k, v in c.items()},
                     api_total=round(c["inference (API-equivalent)"] + fixed, 2),
                     self_hosted_total=round(c["inference (self-hosted compute)"] + fixed, 2))


def cost_table(costs: dict[str, RouteCost]) -> str:
    """Markdown: one row per component, one column per route, the two totals last."""
    routes = list(costs)
    lines = ["| component | " + " | ".join(routes) + " |", "| --- |" + " ---: |" * len(routes)]
    for component in COMPONENTS:
        lines.append(f"| {component} | " + " | ".join(f"{costs[r].components[component]:,.2f}" for r in routes) + " |")
    lines.append("| **total, API-equivalent inference** | "
                 + " | ".join(f"**{costs[r].api_total:,.2f}**" for r in routes) + " |")
    lines.append("| **total, self-hosted inference** | "
                 + " | ".join(f"**{costs[r].self_hosted_total:,.2f}**" for r in routes) + " |")
    return "\n".join(lines)
