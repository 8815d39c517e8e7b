"""OpenAI's files and fine-tuning shapes, so the official `openai` client works unmodified.

ragtune extensions are extra fields the client ignores: `priority`, `system_prompt` and LoRA settings on create;
`adapter_version` and `metrics` on the job.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from cluster.store import fine_tuning as ft
from serve.schemas.common import StrictRequest


# ------------------------------------------------------------------------------------------------ files

class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    status_details: str | None = None
    examples: int = Field(description="ragtune: training examples (purpose evals: test cases) in the file.")


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


def file_out(f: ft.TrainingFile) -> FileObject:
    return FileObject(id=f.id, bytes=f.bytes, created_at=int(f.created_at.timestamp()), filename=f.filename,
                      purpose=f.purpose, examples=f.examples)


# -------------------------------------------------------------------------------------------------- jobs

class Hyperparameters(StrictRequest):
    n_epochs: int | Literal["auto"] = Field("auto", description="auto: 3")
    batch_size: int | Literal["auto"] = Field("auto", description="auto: the profile's training batch size")
    learning_rate_multiplier: float | Literal["auto"] = Field("auto", description="Of 2e-4 (auto: 1).")
    # ragtune extensions
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Stop after this many optimizer steps.")
    lora_rank: int | None = Field(None, ge=1, le=256)
    lora_alpha: int | None = Field(None, ge=1, le=1024)
    max_length: int | None = Field(None, ge=16, description="Tokens per example (at most the server's limit).")
    timeout_s: int | None = Field(None, ge=60, le=7 * 86400, description=(
        "Wall-clock limit from the job's start; then it is stopped and fails (default: the profile's)."))


class SupervisedMethod(StrictRequest):
    hyperparameters: Hyperparameters | None = None


class Method(StrictRequest):
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class FineTuningJobCreate(StrictRequest):
    model: str
    training_file: str
    validation_file: str | None = None
    # Not starting with "-" or ".": the suffix becomes part of a model name and of the training job's arguments.
    suffix: str | None = Field(None, max_length=64, pattern=r"^([A-Za-z0-9_][A-Za-z0-9._-]*)?$")
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    # ragtune extensions
    system_prompt: str | None = Field(None, max_length=4000, description=(
        "Added to every training example and, for the fine-tuned route, to requests without their own."))
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first; ties run oldest first.")

    def resolved_hyperparameters(self) -> Hyperparameters:
        if self.hyperparameters and self.method and self.method.supervised and self.method.supervised.hyperparameters:
            raise ValueError("give hyperparameters either at the top level or in method.supervised, not both")
        if self.method and self.method.supervised and self.method.supervised.hyperparameters:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJobOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None
    estimated_finish: int | None = None
    model: str
    fine_tuned_model: str | None
    organization_id: str = "ragtune"
    result_files: list[str] = Field(default_factory=list)
    status: ft.Status
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    trained_tokens: int | None
    error: JobError | None
    seed: int
    user_provided_suffix: str | None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    # ragtune extensions
    priority: int
    adapter_version: str | None
    metrics: dict[str, Any] | None


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobOut]
    has_more: bool


class JobEventOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"]


class JobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobEventOut]
    has_more: bool


def _ts(value: Any) -> Any:
    return int(value.timestamp()) if value is not None else None


def job_out(job: ft.FineTuningJob) -> FineTuningJobOut:
    h = job.hyperparameters
    public = {"n_epochs": h["n_epochs"], "batch_size": h["batch_size"],
              "learning_rate_multiplier": h["learning_rate_multiplier"]}
    return FineTuningJobOut(
        id=job.id, created_at=_ts(job.created_at), finished_at=_ts(job.finished_at), model=job.model,
        fine_tuned_model=job.fine_tuned_model, status=job.status, training_file=job.training_file,
        validation_file=job.validation_file, hyperparameters=h,
        method={"type": "supervised", "supervised": {"hyperparameters": public}},
        trained_tokens=job.trained_tokens, error=JobError(**job.error) if job.error else None, seed=job.seed,
        user_provided_suffix=job.suffix, metadata=job.metadata, priority=job.priority,
        adapter_version=job.adapter_version, metrics=job.metrics)


def event_out(e: ft.JobEvent) -> JobEventOut:
    return JobEventOut(id=f"ftevent-{e.id}", created_at=_ts(e.created_at), level=e.level, message=e.message,
                       data=e.data, type=e.type)  # type: ignore[arg-type]
