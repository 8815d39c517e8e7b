"""/v1/search (hybrid retrieval, reranked), /v1/embeddings (OpenAI's shape), /v1/rerank (Cohere's and Jina's)."""

from __future__ import annotations

from fastapi import APIRouter

from serve.api.dependencies import ServicesDep, observe
from serve.schemas.common import RetrievalApplied, StageTimings
from serve.schemas.retrieval import (
    Embedding, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, RerankDocument, RerankRequest, RerankResponse,
    RerankResult, SearchFiltersIn, SearchHit, SearchRequest, SearchResponse,
)
from serve.services.errors import invalid, not_found
from serve.services.knowledge import check_query

router = APIRouter()


@router.post("/v1/search", response_model=SearchResponse, tags=["search"])
async def search(body: SearchRequest, s: ServicesDep) -> SearchResponse:
    """Hybrid retrieval (HNSW vector top-k + BM25 top-k, fused by weighted RRF in SQL, at most the profile's
    chunks per document first), then cross-encoder rerank where the request or the profile says so (`retrieval`
    in the response says which, and why)."""
    observe("search")
    check_query(body.query, s.settings.search, "query")
    top_k, top_n = s.knowledge.bounds(body.top_k, body.top_n)
    rerank, reason = s.knowledge.rerank_choice(body.rerank)
    outcome = await s.knowledge.search(body.query, top_k, top_n, rerank, SearchFiltersIn.to_filters(body.filters),
                                       body.mode, s.knowledge.rewrite_choice(body.rewrite), body.history or ())
    observe("search", timings={"rewrite_ms": outcome.rewrite_ms, "embed_ms": outcome.embed_ms,
                               "search_ms": outcome.search_ms, "rerank_ms": outcome.rerank_ms})
    hits = [SearchHit(
        document_id=h.candidate.document_id, source=h.candidate.source, title=h.candidate.title,
        chunk_ordinal=h.candidate.ordinal, text=h.candidate.text, metadata=h.candidate.metadata,
        vector_score=h.candidate.vector_score, keyword_score=h.candidate.keyword_score,
        fused_score=h.candidate.fused_score, rerank_score=h.rerank_score) for h in outcome.hits]
    timings = StageTimings(rewrite_ms=outcome.rewrite_ms, embed_ms=outcome.embed_ms, search_ms=outcome.search_ms,
                           rerank_ms=outcome.rerank_ms, total_ms=outcome.total_ms)
    return SearchResponse(query=body.query, hits=hits, timings=timings,
                          retrieval=RetrievalApplied(top_k=top_k, top_n=top_n, rerank=rerank, rerank_reason=reason,
                                                     mode=body.mode, queries=list(outcome.queries),
                                                     rewrites=list(outcome.rewrites)))


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, tags=["models"])
async def embeddings(body: EmbeddingsRequest, s: ServicesDep) -> EmbeddingsResponse:
    """OpenAI-compatible embeddings from the profile's embedder."""
    spec = s.settings.profile_spec.embedder
    observe("embeddings")
    if body.model not in (None, spec.model):
        raise not_found(f"model {body.model!r} is not served; the embedder is {spec.model!r}", param="model")
    if body.dimensions not in (None, spec.dim):
        raise invalid(f"dimensions must be {spec.dim} for {spec.model}", param="dimensions")
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors, tokens = await s.knowledge.embeddings(texts, base64_floats=body.encoding_format == "base64")
    return EmbeddingsResponse(data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)], model=spec.model,
                              usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens))


@router.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True, tags=["models"])
async def rerank(body: RerankRequest, s: ServicesDep) -> RerankResponse:
    """Cohere/Jina-compatible rerank: results sorted by relevance, `index` into the request's documents."""
    spec = s.settings.profile_spec.reranker
    observe("rerank")
    if body.model not in (None, spec.model):
        raise not_found(f"model {body.model!r} is not served; the reranker is {spec.model!r}", param="model")
    texts = body.texts()
    ranked = await s.knowledge.rerank(body.query, texts, body.top_n)
    return RerankResponse(model=spec.model, results=[
        RerankResult(index=i, relevance_score=score,
                     document=RerankDocument(text=texts[i]) if body.return_documents else None)
        for i, score in ranked])
