"""Shapes of /v1/search, /v1/embeddings (OpenAI's) and /v1/rerank (Cohere's and Jina's)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from cluster.store.knowledge import SearchFilters, SearchMode
from serve.schemas.common import (
    MAX_EMBEDDING_INPUTS, MAX_QUERY_CHARS, MAX_RERANK_DOCUMENTS, MAX_TEXT_CHARS, RetrievalApplied, StageTimings,
    StrictRequest,
)


class SearchFiltersIn(StrictRequest):
    sources: list[str] | None = Field(None, min_length=1, description="Only chunks of documents with these sources.")
    metadata: dict[str, Any] | None = Field(None, description="Only documents whose metadata contains this object.")

    @staticmethod
    def to_filters(filters: "SearchFiltersIn | None") -> SearchFilters:
        """What the search SQL takes (no filters: every chunk)."""
        if filters is None:
            return SearchFilters()
        return SearchFilters(sources=tuple(filters.sources) if filters.sources else None,
                             metadata=filters.metadata or None)


class SearchRequest(StrictRequest):
    query: str = Field(..., max_length=MAX_QUERY_CHARS, description="Natural-language query.")
    top_k: int | None = Field(None, ge=1, description="Candidates fused from vector and keyword search. Default: "
                                                      "the profile's (the same as the RAG route's).")
    top_n: int | None = Field(None, ge=1, description="Hits returned after reranking (at most top_k). Default 5.")
    rerank: bool | None = Field(None, description="Rerank candidates with the cross-encoder (false: fused order). "
                                                  "Default: the profile's; the response says which and why.")
    rewrite: bool | None = Field(None, description="Rewrite the query before searching (the conversation, "
                                                   "decomposition, acronyms). Default: the profile's.")
    history: list[Annotated[str, Field(max_length=MAX_QUERY_CHARS)]] | None = Field(None, max_length=64, description=(
        "Earlier user turns of a conversation, oldest first: a follow-up query is searched with them, as the "
        "chat routes do."))
    mode: SearchMode = Field("hybrid", description="hybrid: vector and BM25 rankings fused; vector or keyword: one "
                                                   "side alone (what fusion is measured against).")
    filters: SearchFiltersIn | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty")
        return value


class SearchHit(BaseModel):
    document_id: uuid.UUID
    source: str
    title: str
    chunk_ordinal: int
    text: str
    metadata: dict[str, Any]
    vector_score: float | None = Field(description="Cosine similarity, when the chunk was a vector top-k hit.")
    keyword_score: float | None = Field(description="BM25, when the chunk was a keyword top-k hit.")
    fused_score: float = Field(description="Weighted reciprocal-rank fusion of the two ranks.")
    rerank_score: float | None = Field(description="Cross-encoder relevance in [0, 1]; null when rerank=false.")


class SearchResponse(BaseModel):
    object: Literal["search.result"] = "search.result"
    query: str
    hits: list[SearchHit]
    retrieval: RetrievalApplied
    timings: StageTimings


# -------------------------------------------------------------------------------- embeddings (OpenAI)

class EmbeddingsRequest(StrictRequest):
    input: str | list[str] = Field(..., description=(
        f"A string or a list of up to {MAX_EMBEDDING_INPUTS} strings of up to {MAX_TEXT_CHARS} characters each "
        "(token arrays unsupported)."))
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("input must not be an empty list")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"input has {len(texts)} strings, more than the limit of {MAX_EMBEDDING_INPUTS}")
        if any(not t.strip() for t in texts):
            raise ValueError("input strings must not be empty")
        if any(len(t) > MAX_TEXT_CHARS for t in texts):
            raise ValueError(f"input strings must be at most {MAX_TEXT_CHARS} characters")
        return value


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


# ---------------------------------------------------------------------------------- rerank (Cohere/Jina)

class RerankDocument(StrictRequest):
    text: str = Field(..., max_length=MAX_TEXT_CHARS)


class RerankRequest(StrictRequest):
    query: str = Field(..., max_length=MAX_QUERY_CHARS)
    documents: list[Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | RerankDocument] = Field(
        ..., min_length=1, max_length=MAX_RERANK_DOCUMENTS)
    top_n: int | None = Field(None, ge=1)
    model: str | None = None
    return_documents: bool = False

    @model_validator(mode="after")
    def _non_empty(self) -> "RerankRequest":
        if not self.query.strip():
            raise ValueError("query must not be empty")
        return self

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult]
