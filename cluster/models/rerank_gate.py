"""Whether the profile's reranker reranks by default: a profile may say so outright (`rerank: true/false`) or
leave it to the measurement `models prepare` takes (`rerank: "if_better"`): on only if the prepared reranker's
held-out MRR@10 beats the embedder's on the same queries. Every endpoint's default, the response's
`rerank_reason` and `ragtune models list` come from this one decision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.models.cache import ModelNotPrepared, read_manifest, resolve


@dataclass(frozen=True)
class RerankDecision:
    rerank: bool
    reason: str


def decide(retrieval: Any, metrics: dict[str, Any] | None) -> RerankDecision:
    """`retrieval` is the profile's RetrievalSpec; `metrics` the reranker's manifest metrics (None: none)."""
    if isinstance(retrieval.rerank, bool):
        return RerankDecision(retrieval.rerank, retrieval.rerank_reason or "the profile's default")
    if not metrics or "reranker_mrr_at_10" not in metrics or "embedder_mrr_at_10" not in metrics:
        return RerankDecision(False, "off: the reranker has no held-out measurement (ragtune models prepare "
                                     "takes one)")
    reranker, embedder = metrics["reranker_mrr_at_10"], metrics["embedder_mrr_at_10"]
    queries = metrics.get("heldout_queries", "?")
    if reranker > embedder:
        return RerankDecision(True, f"on: at models prepare the reranker's held-out MRR@10 {reranker} beat the "
                                    f"embedder's {embedder} ({queries} queries)")
    return RerankDecision(False, f"off: at models prepare the reranker's held-out MRR@10 {reranker} did not beat "
                                 f"the embedder's {embedder} ({queries} queries)")


def reranker_metrics(settings: Any) -> dict[str, Any] | None:
    """The prepared reranker's measurement, if it is one of ours (a hub model has none)."""
    try:
        manifest = read_manifest(Path(resolve(settings.profile_spec.reranker.model, settings.models_dir)))
    except ModelNotPrepared:
        return None
    return (manifest or {}).get("metrics")


def rerank_decision(settings: Any) -> RerankDecision:
    return decide(settings.profile_spec.retrieval, reranker_metrics(settings))
