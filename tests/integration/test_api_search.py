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
    assert body["retrieval"] == {"top_k": 20, "top_n": 5, "rerank": True, "rerank_reason": "requested",
                                 "mode": "hybrid", "queries": ["How do I create an HNSW index in Postgres?"],
                                 "rewrites": []}
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
                                 "rerank_reason": decision.reason, "mode": "hybrid",
                                 "queries": ["How do I create an HNSW index in Postgres?"], "rewrites": []}
    assert spec.rerank == "if_better" and "did not beat the embedder's" in decision.reason
    assert all(h["rerank_score"] is None for h in body["hits"]) and body["timings"]["rerank_ms"] == 0


def test_search_modes_run_one_side_alone(api: httpx.Client, seeded: dict[str, str]) -> None:
    query = {"query": "build a command line application with type hints", "top_n": 10, "rerank": False}
    keyword = api.post("/v1/search", json=query | {"mode": "keyword"}).json()
    vector = api.post("/v1/search", json=query | {"mode": "vector"}).json()
    hybrid = api.post("/v1/search", json=query).json()
    assert keyword["retrieval"]["mode"] == "keyword" and keyword["timings"]["embed_ms"] == 0
    assert keyword["hits"] and all(h["vector_score"] is None and h["keyword_score"] > 0 for h in keyword["hits"])
    assert vector["hits"] and all(h["keyword_score"] is None and h["vector_score"] is not None for h in vector["hits"])
    both = [h for h in hybrid["hits"] if h["vector_score"] is not None and h["keyword_score"] is not None]
    assert both, "the fused list has chunks both sides found"
    assert hybrid["hits"][0]["source"] == "pkg/typer.md"
    assert api_error(api.post("/v1/search", json=query | {"mode": "bm25"}), 400)["param"] == "mode"


def test_search_rewrites_multi_part_questions_and_acronyms(api: httpx.Client, seeded: dict[str, str]) -> None:
    question = ("How do I create an HNSW index on a vector column in Postgres, and how do I build a command line "
                "application with type hints?")
    body = api.post("/v1/search", json={"query": question, "rerank": False}).json()
    assert body["retrieval"]["rewrites"] == ["decomposition"] and len(body["retrieval"]["queries"]) == 2
    top = [h["source"] for h in body["hits"]]
    assert {"pkg/pgvector.md", "pkg/typer.md"} <= set(top), top
    assert body["timings"]["rewrite_ms"] > 0
    alone = api.post("/v1/search", json={"query": question, "rerank": False, "rewrite": False}).json()
    assert alone["retrieval"]["queries"] == [question] and alone["retrieval"]["rewrites"] == []
    assert alone["timings"]["rewrite_ms"] == 0
    # PEFT is defined in the peft document ("Parameter-Efficient Fine-Tuning (PEFT)"): the query gets the words
    peft = api.post("/v1/search", json={"query": "What is PEFT good for?", "rerank": False}).json()
    assert peft["retrieval"]["rewrites"] == ["acronyms"]
    assert peft["retrieval"]["queries"] == ["What is PEFT good for? (parameter-efficient fine-tuning)"]
    assert peft["hits"][0]["source"] == "pkg/peft.md"
    # a follow-up with the conversation's earlier user turns
    follow = api.post("/v1/search", json={"query": "and how do I install it?", "rerank": False,
                                          "history": ["What is the typer package?"]}).json()
    assert follow["retrieval"]["rewrites"] == ["conversation"]
    assert follow["retrieval"]["queries"] == ["What is the typer package? and how do I install it?"]
    assert follow["hits"][0]["source"] == "pkg/typer.md"


def test_hit_points_to_a_real_chunk(api: httpx.Client, seeded: dict[str, str]) -> None:
    hit = api.post("/v1/search", json={"query": "pgvector HNSW index", "top_n": 1}).json()["hits"][0]
    doc = api.get(f"/v1/documents/{hit['document_id']}", params={"include_chunks": True}).json()
    assert doc["chunks"][hit["chunk_ordinal"]]["text"] == hit["text"]


def test_reranking_reorders_fused_candidates(api: httpx.Client, live, seeded: dict[str, str]) -> None:  # noqa: ANN001
    query = {"query": "retry failed HTTP requests with a timeout", "top_k": 20}
    fused = api.post("/v1/search", json=query | {"top_n": 20, "rerank": False}).json()["hits"]
    reranked = api.post("/v1/search", json=query | {"top_n": 20, "rerank": True}).json()["hits"]
    assert all(h["rerank_score"] is None for h in fused)
    # fused order: by fused score, except that a document's chunks beyond the profile's cap wait behind the rest
    cap, seen, over = live.profile_spec.retrieval.fusion.max_per_document, {}, []
    for h in fused:
        seen[h["source"]] = seen.get(h["source"], 0) + 1
        over.append(seen[h["source"]] > cap)
    assert over == sorted(over) and any(over), "some document had more chunks than the cap"
    for group in (False, True):
        scores = [h["fused_score"] for h, o in zip(fused, over) if o is group]
        assert scores == sorted(scores, reverse=True)
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
