"""What every router's shapes share: the one strict request base, the route, stage timings, the error shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cluster.store.knowledge import SearchMode

Route = Literal["rag", "finetuned", "hybrid", "plain"]

# Bounds of one request, part of the API's contract (published in /openapi.json): a body under the size limit
# can still ask for unbounded work (100k rerank documents, a 10 MB query), so each field has its own. They follow
# OpenAI's where it has one (2,048 embedding inputs, 4 stop sequences).
MAX_QUERY_CHARS = 4_000
MAX_TEXT_CHARS = 32_000  # one embedding input or rerank document (the models read far less)
MAX_RERANK_DOCUMENTS = 1_000
MAX_EMBEDDING_INPUTS = 2_048
MAX_MESSAGES = 256
MAX_PROMPT_CHARS = 200_000  # all of a chat's messages, or one completion prompt
INT64 = 2**63 - 1


class StrictRequest(BaseModel):
    """Every request body: an unknown field is a 400 (a typo in `route` must not silently change behaviour)."""

    model_config = ConfigDict(extra="forbid")


class StageTimings(BaseModel):
    """Milliseconds per pipeline stage; generation adds its own (GenerationTimings)."""

    rewrite_ms: float = 0.0
    embed_ms: float
    search_ms: float
    rerank_ms: float
    total_ms: float


class RetrievalApplied(BaseModel):
    """What retrieval ran with: the request's values, or the profile's where it gave none, and why it reranked
    or not."""

    top_k: int
    top_n: int
    rerank: bool
    rerank_reason: str = Field(description="`requested`, or the profile's reason.")
    mode: SearchMode = "hybrid"
    queries: list[str] = Field(default_factory=list, description=(
        "What was searched: the query as sent, or its rewrites (one per part of a multi-part question)."))
    rewrites: list[str] = Field(default_factory=list, description=(
        "The rewriting steps that changed the query: conversation, decomposition, acronyms."))


class SamplingApplied(BaseModel):
    """What the answer was sampled with; `from_profile` names the fields the request left to the route's
    defaults (the profile's `sampling`)."""

    temperature: float
    top_p: float
    repetition_stop: bool = Field(description="Generation ends at a repeated span (the profile's repetition_stop).")
    from_profile: list[str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, used by every endpoint."""

    error: ErrorDetail
