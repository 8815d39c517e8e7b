"""OpenAI-compatible generation shapes (chat completions, completions, models), plus ragtune's extensions.

The extensions are top-level fields the `openai` client passes through `extra_body` (route, retrieval
options) and reads back from the response (`citations`, `timings`, `route`). Field names follow OpenAI's API
exactly; fields OpenAI accepts that ragtune cannot honour are rejected with a 400 rather than ignored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from cluster.profiles import RepetitionStop, Sampling
from serve.deployments.llm_protocol import SamplingOptions
from serve.schemas.common import (
    INT64, MAX_MESSAGES, MAX_PROMPT_CHARS, RetrievalApplied, Route, SamplingApplied, StageTimings, StrictRequest,
)
from serve.schemas.retrieval import SearchFiltersIn


class TextPart(StrictRequest):
    type: Literal["text"]
    text: str


class ChatMessage(StrictRequest):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class JsonSchemaFormat(StrictRequest):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = Field(None, description="Accepted; ragtune always enforces the schema (guided decoding).")

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return value


class ResponseFormat(StrictRequest):
    """OpenAI's `response_format`: the answer is constrained by vLLM's guided decoding (xgrammar) on every route."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type 'json_schema', and only with it")
        return self

    def constrains(self) -> bool:
        return self.type != "text"


class StreamOptions(StrictRequest):
    include_usage: bool = True


class _GenerationRequest(StrictRequest):
    model: str = Field(..., min_length=1, description="The base model's id or an adapter's name (GET /v1/models).")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="Default: the route's (the profile's "
                                                                     "`sampling`: rag 0.1, hybrid 0, ...).")
    top_p: float | None = Field(None, gt=0, le=1, description="Default: the route's.")
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="Up to 4 sequences of up to 256 characters.")
    seed: int | None = Field(None, ge=-INT64 - 1, le=INT64)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    user: str | None = None
    ignore_eos: bool = Field(False, description="vLLM's extension: keep generating past end-of-sequence.")
    response_format: ResponseFormat | None = None
    # ragtune extensions (send with the openai client's `extra_body`).
    route: Route | None = Field(None, description="rag | finetuned | hybrid | plain. Default: `rag` for the base "
                                                  "model, `finetuned` for an adapter (`plain` on /v1/completions).")
    top_k: int | None = Field(None, ge=1, description="Retrieval candidates before reranking (rag, hybrid).")
    top_n: int | None = Field(None, ge=1, description="Sources placed in the prompt (rag, hybrid). Default 4.")
    filters: SearchFiltersIn | None = None
    rerank: bool | None = Field(None, description="Rerank candidates with the cross-encoder. Default: profile's.")
    rewrite: bool | None = Field(None, description="Rewrite the retrieval query (the conversation's earlier user "
                                                   "turns, decomposition, acronyms). Default: the profile's.")
    cache: bool | None = Field(None, description=(
        "The semantic cache: false bypasses it (as does the header `Cache-Control: no-cache`); true also caches "
        "an answer sampled above the profile's `cache.max_temperature`. Default: the profile's."))
    grounded: bool | None = Field(None, description=(
        "rag: answer through the profile's grounded-answering adapter (on cpu-dev; the gpu profile has none). "
        "Default: where the profile has one. The response's `answer_adapter` says which answered."))


    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [] if value is None else [value] if isinstance(value, str) else value
        if len(stops) > 4 or any(len(stop) > 256 for stop in stops):
            raise ValueError("at most 4 stop sequences of at most 256 characters each")
        return value
    def to_sampling_options(self, max_tokens: int | None, defaults: Sampling,
                            repetition_stop: RepetitionStop | None = None) -> SamplingOptions:
        """What the LLM deployment samples with (`max_tokens` already checked against the model); what the request
        leaves out comes from the route's `defaults`. A structured (JSON) answer is never cut on repetition: a list
        of equal items is valid output."""
        stop = () if self.stop is None else (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        return SamplingOptions(max_tokens=max_tokens,
                               temperature=defaults.temperature if self.temperature is None else self.temperature,
                               top_p=defaults.top_p if self.top_p is None else self.top_p, stop=stop,
                               seed=self.seed, presence_penalty=self.presence_penalty,
                               frequency_penalty=self.frequency_penalty, ignore_eos=self.ignore_eos,
                               repetition_stop=None if repetition_stop is None or self._structured() else (
                                   repetition_stop.min_pattern_size, repetition_stop.max_pattern_size,
                                   repetition_stop.min_count),
                               **self._structured())

    def _structured(self) -> dict[str, Any]:
        f = self.response_format
        if f is None or not f.constrains():
            return {}
        if f.json_schema is not None:
            return {"json_schema": json.dumps(f.json_schema.schema_)}
        return {"json_object": True}

    def retrieves_nothing(self) -> bool:
        """No retrieval option was given (the routes that do not retrieve refuse them)."""
        return not (self.top_k or self.top_n or self.filters or self.rerank is not None or self.rewrite is not None)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ends_with_user(self) -> "ChatCompletionRequest":
        total = sum(len(m.text()) for m in self.messages)
        if total > MAX_PROMPT_CHARS:
            raise ValueError(f"the messages have {total} characters, more than the limit of {MAX_PROMPT_CHARS}")
        if self.messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if not self.messages[-1].text().strip():
            raise ValueError("the last user message is empty")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str] = Field(..., description="One prompt (a list of exactly one is accepted).")
    echo: Literal[False] = False
    logprobs: None = None
    suffix: None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt per request")
        if len(value if isinstance(value, str) else value[0]) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is longer than the limit of {MAX_PROMPT_CHARS} characters")
        if not (value if isinstance(value, str) else value[0]).strip():
            raise ValueError("the prompt is empty")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int | None:
        return self.max_tokens


