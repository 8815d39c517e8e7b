"""ragtune's Prometheus metrics, recorded through Ray Serve's metrics API.

Every replica on every node reports into its node's Ray metrics agent, next to Ray's and vLLM's own metrics (vLLM's
through its Ray stat logger), so one scrape sees them all; `GET /metrics` on the ingress is that scrape
(`serve.observability.prometheus`). Serve adds `application`, `deployment` and `replica` labels. The `route` label
is ours (rag, finetuned, hybrid, plain, or the API: search, embeddings, ...), set explicitly on every ingress
metric.
"""

from __future__ import annotations

from typing import Mapping

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
STAGES = ("rewrite", "embed", "search", "rerank", "generate")


class IngressMetrics:
    """Per request: count and latency by endpoint/route/status; per stage; tokens by route and model."""

    def __init__(self) -> None:
        self.requests = Counter("ragtune_requests", "HTTP requests by endpoint, route and status.",
                                tag_keys=("endpoint", "route", "status"))
        self.latency = Histogram("ragtune_request_latency_seconds", "Request latency to the last byte.",
                                 boundaries=LATENCY_S, tag_keys=("endpoint", "route"))
        self.stage = Histogram("ragtune_stage_latency_seconds", "Latency of one pipeline stage of a request.",
                               boundaries=LATENCY_S, tag_keys=("route", "stage"))
        self.ttft = Histogram("ragtune_time_to_first_token_seconds", "Request start to its first generated text.",
                              boundaries=LATENCY_S, tag_keys=("route", "model"))
        self.tokens = Counter("ragtune_tokens", "Prompt (in) and completion (out) tokens by route and model.",
                              tag_keys=("route", "model", "direction"))
        self.cache = Counter("ragtune_cache", "Semantic cache lookups (hit, miss, guard_rejected: a near question the "
                             "meaning guard refused) and stores (stored, not_stored: its knowledge changed meanwhile).",
                             tag_keys=("result",))
        self.guardrails = Counter("ragtune_guardrails", "Guardrail decisions other than pass on inputs, chunks "
                                  "and outputs, by action and what was found.", tag_keys=("where", "action", "kind"))
        self.resumes = Counter("ragtune_generation_resumes", "Answers another LLM replica went on with after the "
                               "one generating them died.", tag_keys=("route",))

    def guardrail(self, where: str, action: str, kind: str) -> None:
        self.guardrails.inc(tags={"where": where, "action": action, "kind": kind})

    def cache_result(self, result: str) -> None:
        self.cache.inc(tags={"result": result})

    def observe(self, endpoint: str, route: str, status: int, seconds: float, stages_ms: Mapping[str, float | None],
                model: str | None, ttft_ms: float | None, tokens_in: int, tokens_out: int, resumes: int = 0) -> None:
        self.requests.inc(tags={"endpoint": endpoint, "route": route, "status": str(status)})
        if resumes:
            self.resumes.inc(resumes, tags={"route": route})
        self.latency.observe(seconds, tags={"endpoint": endpoint, "route": route})
        for stage in STAGES:
            ms = stages_ms.get(f"{stage}_ms")
            if ms:  # a stage that did not run (0 or None) is not a sample
                self.stage.observe(ms / 1000, tags={"route": route, "stage": stage})
        if model:
            if ttft_ms is not None:
                self.ttft.observe(ttft_ms / 1000, tags={"route": route, "model": model})
            if tokens_in:
                self.tokens.inc(tokens_in, tags={"route": route, "model": model, "direction": "in"})
            if tokens_out:
                self.tokens.inc(tokens_out, tags={"route": route, "model": model, "direction": "out"})


class AdapterMetrics:
    """The LLM replica's adapter cache: hits, loads (misses), evictions, and how many are loaded."""

    def __init__(self) -> None:
        self.lookups = Counter("ragtune_adapter_cache_lookups", "Adapter requests: already loaded (hit) or not.",
                               tag_keys=("result",))
        self.loads = Counter("ragtune_adapter_loads", "Adapters loaded into an engine.", tag_keys=("adapter",))
        self.evictions = Counter("ragtune_adapter_evictions", "Adapters evicted from a replica's LRU.",
                                 tag_keys=("adapter",))
        self.loaded = Gauge("ragtune_adapters_loaded", "Adapters a replica holds.")


class QueueMetrics:
    """The fine-tuning queue, as the dispatcher sees it on each tick."""

    STATES = ("queued", "running", "succeeded", "failed", "cancelled")

    def __init__(self) -> None:
        self.depth = Gauge("ragtune_fine_tuning_jobs", "Fine-tuning jobs by state (queued = the queue's depth).",
                           tag_keys=("state",))

    def set(self, counts: Mapping[str, int]) -> None:
        for state in self.STATES:
            self.depth.set(counts.get(state, 0), tags={"state": state})
