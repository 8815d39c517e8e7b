"""Operators' view of the live cluster: request ids, one JSON log line per request, GET /metrics, and the
embedder and reranker scaling out under load and back in after it, without a failed request."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cluster.ops.replicas import replica_counts
from cluster.settings import Settings
from tests.support.helpers import wait_for


def serve_log_lines(live: Settings, deployment: str) -> Iterator[dict[str, Any]]:
    for path in (live.state_dir / "ray" / "session_latest" / "logs" / "serve").glob(f"replica_*_{deployment}_*.log"):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                yield json.loads(line)


def test_request_id_is_returned_logged_and_carried_to_the_engine(live: Settings, api: httpx.Client, base: str,
                                                                 seeded: dict[str, str]) -> None:
    rid = f"obs-{uuid.uuid4().hex}"
    response = api.post("/v1/chat/completions", headers={"X-Request-ID": rid}, json={
        "model": base, "route": "rag", "messages": [{"role": "user", "content": "What is HTTPX?"}], "max_tokens": 16})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == rid
    usage = response.json()["usage"]

    def ingress_line() -> dict[str, Any] | None:
        return next((r for r in serve_log_lines(live, "Ingress") if r.get("request_id") == rid and "ragtune" in r),
                    None)

    line = wait_for(ingress_line, 30, "the ingress's request log line")["ragtune"]
    assert line["pipeline"] == "rag" and line["status_code"] == 200 and line["model"] == base
    assert line["endpoint"] == "/v1/chat/completions"
    assert line["embed_ms"] > 0 and line["search_ms"] > 0 and line["generate_ms"] > 0 and line["ttft_ms"] > 0
    assert line["completion_tokens"] == usage["completion_tokens"] and line["prompt_tokens"] == usage["prompt_tokens"]

    def engine_line() -> dict[str, Any] | None:  # the LLM replica logs under the same request id
        return next((r for r in serve_log_lines(live, "LLMServer")
                     if r.get("request_id") == rid and r.get("message") == "generated"), None)

    generated = wait_for(engine_line, 30, "the LLM replica's line for the request")["ragtune"]
    assert generated["engine_request_id"].startswith(rid)
    assert generated["completion_tokens"] == usage["completion_tokens"]

    fresh = api.get("/v1/models")
    assert fresh.headers["x-request-id"] and fresh.headers["x-request-id"] != rid


def _samples(api: httpx.Client) -> list[Any]:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def _total(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_routes_stages_tokens_adapters_and_the_queue(live: Settings, api: httpx.Client, base: str,
                                                                   adapters: list[str],
                                                                   seeded: dict[str, str]) -> None:
    before = _samples(api)
    rag = api.post("/v1/chat/completions", json={
        "model": base, "route": "rag", "messages": [{"role": "user", "content": "What is pgvector?"}],
        "max_tokens": 8})
    tuned = api.post("/v1/chat/completions", json={
        "model": adapters[0], "route": "finetuned", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
    search = api.post("/v1/search", json={"query": "vector similarity in Postgres", "rerank": True})
    assert rag.status_code == tuned.status_code == search.status_code == 200
    tuned_out = tuned.json()["usage"]["completion_tokens"]

    def counted() -> list[Any] | None:  # each replica pushes its metrics to the node's agent every 2 s
        after = _samples(api)
        grew = all(_total(after, "ray_ragtune_requests_total", route=route, status="200")
                   > _total(before, "ray_ragtune_requests_total", route=route, status="200")
                   for route in ("rag", "finetuned", "search"))
        return after if grew else None

    after = wait_for(counted, 45, "the three new requests in /metrics", every_s=1)
    for stage in ("embed", "search", "rerank"):
        assert _total(after, "ray_ragtune_stage_latency_seconds_count", route="search", stage=stage) >= 1
    assert _total(after, "ray_ragtune_stage_latency_seconds_count", route="rag", stage="generate") >= 1
    grown = (_total(after, "ray_ragtune_tokens_total", route="finetuned", model=adapters[0], direction="out")
             - _total(before, "ray_ragtune_tokens_total", route="finetuned", model=adapters[0], direction="out"))
    assert grown == tuned_out
    assert _total(after, "ray_ragtune_adapter_cache_lookups_total") >= 1
    names = {s.name for s in after}
    assert "ray_ragtune_adapter_loads_total" in names
    assert any(s.name == "ray_ragtune_fine_tuning_jobs" and s.labels.get("state") == "queued" for s in after)
    # Ray's and vLLM's own metrics are in the same scrape.
    assert any(n.startswith("ray_serve_") for n in names)
    assert any(n.startswith("ray_vllm") for n in names), sorted(n for n in names if "vllm" in n)[:5]


def test_embedder_and_reranker_scale_out_under_load_and_back_in(live: Settings) -> None:
    """The cpu-dev policy (max 2 replicas, 2 ongoing requests each, 2 s up / 20 s down delay) for real: concurrent
    embeddings and rerank calls until both run 2 replicas, then quiet until both are back to 1. No request fails."""
    app = live.app_name

    def replicas(deployment: str) -> int:
        return replica_counts(live.dashboard_url, app)[deployment].running

    wait_for(lambda: replicas("Embedder") == 1 and replicas("Reranker") == 1, 90, "one replica each at rest")
    stop = threading.Event()
    statuses: list[int] = []
    passages = [f"passage {i} about vector search and adapters" for i in range(32)]

    def client(i: int) -> None:
        with httpx.Client(base_url=live.http_url, timeout=120) as http:
            while not stop.is_set():
                if i % 2:
                    r = http.post("/v1/embeddings", json={"input": passages})
                else:
                    r = http.post("/v1/rerank", json={"query": "vector search", "documents": passages})
                statuses.append(r.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: replicas("Embedder") == 2 and replicas("Reranker") == 2, 120, "two replicas each under load")
    finally:
        stop.set()
        for t in threads:
            t.join()
    wait_for(lambda: replicas("Embedder") == 1 and replicas("Reranker") == 1, 120, "back to one replica each")
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
