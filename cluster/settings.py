"""Typed, validated runtime settings: the one place that defines ragtune's defaults.

Every process (CLI, Serve replicas, Ray Jobs) builds `Settings()` from the environment (`RAGTUNE_*`, plus
`DATABASE_URL`); `ragtune up` starts Ray with the same environment so replicas and jobs agree with the CLI.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveInt, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cluster.profiles import PROFILES, LLMSpec, Profile, ProfileName


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ragtune"


def _default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ragtune" / "models"


class SearchLimits(BaseSettings):
    """Bounds of retrieval requests, and /v1/search's page size (the candidates, the rerank choice and the
    sources a prompt gets are the profile's `retrieval`)."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_SEARCH_", frozen=True)

    max_top_k: PositiveInt = 100
    default_top_n: PositiveInt = Field(5, description="Hits /v1/search returns when the request does not say.")
    max_top_n: PositiveInt = 50
    max_query_chars: PositiveInt = 2000

    @model_validator(mode="after")
    def _defaults_within_bounds(self) -> "SearchLimits":
        if self.default_top_n > self.max_top_n:
            raise ValueError("search defaults must lie within their maxima")
        return self


class IngestLimits(BaseSettings):
    """Bounds on what one ingestion request may carry."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_INGEST_", frozen=True)

    max_document_bytes: PositiveInt = 2_000_000
    max_documents_per_request: PositiveInt = 64
    max_chunks_per_document: PositiveInt = 2_000


class HttpLimits(BaseSettings):
    """Bounds on any request body, checked before it is parsed: by Content-Length, then while it streams in."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_HTTP_", frozen=True)

    max_json_bytes: PositiveInt = Field(32_000_000, description=(
        "A JSON body: room for 8 documents at the 2 MB limit with JSON escaping, or a long chat."))
    max_upload_bytes: PositiveInt = Field(64_000_000, description=(
        "A multipart upload: a training file at its 50 MB limit, or several documents."))
    request_timeout_s: float = Field(900, gt=0, description=(
        "End-to-end limit of one request at Serve's proxy (a long generation on CPU fits; a stuck one ends)."))


class FineTuningLimits(BaseSettings):
    """The fine-tuning queue: what an upload may be, and how often the dispatcher looks at the queue."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_FINETUNE_", frozen=True)

    max_file_bytes: PositiveInt = 50_000_000
    max_examples: PositiveInt = 200_000
    max_length: PositiveInt = Field(1024, description="Default and maximum tokens of one formatted example.")
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    max_store_bytes: PositiveInt = Field(5_000_000_000, description=(
        "Quota of all uploaded files together (training data, eval sets); an upload past it is a 413."))
    max_submit_attempts: PositiveInt = Field(5, description="Submissions Ray may refuse before the job fails.")
    submit_retry_s: float = Field(2.0, ge=0, le=600, description="Pause after the first refusal; doubles each time.")


class EvalLimits(BaseSettings):
    """The eval queue: how many runs at once, and how often one whose job ended early is resumed."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_EVAL_", frozen=True)

    max_concurrent_runs: PositiveInt = Field(1, description="Runs share the cluster with users: one at a time.")
    max_attempts: PositiveInt = Field(3, description="Ray jobs per run before an unreachable ingress fails it.")
    request_retries: int = Field(3, ge=0, le=10, description="Retries of one request on 502/503/504 or no answer.")
    max_concurrency: PositiveInt = Field(16, description="The most requests one run may have in flight.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", frozen=True, extra="ignore")

    profile: ProfileName = "cpu-dev"
    llm_variant: Literal["default", "test"] = Field(
        "default", description="`test` serves the profile's test_llm (float32, short outputs) instead of its llm.")
    state_dir: Path = Field(default_factory=_default_state_dir)
    models_dir: Path = Field(default_factory=_default_models_dir)
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("RAGTUNE_DATABASE_URL", "DATABASE_URL"),
        description="Any PostgreSQL with pgvector. Unset: the embedded server under state_dir/pgdata.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    ray_address: str | None = Field(None, description="An existing Ray cluster to join instead of starting one.")
    ray_port: int = Field(6379, ge=1, le=65535)
    dashboard_port: int = Field(8265, ge=1, le=65535)
    dashboard_agent_port: int = Field(52365, ge=1, le=65535, description=(
        "The local head's dashboard agent (it takes job submissions); distinct per cluster on one machine."))
    metrics_port: int = Field(8180, ge=1, le=65535, description=(
        "The local head's Ray metrics agent (Prometheus: Ray's, vLLM's and ragtune's metrics; GET /metrics merges "
        "every node's)."))
    metrics_report_interval_ms: PositiveInt = Field(2000, ge=1000, description=(
        "How often processes push metrics to their node's agent (Ray's default is 10 s)."))
    ray_num_cpus: PositiveInt = Field(8, description="Logical CPUs the local head advertises; replicas use fractions.")
    app_name: str = "ragtune"
    adapter_store: str | None = Field(
        None, description="Where LoRA adapters live: a directory or any fsspec URI (s3://, gs://). "
                          "Unset: state_dir/adapters.")
    file_store: str | None = Field(
        None, description="Where uploaded training files live: a directory or any fsspec URI. Unset: state_dir/files.")
    db_pool_max: PositiveInt = 8
    search: SearchLimits = Field(default_factory=SearchLimits)
    ingest: IngestLimits = Field(default_factory=IngestLimits)
    http: HttpLimits = Field(default_factory=HttpLimits)
    fine_tuning: FineTuningLimits = Field(default_factory=FineTuningLimits)
    evals: EvalLimits = Field(default_factory=EvalLimits)

    @field_validator("state_dir", "models_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def profile_spec(self) -> Profile:
        return PROFILES[self.profile]

    @property
    def llm_spec(self) -> LLMSpec:
        profile = self.profile_spec
        if self.llm_variant == "test":
            if profile.test_llm is None:
                raise ValueError(f"profile {profile.name!r} has no test_llm")
            return profile.test_llm
        return profile.llm

    @property
    def adapter_store_uri(self) -> str:
        return self.adapter_store or str(self.state_dir / "adapters")

    @property
    def file_store_uri(self) -> str:
        return self.file_store or str(self.state_dir / "files")

    @property
    def adapter_cache_dir(self) -> Path:
        """Local copies of adapters, one directory per name and content version, that engines load from."""
        return self.state_dir / "adapter-cache"

    @property
    def pgdata(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def environment(self) -> dict[str, str]:
        """The variables that make another process (Ray head, job, replica) build these same settings."""
        env = {
            "RAGTUNE_PROFILE": self.profile,
            "RAGTUNE_STATE_DIR": str(self.state_dir),
            "RAGTUNE_MODELS_DIR": str(self.models_dir),
            "RAGTUNE_HOST": self.host,
            "RAGTUNE_PORT": str(self.port),
            "RAGTUNE_APP_NAME": self.app_name,
            "RAGTUNE_LLM_VARIANT": self.llm_variant,
        }
        if self.database_url:
            env["RAGTUNE_DATABASE_URL"] = self.database_url
        if self.adapter_store:
            env["RAGTUNE_ADAPTER_STORE"] = self.adapter_store
        if self.file_store:
            env["RAGTUNE_FILE_STORE"] = self.file_store
        return env
