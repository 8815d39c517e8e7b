"""The statistics, the cost model and the recommendation rules, fed measurements that must lead to different
routes (nothing here depends on the shipped test sets)."""

from __future__ import annotations

import pytest

from cluster.evaluation.cost import Usage, cost_table, monthly_cost
from cluster.evaluation.rules import Declared, Measured, recommend
from cluster.evaluation.stats import Difference, mean, paired_difference, percentile
from cluster.profiles import CostSpec


def test_means_skip_what_does_not_apply_and_percentiles_interpolate() -> None:
    assert mean([1.0, None, 0.0]) == 0.5 and mean([None]) is None
    assert percentile([10, 20, 30, 40], 50) == 25 and percentile([5], 95) == 5 and percentile([], 50) is None
    assert percentile(list(range(101)), 95) == pytest.approx(95)


def test_a_consistent_difference_is_significant_and_noise_is_not() -> None:
    better = paired_difference([0.2] * 30, [0.8] * 30)
    assert better is not None and better.significant and better.mean == pytest.approx(0.6)
    noise = paired_difference([0, 1] * 15, [1, 0] * 15)
    assert noise is not None and not noise.significant and noise.low < 0 < noise.high
    assert paired_difference([1.0], [0.0]) is None  # one pair: no interval
    assert paired_difference([1.0, None, 0.5], [0.0, 1.0, None]) is None  # one usable pair
    assert paired_difference([0, 1] * 15, [1, 0] * 15) == noise  # seeded: the same numbers, the same interval


def _m(route: str, quality: float | None, p95: float = 1000.0) -> Measured:
    return Measured(route=route, metric="token_f1", quality=quality, p95_ms=p95)


SIG = Difference(mean=0.3, low=0.1, high=0.5, cases=40)
NONE = Difference(mean=0.02, low=-0.05, high=0.09, cases=40)
ENOUGH = Declared(labelled_examples=1000)


def test_a_significantly_better_adapter_wins_a_format_task() -> None:
    rec = recommend([_m("rag", 0.3), _m("finetuned", 0.9)], ENOUGH, {("rag", "finetuned"): SIG})
    assert rec.route == "finetuned" and any("significant" in r and "+0.300" in r for r in rec.reasons)


def test_no_significant_difference_picks_the_simpler_route() -> None:
    rec = recommend([_m("rag", 0.60), _m("hybrid", 0.62)], ENOUGH, {("rag", "hybrid"): NONE})
    assert rec.route == "rag" and any("no significant difference" in r for r in rec.reasons)


def test_both_significantly_better_than_either_alone_is_hybrid() -> None:
    diffs = {("rag", "hybrid"): SIG, ("finetuned", "hybrid"): SIG}
    rec = recommend([_m("rag", 0.4), _m("finetuned", 0.5), _m("hybrid", 0.8)], ENOUGH, diffs)
    assert rec.route == "hybrid"


def test_fast_changing_knowledge_or_citations_keep_a_retrieving_route() -> None:
    measured = [_m("rag", 0.3), _m("finetuned", 0.9)]
    weekly = recommend(measured, Declared(knowledge_changes="weekly", labelled_examples=1000), {})
    assert weekly.route == "rag" and any("changes weekly" in r for r in weekly.reasons)
    cited = recommend(measured, Declared(citations_required=True, labelled_examples=1000), {})
    assert cited.route == "rag" and any("citations are required" in r for r in cited.reasons)


def test_few_labelled_examples_or_no_training_pipeline_mean_rag_first() -> None:
    measured = [_m("rag", 0.3), _m("finetuned", 0.35)]
    few = recommend(measured, Declared(labelled_examples=120), {("rag", "finetuned"): NONE})
    assert few.route == "rag" and any("120 labelled examples" in r and "RAG first" in r for r in few.reasons)
    unmeasured = recommend(measured, Declared(labelled_examples=120), {})
    assert unmeasured.route == "rag"
    nobody = recommend([_m("rag", 0.3), _m("finetuned", 0.9)],
                       Declared(labelled_examples=5000, can_maintain_training=False), {("rag", "finetuned"): SIG})
    assert nobody.route == "rag" and any("maintain a training pipeline" in r for r in nobody.reasons)


def test_an_adapter_measured_clearly_better_stays_despite_few_examples() -> None:
    rec = recommend([_m("rag", 0.3), _m("finetuned", 0.9)], Declared(labelled_examples=160),
                    {("rag", "finetuned"): SIG})
    assert rec.route == "finetuned" and any("keeping finetuned although 160" in r for r in rec.reasons)


def test_a_route_that_misses_the_latency_budget_is_not_recommended() -> None:
    measured = [_m("rag", 0.4, p95=900), _m("hybrid", 0.8, p95=2400)]
    rec = recommend(measured, Declared(latency_budget_ms=2000, labelled_examples=1000), {("rag", "hybrid"): SIG})
    assert rec.route == "rag" and any("p95 2400 ms exceeds the 2000 ms budget" in r for r in rec.reasons)
    all_slow = recommend(measured, Declared(latency_budget_ms=500), {})
    assert all_slow.route == "rag" and "fastest" in all_slow.reasons[-1]


def test_search_alone_recommends_nothing() -> None:
    assert recommend([Measured("search", "mrr", 0.5, 50)], Declared(), {}).route is None


COSTS = CostSpec(api_input_per_mtok=1.0, api_output_per_mtok=2.0, compute_hour=3.6, vector_db_month=70,
                 embedding_updates_month=10, reranker_month=150, training_run=5, retrains_per_month=2)


def test_costs_scale_with_volume_and_each_route_pays_for_its_own_infrastructure() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=100, compute_s=0.5, reranks=True)
    rag = monthly_cost("rag", usage, COSTS, queries_per_day=1000)
    # 30,000 queries x (1000 x $1 + 100 x $2) / 1M = $36; 30,000 x 0.5 s x $3.6/h = $15
    assert rag.components["inference (API-equivalent)"] == 36.0
    assert rag.components["inference (self-hosted compute)"] == 15.0
    assert rag.api_total == 36 + 70 + 10 + 150 and rag.components["training (amortised)"] == 0
    tuned = monthly_cost("finetuned", Usage(200, 100, 0.2, reranks=False), COSTS, queries_per_day=1000)
    assert tuned.components["vector database"] == 0 and tuned.components["training (amortised)"] == 10
    hybrid = monthly_cost("hybrid", usage, COSTS, queries_per_day=1000)
    assert hybrid.api_total == rag.api_total + 10
    assert monthly_cost("rag", usage, COSTS, queries_per_day=2000).components["inference (API-equivalent)"] == 72
    table = cost_table({"rag": rag, "finetuned": tuned})
    assert table.splitlines()[0] == "| component | rag | finetuned |" and "| vector database | 70.00 | 0.00 |" in table
