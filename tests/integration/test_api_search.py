"""Search, embeddings and rerank over HTTP against the real embedder, reranker and pgvector."""

from __future__ import annotations

import base64

import httpx

from cluster.models.rerank_gate import rerank_decision
import numpy as np
import pytest

from tests.support.helpers import api_error


def test_readyz_and_healthz(api: httpx.Client) -> None:
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "embedder": "ok",
                                                                   "reranker": "ok", "llm": "ok"}
    assert api.get("/healthz").json()["status"] == "ok"
    assert api.get("/docs").status_code == 200
    assert {"/v1/search", "/v1/chat/completions", "/v1/models"} <= set(api.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize("query,package", [
    ("How do I create an HNSW index on a vector column in Postgres?", "pgvector"),
    ("parameter-efficient fine-tuning of large models with LoRA adapters", "peft"),
    ("build a command line application with type hints", "typer"),
])
def test_hybrid_retrieval_finds_the_right_document(api: httpx.Client, seeded: dict[str, str], query: str,
                                                   package: str) -> None:
    body = api.post("/v1/search", json={"query": query, "top_k": 20, "top_n": 5, "rerank": False}).json()
    hits = body["hits"]
    assert len(hits) == 5
    assert hits[0]["source"] == f"pkg/{package}.md", [(h["source"], h["fused_score"]) for h in hits]
    for hit in hits:
        assert hit["document_id"] == seeded[hit["source"]]
        assert hit["vector_score"] is not None or hit["keyword_score"] is not None
        assert hit["fused_score"] > 0 and hit["text"] and hit["rerank_score"] is None


def test_reranked_search_scores_and_times_every_stage(api: httpx.Client, seeded: dict[str, str]) -> None:
    body = api.post("/v1/search", json={"query": "How do I create an HNSW index in Postgres?", "top_k": 20,
                                        "top_n": 5, "rerank": True}).json()
    assert body["retrieval"] == {"top_k": 20, "top_n": 5, "rerank": True, "rerank_reason": "requested"}
    hits = body["hits"]
    assert len(hits) == 5 and "pkg/pgvector.md" in {h["source"] for h in hits}
    scores = [h["rerank_score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    t = body["timings"]
    assert min(t["embed_ms"], t["search_ms"], t["rerank_ms"]) > 0
    assert t["total_ms"] >= t["embed_ms"] + t["search_ms"] + t["rerank_ms"] - 1


def test_search_defaults_come_from_the_profile_and_the_response_says_why(api: httpx.Client, live,  # noqa: ANN001
                                                                       seeded: dict[str, str]) -> None:
    body = api.post("/v1/search", json={"query": "How do I create an HNSW index in Postgres?"}).json()
    spec = live.profile_spec.retrieval  # cpu-dev: the RAG route's candidates; rerank only if it measured better
    decision = rerank_decision(live)
    assert body["retrieval"] == {"top_k": spec.top_k, "top_n": live.search.default_top_n, "rerank": False,
                                 "rerank_reason": decision.reason}
    assert spec.rerank == "if_better" and "did not beat the embedder's" in decision.reason
    assert all(h["rerank_score"] is None for h in body["hits"]) and body["timings"]["rerank_ms"] == 0


def test_hit_points_to_a_real_chunk(api: httpx.Client, seeded: dict[str, str]) -> None:
    hit = api.post("/v1/search", json={"query": "pgvector HNSW index", "top_n": 1}).json()["hits"][0]
    doc = api.get(f"/v1/documents/{hit['document_id']}", params={"include_chunks": True}).json()
    assert doc["chunks"][hit["chunk_ordinal"]]["text"] == hit["text"]


def test_reranking_reorders_fused_candidates(api: httpx.Client, seeded: dict[str, str]) -> None:
    query = {"query": "retry failed HTTP requests with a timeout", "top_k": 20}
    fused = api.post("/v1/search", json=query | {"top_n": 20, "rerank": False}).json()["hits"]
    reranked = api.post("/v1/search", json=query | {"top_n": 20, "rerank": True}).json()["hits"]
    assert all(h["rerank_score"] is None for h in fused)
    assert [h["fused_score"] for h in fused] == sorted((h["fused_score"] for h in fused), reverse=True)
    key = lambda h: (h["document_id"], h["chunk_ordinal"])  # noqa: E731
    assert {key(h) for h in fused} == {key(h) for h in reranked}  # same candidates, reranked
    assert [key(h) for h in fused] != [key(h) for h in reranked]


def test_filters_by_source_and_metadata(api: httpx.Client, seeded: dict[str, str]) -> None:
    q = {"query": "install the package with pip", "top_n": 5}
    only = api.post("/v1/search", json=q | {"filters": {"sources": ["pkg/typer.md"]}}).json()["hits"]
    assert only and {h["source"] for h in only} == {"pkg/typer.md"}
    meta = api.post("/v1/search", json=q | {"filters": {"metadata": {"package": "httpx"}}}).json()["hits"]
    assert meta and {h["metadata"]["package"] for h in meta} == {"httpx"}
    none = api.post("/v1/search", json=q | {"filters": {"sources": ["no/such/source"]}}).json()["hits"]
    assert none == []


@pytest.mark.parametrize("body,param", [
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": "x" * 2001}, "query"),
    ({"query": "ok", "top_k": 0}, "top_k"),
    ({"query": "ok", "top_k": 101}, "top_k"),
    ({"query": "ok", "top_n": 51}, "top_n"),
    ({"query": "ok", "top_k": 5, "top_n": 6}, "top_n"),
    ({"query": "ok", "filters": {"sources": []}}, "filters.sources"),
    ({"top_k": 5}, "query"),
])
def test_bad_search_requests_get_400(api: httpx.Client, body: dict, param: str) -> None:
    assert api_error(api.post("/v1/search", json=body), 400)["param"] == param


def test_malformed_json_gets_400(api: httpx.Client) -> None:
    response = api.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    api_error(response, 400)


def test_embeddings_in_openai_shape(api: httpx.Client, live) -> None:  # noqa: ANN001
    body = api.post("/v1/embeddings", json={"input": ["a cat sat", "a cat sat", "stock markets fell"]}).json()
    assert body["object"] == "list" and body["model"] == live.profile_spec.embedder.model
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (3, live.profile_spec.embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert np.allclose(vectors[0], vectors[1], atol=1e-5) and vectors[0] @ vectors[2] < 0.5
    assert body["usage"]["prompt_tokens"] > 0
    b64 = api.post("/v1/embeddings", json={"input": "a cat sat", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype=np.float32)
    assert np.allclose(decoded, vectors[0], atol=1e-5)


@pytest.mark.parametrize("body,status", [
    ({"input": []}, 400), ({"input": ""}, 400), ({"input": [1, 2, 3]}, 400),
    ({"input": "x", "dimensions": 7}, 400), ({"input": "x", "model": "no-such-model"}, 404),
])
def test_bad_embedding_requests(api: httpx.Client, body: dict, status: int) -> None:
    api_error(api.post("/v1/embeddings", json=body), status)


def test_rerank_in_cohere_shape(api: httpx.Client) -> None:
    documents = ["Paris is the capital of France.", "Bananas are rich in potassium.",
                 "The Eiffel Tower stands in Paris, the French capital."]
    query = "What is the capital of France?"
    full = api.post("/v1/rerank", json={"query": query, "documents": documents}).json()
    assert full["model"] and len(full["results"]) == 3 and "document" not in full["results"][0]
    assert sorted(r["index"] for r in full["results"]) == [0, 1, 2]
    scores = [r["relevance_score"] for r in full["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
    top = api.post("/v1/rerank", json={"query": query, "documents": documents, "top_n": 2,
                                       "return_documents": True}).json()["results"]
    assert [r["index"] for r in top] == [r["index"] for r in full["results"][:2]]
    assert top[0]["document"] == {"text": documents[top[0]["index"]]}
    # A pair's score does not depend on what else is in the request (float32, batch-independent).
    alone = api.post("/v1/rerank", json={"query": query, "documents": [documents[2]]}).json()["results"][0]
    by_index = {r["index"]: r["relevance_score"] for r in full["results"]}
    assert abs(alone["relevance_score"] - by_index[2]) < 1e-4


@pytest.mark.parametrize("body,status", [
    ({"query": "q", "documents": []}, 400), ({"query": "", "documents": ["a"]}, 400),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 400), ({"documents": ["a"]}, 400),
])
def test_bad_rerank_requests(api: httpx.Client, body: dict, status: int) -> None:
    api_error(api.post("/v1/rerank", json=body), status)
