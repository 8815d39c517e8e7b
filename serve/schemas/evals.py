"""Eval runs over HTTP. Names follow OpenAI's Evals API where it has one (a run's `status`, `data_source`,
`result_counts`, `per_model_usage`, `per_testing_criteria_results`; output items with `datasource_item`,
`results` and `sample`); one ragtune resource is one run of one test set through several routes, so
`POST /v1/evals` creates and queues the run.

Fields left out of a request take their defaults from one place: routes and declared answers from
`cluster/evaluation` (RunOptions, Declared), limits from the settings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from cluster.evaluation.rules import Change
from cluster.store import evals
from cluster.store.knowledge import SearchMode
from serve.schemas.common import StrictRequest


class ContentItem(StrictRequest):
    item: dict[str, Any] = Field(description="One test-set case (docs/eval.md), as a line of the JSONL file.")


class FileContentSource(StrictRequest):
    type: Literal["file_content"]
    content: list[ContentItem] = Field(min_length=1)


class FileIdSource(StrictRequest):
    type: Literal["file_id"]
    id: str = Field(description="A file uploaded with purpose `evals`.")


class JsonlDataSource(StrictRequest):
    type: Literal["jsonl"] = "jsonl"
    source: Annotated[FileContentSource | FileIdSource, Field(discriminator="type")]


class DeclaredAnswers(StrictRequest):
    """The flowchart's questions a measurement cannot answer (defaults: cluster/evaluation/rules.py Declared)."""

    knowledge_changes: Change | None = None
    citations_required: bool | None = None
    latency_budget_ms: float | None = Field(None, gt=0)
    labelled_examples: int | None = Field(None, ge=0)
    can_maintain_training: bool | None = None


class EvalCreate(StrictRequest):
    name: str | None = Field(None, max_length=256)
    data_source: JsonlDataSource
    routes: list[str] | None = Field(None, min_length=1, description=(
        "rag, finetuned, hybrid, plain, search. Default: rag, plain, search, plus finetuned and hybrid with an "
        "adapter."))
    adapter: str | None = Field(None, description="The finetuned and hybrid routes' adapter (GET /v1/models).")
    concurrency: int | None = Field(None, ge=1, description="Requests in flight (at most the server's limit).")
    max_tokens: int | None = Field(None, ge=1, le=4096)
    queries_per_day: float | None = Field(None, ge=0, description="For the monthly cost table.")
    declared: DeclaredAnswers | None = None
    judge: bool | None = Field(None, description=(
        "Also grade answers with the served base model (judge_score, several runs averaged; never the primary "
        "metric). Default: the profile's (off on cpu-dev)."))
    structured_output: bool = Field(False, description=(
        "json cases: constrain answers with response_format (a JSON schema of expected's keys and types), to "
        "compare valid-JSON rates with and without guided decoding."))
    rewrite: bool | None = Field(None, description=(
        "Query rewriting on the retrieving routes (rag, hybrid, search). Default: the profile's."))
    grounded: bool | None = Field(None, description=(
        "The rag route through the profile's grounded-answering adapter (cpu-dev). Default: the profile's."))
    search_mode: SearchMode = Field("hybrid", description=(
        "The search route's: hybrid, or vector or keyword alone (to measure fusion against its parts)."))
    metadata: dict[str, str] | None = Field(None, max_length=16)


class EvalError(BaseModel):
    code: str
    message: str


class ResultCounts(BaseModel):
    total: int
    passed: int
    failed: int
    errored: int


class ModelUsage(BaseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


class CriterionResult(BaseModel):
    testing_criteria: str
    passed: int
    failed: int


class Progress(BaseModel):
    completed: int
    total: int


class EvalRunOut(BaseModel):
    id: str
    object: Literal["eval.run"] = "eval.run"
    eval_id: str
    name: str | None
    status: evals.Status
    model: str
    data_source: dict[str, Any]
    result_counts: ResultCounts
    per_model_usage: list[ModelUsage]
    per_testing_criteria_results: list[CriterionResult]
    error: EvalError | None
    created_at: int
    metadata: dict[str, str] | None = None
    report_url: str | None = None
    # ragtune extensions
    routes: list[str]
    adapter: str | None
    progress: Progress
    attempt: int
    started_at: int | None
    finished_at: int | None
    report: dict[str, Any] | None = Field(description=(
        "When completed: per-route metrics, latency, tokens, monthly cost, differences with bootstrap intervals, "
        "the recommendation and the cases where routes disagree."))


class EvalRunList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EvalRunOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


class OutputItem(BaseModel):
    id: str
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    run_id: str
    eval_id: str
    created_at: int
    status: evals.Verdict
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    sample: dict[str, Any]


class OutputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OutputItem]
    first_id: str | None
    last_id: str | None
    has_more: bool


class EvalEventOut(BaseModel):
    id: str
    object: Literal["eval.run.event"] = "eval.run.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None


class EvalEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EvalEventOut]
    has_more: bool


def _ts(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def run_out(run: evals.EvalRun, counts: dict[str, Any]) -> EvalRunOut:
    return EvalRunOut(
        id=run.id, eval_id=run.id, name=run.name, status=run.status, model=run.model, data_source=run.data_source,
        error=EvalError(**run.error) if run.error else None, created_at=int(run.created_at.timestamp()),
        metadata=run.metadata, routes=run.routes, adapter=run.adapter, attempt=run.attempt,
        started_at=_ts(run.started_at), finished_at=_ts(run.finished_at), report=run.report, **counts)


def event_out(e: evals.EvalEvent) -> EvalEventOut:
    return EvalEventOut(id=f"evalevent-{e.id}", created_at=int(e.created_at.timestamp()), level=e.level,  # type: ignore[arg-type]
                        message=e.message, data=e.data)