# -------------------------------------------------------------------------------------------- responses

class Citation(BaseModel):
    """One source the answer cites as `[Source N]`."""

    source_number: int = Field(..., description="The N in [Source N].")
    document_id: str
    source: str
    title: str
    chunk_ordinal: int
    quote: str = Field(..., description="The cited span: text of the chunk that supports the answer.")
    chunk_text: str
    rerank_score: float | None
    vector_score: float | None = Field(description="The chunk's cosine similarity to the retrieval query.")


class GenerationTimings(StageTimings):
    cache_ms: float = Field(0.0, description="The semantic cache's lookup (embedding the question included).")
    generate_ms: float = 0.0
    ttft_ms: float | None = Field(None, description="Request start to the first generated text.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class CacheInfo(BaseModel):
    status: Literal["hit", "miss", "bypass"]
    similarity: float | None = Field(None, description="A hit: the cached question's cosine similarity to this one.")
    reason: str | None = Field(None, description=(
        "bypass: why (requested, sampled, disabled, unavailable); miss: `guard: <class>` when the meaning guard "
        "refused a near cached question (negation, number, entity, ...)."))


class GuardFinding(BaseModel):
    layer: Literal["rule", "classifier", "canary"]
    kind: str = Field(description="override, roleplay, extraction, exfiltration, encoded (a rule matched what the "
                                  "text hides: base64, a comment, leetspeak...), or injection (the classifier).")
    score: float | None = Field(None, description="The classifier's P(injection).")


class GuardDecision(BaseModel):
    action: Literal["pass", "flag", "strip", "block"]
    findings: list[GuardFinding] = Field(default_factory=list)


class ChunkGuard(GuardDecision):
    document_id: str
    source: str
    chunk_ordinal: int


class GuardrailsInfo(BaseModel):
    input: GuardDecision | None = Field(None, description="The user's messages (null: guardrails off here).")
    chunks: list[ChunkGuard] = Field(default_factory=list, description="Retrieved chunks flagged or stripped.")
    output: str | None = Field(None, description="`canary` when the answer was cut for revealing the prompt.")


class _RagtuneFields(BaseModel):
    route: Route
    cache: CacheInfo | None = None
    guardrails: GuardrailsInfo | None = None
    citations: list[Citation] = Field(default_factory=list)
    timings: GenerationTimings
    retrieval: RetrievalApplied | None = Field(None, description="rag and hybrid: what retrieval ran with.")
    sampling: SamplingApplied
    answer_adapter: str | None = Field(None, description=(
        "rag: the grounded-answering adapter (name@version) the base model answered through, if any."))


class ChatCompletion(_RagtuneFields):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class _StreamEvent(BaseModel):
    id: str
    created: int
    model: str
    usage: Usage | None = None
    # Only on the final event (empty choices): what the non-streaming response carries at top level.
    route: Route | None = None
    citations: list[Citation] | None = None
    timings: GenerationTimings | None = None
    retrieval: RetrievalApplied | None = None
    sampling: SamplingApplied | None = None
    answer_adapter: str | None = None
    cache: CacheInfo | None = None
    guardrails: GuardrailsInfo | None = None


class ChatCompletionChunk(_StreamEvent):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(_RagtuneFields):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(_StreamEvent):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str | None = None
    parent: str | None = Field(None, description="For an adapter: the base model it applies to.")
    version: str | None = Field(None, description="For an adapter: its content version.")
    metadata: dict[str, Any] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True
