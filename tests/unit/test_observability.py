"""The request record (metrics + one log line per request) and the merge of several nodes' metrics."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from serve.observability.prometheus import merge, metrics_endpoints
from serve.observability.request_log import RequestObserver, current


class Answer:
    """What the generation service hands the ingress: final counts only once the stream has ended."""

    def __init__(self) -> None:
        self.timings: dict[str, float | None] = {"embed_ms": 3.0, "search_ms": 2.0, "rerank_ms": 0.0}
        self.prompt_tokens, self.completion_tokens = 11, 0
        self.resumes = 0


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def observe(self, *args: Any) -> None:
        self.calls.append(args)


def make_app(recorder: Recorder) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestObserver, metrics=lambda: recorder)

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        current().route = "things"  # type: ignore[union-attr]
        return {"id": thing_id}

    @app.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        record = current()
        answer = Answer()
        record.route, record.model, record.answer = "rag", "base", answer  # type: ignore[union-attr]

        async def pieces() -> AsyncIterator[str]:
            for word in ("a", "b", "c"):
                yield word
            answer.completion_tokens = 3  # known only at the end, as in the real stream
            answer.resumes = 1  # another replica finished it
            answer.timings.update(ttft_ms=5.0, generate_ms=40.0, total_ms=50.0)

        return StreamingResponse(pieces(), media_type="text/event-stream")

    return app


def test_a_streamed_request_is_recorded_once_with_its_final_counts(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    with caplog.at_level(logging.INFO, logger="ray.serve.ragtune.requests"), \
            TestClient(make_app(recorder)) as client:
        response = client.post("/v1/chat/completions", headers={"X-Request-ID": "req-123"})
        assert response.text == "abc"
    assert len(recorder.calls) == 1
    endpoint, route, status, seconds, timings, model, ttft, tokens_in, tokens_out, resumes = recorder.calls[0]
    assert (endpoint, route, status, model, ttft, tokens_in, tokens_out, resumes) == (
        "/v1/chat/completions", "rag", 200, "base", 5.0, 11, 3, 1)
    assert timings["generate_ms"] == 40.0 and seconds > 0
    [line] = [r for r in caplog.records if r.name == "ray.serve.ragtune.requests"]
    fields = line.ragtune  # type: ignore[attr-defined]
    assert fields["pipeline"] == "rag" and fields["status_code"] == 200 and fields["completion_tokens"] == 3
    assert fields["resumes"] == 1
    assert fields["embed_ms"] == 3.0 and fields["endpoint"] == "/v1/chat/completions"


def test_errors_are_recorded_with_their_status_and_the_route_template() -> None:
    recorder = Recorder()
    with TestClient(make_app(recorder)) as client:
        assert client.get("/v1/things/7").status_code == 200
        assert client.get("/v1/things/not-a-number").status_code == 422
        assert client.get("/nowhere").status_code == 404
    assert [(c[0], c[1], c[2]) for c in recorder.calls] == [
        ("/v1/things/{thing_id}", "things", 200), ("/v1/things/{thing_id}", "-", 422), ("unmatched", "-", 404)]


NODE_A = """# HELP ragtune_requests_total HTTP requests.
# TYPE ragtune_requests_total counter
ragtune_requests_total{route="rag",replica="a"} 3.0
# HELP ray_node_cpu_count CPUs.
# TYPE ray_node_cpu_count gauge
ray_node_cpu_count{ip="10.0.0.1"} 8.0
"""
NODE_B = """# HELP ragtune_requests_total HTTP requests.
# TYPE ragtune_requests_total counter
ragtune_requests_total{route="rag",replica="b"} 5.0
"""


def test_several_nodes_merge_into_one_family_per_metric() -> None:
    merged = merge([NODE_A, NODE_B])
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    assert merged.count("# TYPE ragtune_requests_total counter") == 1
    assert sorted(s.value for s in families["ragtune_requests"].samples if s.name.endswith("_total")) == [3.0, 5.0]
    assert families["ray_node_cpu_count"].samples[0].value == 8.0
    assert merge([NODE_A]) == NODE_A


def test_only_alive_nodes_with_an_agent_are_scraped() -> None:
    nodes = [{"Alive": True, "NodeManagerAddress": "10.0.0.1", "MetricsExportPort": 8180},
             {"Alive": False, "NodeManagerAddress": "10.0.0.2", "MetricsExportPort": 8180},
             {"Alive": True, "NodeManagerAddress": "10.0.0.3", "MetricsExportPort": 0}]
    assert metrics_endpoints(nodes) == ["http://10.0.0.1:8180/metrics"]
