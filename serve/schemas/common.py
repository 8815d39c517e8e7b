"""Public request/response shapes. OpenAI- and Cohere-compatible shapes keep those APIs' field names exactly."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from cluster.content.parsing import CONTENT_TYPES


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------------ errors

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, used by every endpoint."""

    error: ErrorDetail


# --------------------------------------------------------------------------------------------- documents

class DocumentIn(_Request):
    content: str = Field(..., description="The document's text: plain text, Markdown, reStructuredText or HTML.")
    source: str | None = Field(None, min_length=1, max_length=1000,
                               description="Stable identity (path, URL...). Re-posting a source replaces that "
                                           "document. Default: derived from the content hash.")
    title: str | None = Field(None, max_length=300)
    content_type: str | None = Field(None, description=f"One of {', '.join(CONTENT_TYPES)}; guessed when absent.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON, filterable in search.")

    @field_validator("content_type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in CONTENT_TYPES:
            raise ValueError(f"unsupported content_type {value!r}; use one of {', '.join(CONTENT_TYPES)}")
        return value


class DocumentsIn(_Request):
    documents: list[DocumentIn] = Field(..., min_length=1)


# One document or {"documents": [...]}: the discriminator picks the shape, so a validation error speaks of
# that shape only. The tags appear in error locations; errors.py strips them.
UNION_TAGS = frozenset({"single", "batch"})
DocumentsBody = Annotated[
    Union[Annotated[DocumentIn, Tag("single")], Annotated[DocumentsIn, Tag("batch")]],
    Discriminator(lambda v: "batch" if isinstance(v, dict) and "documents" in v else "single"),
]


class DocumentOut(BaseModel):
    id: uuid.UUID
    object: Literal["document"] = "document"
    source: str
    title: str
    content_type: str
    content_hash: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class ChunkOut(BaseModel):
    ordinal: int
    text: str
    token_count: int


class DocumentDetail(DocumentOut):
    chunks: list[ChunkOut] | None = None


class IngestResult(BaseModel):
    status: Literal["created", "updated", "unchanged"]
    document: DocumentOut


class IngestResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[IngestResult]
    created: int
    updated: int
    unchanged: int


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentOut]
    total: int
    limit: int
    offset: int


class Deleted(BaseModel):
    id: uuid.UUID
    object: Literal["document"] = "document"
    deleted: bool = True


# ------------------------------------------------------------------------------------------------ search

class SearchFiltersIn(_Request):
    sources: list[str] | None = Field(None, min_length=1, description="Only chunks of documents with these sources.")
    metadata: dict[str, Any] | None = Field(None, description="Only documents whose metadata contains this object.")


class SearchRequest(_Request):
    query: str = Field(..., description="Natural-language query.")
    top_k: int | None = Field(None, ge=1, description="Candidates fused from vector and keyword search.")
    top_n: int | None = Field(None, ge=1, description="Hits returned after reranking (at most top_k).")
    rerank: bool = Field(True, description="Rerank candidates with the cross-encoder (false: fused order).")
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
    keyword_score: float | None = Field(description="ts_rank_cd, when the chunk was a full-text top-k hit.")
    fused_score: float = Field(description="Reciprocal-rank fusion of the two ranks.")
    rerank_score: float | None = Field(description="Cross-encoder relevance in [0, 1]; null when rerank=false.")


class StageTimings(BaseModel):
    embed_ms: float
    search_ms: float
    rerank_ms: float
    total_ms: float


class SearchResponse(BaseModel):
    object: Literal["search.result"] = "search.result"
    query: str
    hits: list[SearchHit]
    timings: StageTimings


# -------------------------------------------------------------------------------- embeddings (OpenAI)

class EmbeddingsRequest(_Request):
    input: str | list[str] = Field(..., description="A string or a list of strings (token arrays unsupported).")
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
        if any(not t.strip() for t in texts):
            raise ValueError("input strings must not be empty")
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

class RerankDocument(_Request):
    text: str


class RerankRequest(_Request):
    query: str
    documents: list[str | RerankDocument] = Field(..., min_length=1)
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


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
