"""The fine-tuning queue's storage: training file rows (content in `store.files`), jobs (the
queue: one row per job, its state, priority and Ray submission id) and job events.

Every state change is one transaction with the event that reports it. A job's adapter name and Ray submission id
are fixed when the job is created, so the dispatcher can resubmit after a crash without ever running a job twice
(Ray refuses a second submission with the same id) and a retried job publishes under the same name.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import asyncpg

from cluster.store.db import jsonb

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobStateError(ValueError):
    """An action the job's current state does not allow (e.g. cancelling a finished job)."""


@dataclass(frozen=True)
class TrainingFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    sha256: str
    examples: int
    uri: str
    created_at: datetime


@dataclass(frozen=True)
class FineTuningJob:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    hyperparameters: dict[str, Any]
    seed: int
    priority: int
    metadata: dict[str, str] | None
    status: Status
    cancel_requested: bool
    num_gpus: float
    adapter_name: str
    ray_submission_id: str
    submitted_at: datetime | None
    log_offset: int
    fine_tuned_model: str | None
    adapter_version: str | None
    trained_tokens: int | None
    metrics: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    submit_attempts: int = 0  # failed submissions to Ray so far (bounded: then the job fails)
    retry_at: datetime | None = None  # no new submission before this


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    created_at: datetime
    level: str
    type: str
    message: str
    data: dict[str, Any] | None


def _row(cls: type, record: asyncpg.Record) -> Any:
    values = {f.name: record[f.name] for f in fields(cls)}
    for key in ("hyperparameters", "metrics", "error", "data", "metadata"):
        if isinstance(values.get(key), str):
            values[key] = json.loads(values[key])
    return cls(**values)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


# ------------------------------------------------------------------------------------------------ files

class QuotaExceeded(ValueError):
    """The file store's quota would be passed by this file."""


FILES_LOCK = 0x72616766  # serializes the quota check with the insert: two uploads cannot both squeeze in


async def create_file(pool: asyncpg.Pool, f: TrainingFile, quota_bytes: int | None = None) -> TrainingFile:
    async with pool.acquire() as conn, conn.transaction():
        if quota_bytes is not None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FILES_LOCK)
            used = await conn.fetchval("SELECT coalesce(sum(bytes), 0) FROM training_files")
            if used + f.bytes > quota_bytes:
                raise QuotaExceeded(f"the file store's quota of {quota_bytes} bytes would be exceeded ({used} used, "
                                    f"{f.bytes} more); delete files with DELETE /v1/files/{{file_id}}")
        row = await conn.fetchrow(
            "INSERT INTO training_files (id, filename, purpose, bytes, sha256, examples, uri) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            f.id, f.filename, f.purpose, f.bytes, f.sha256, f.examples, f.uri)
    return _row(TrainingFile, row)


async def get_file(pool: asyncpg.Pool | asyncpg.Connection, file_id: str) -> TrainingFile | None:
    row = await pool.fetchrow("SELECT * FROM training_files WHERE id = $1", file_id)
    return _row(TrainingFile, row) if row else None


async def list_files(pool: asyncpg.Pool, purpose: str | None = None, limit: int = 100) -> list[TrainingFile]:
    rows = await pool.fetch("SELECT * FROM training_files WHERE $1::text IS NULL OR purpose = $1 "
                            "ORDER BY created_at DESC, id DESC LIMIT $2", purpose, limit)
    return [_row(TrainingFile, r) for r in rows]


async def delete_file(pool: asyncpg.Pool, file_id: str) -> TrainingFile | None:
    """Refused (JobStateError) while any job refers to the file: its record must stay reproducible."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM training_files WHERE id = $1 FOR UPDATE", file_id)
        if row is None:
            return None
        users = await conn.fetchval("SELECT count(*) FROM fine_tuning_jobs WHERE training_file = $1 "
                                    "OR validation_file = $1", file_id)
        if users:
            raise JobStateError(f"file {file_id} is used by {users} fine-tuning job(s)")
        await conn.execute("DELETE FROM training_files WHERE id = $1", file_id)
        return _row(TrainingFile, row)


# ------------------------------------------------------------------------------------------------- jobs

async def add_event(conn: asyncpg.Connection | asyncpg.Pool, job_id: str, message: str, *, level: str = "info",
                    type: str = "message", data: dict[str, Any] | None = None,
                    dedupe_key: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO fine_tuning_events (job_id, level, type, message, data, dedupe_key) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (job_id, dedupe_key) DO NOTHING",
        job_id, level, type, message, jsonb(data), dedupe_key)


async def create_job(pool: asyncpg.Pool, *, job_id: str, model: str, training_file: str,
                     validation_file: str | None, suffix: str | None, hyperparameters: dict[str, Any], seed: int,
                     priority: int, num_gpus: float, adapter_name: str,
                     metadata: dict[str, str] | None = None) -> FineTuningJob:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO fine_tuning_jobs (id, model, training_file, validation_file, suffix, hyperparameters, seed, "
            "priority, status, num_gpus, adapter_name, ray_submission_id, metadata) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, 'queued', $9, $10, $11, $12::jsonb) RETURNING *",
            job_id, model, training_file, validation_file, suffix, jsonb(hyperparameters), seed, priority,
            num_gpus, adapter_name, f"ragtune-{job_id}", jsonb(metadata))
        await add_event(conn, job_id, f"Validated training file: {training_file}", dedupe_key="validated")
        await add_event(conn, job_id, "Fine-tuning job created and queued", dedupe_key="queued")
        return _row(FineTuningJob, row)


async def get_job(pool: asyncpg.Pool | asyncpg.Connection, job_id: str) -> FineTuningJob | None:
    row = await pool.fetchrow("SELECT * FROM fine_tuning_jobs WHERE id = $1", job_id)
    return _row(FineTuningJob, row) if row else None


async def list_jobs(pool: asyncpg.Pool, after: str | None, limit: int) -> tuple[list[FineTuningJob], bool]:
    """Newest first; `after` is the last id of the previous page (OpenAI's cursor)."""
    rows = await pool.fetch(
        "SELECT * FROM fine_tuning_jobs WHERE $1::text IS NULL OR (created_at, id) < "
        "(SELECT created_at, id FROM fine_tuning_jobs WHERE id = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
        after, limit + 1)
    return [_row(FineTuningJob, r) for r in rows[:limit]], len(rows) > limit


async def list_events(pool: asyncpg.Pool, job_id: str, after: int | None, limit: int) -> tuple[list[JobEvent], bool]:
    """Newest first, like OpenAI's; `after` is an event id from the previous page."""
    rows = await pool.fetch(
        "SELECT * FROM fine_tuning_events WHERE job_id = $1 AND ($2::bigint IS NULL OR id < $2) "
        "ORDER BY id DESC LIMIT $3", job_id, after, limit + 1)
    return [_row(JobEvent, r) for r in rows[:limit]], len(rows) > limit


async def queue_depth(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM fine_tuning_jobs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def request_cancel(pool: asyncpg.Pool, job_id: str) -> FineTuningJob | None:
    """A queued job is cancelled at once (nothing was submitted); a running one is flagged and the dispatcher
    stops its Ray job. Finished jobs cannot be cancelled."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM fine_tuning_jobs WHERE id = $1 FOR UPDATE", job_id)
        if row is None:
            return None
        if row["status"] in TERMINAL:
            raise JobStateError(f"job {job_id} has already {row['status']}")
        if row["status"] == "queued":
            row = await conn.fetchrow("UPDATE fine_tuning_jobs SET status = 'cancelled', cancel_requested = true, "
                                      "finished_at = now() WHERE id = $1 RETURNING *", job_id)
            await add_event(conn, job_id, "Job cancelled before it started", dedupe_key="cancelled")
        elif not row["cancel_requested"]:
            row = await conn.fetchrow("UPDATE fine_tuning_jobs SET cancel_requested = true WHERE id = $1 RETURNING *",
                                      job_id)
            await add_event(conn, job_id, "Cancellation requested; stopping the training job",
                            dedupe_key="cancel_requested")
        return _row(FineTuningJob, row)


# ------------------------------------------------------------------------------------ dispatcher's side

CLAIM_LOCK = 0x72616763  # serializes claims: the running count and the claim must see the same state


async def claim_next(pool: asyncpg.Pool, max_running: int, gpu_budget: float) -> FineTuningJob | None:
    """Move the next queued job (highest priority, then oldest) to running if the concurrency and GPU budget
    allow it: counted and claimed in one statement, after a transaction lock that every claimer takes, so even two
    dispatchers that both believe they lead (a lost lock connection) cannot run more than `max_running`."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        row = await conn.fetchrow(
            "WITH running AS (SELECT count(*) AS n, coalesce(sum(num_gpus), 0) AS gpus FROM fine_tuning_jobs "
            "                 WHERE status = 'running'), "
            "     next AS (SELECT id, num_gpus FROM fine_tuning_jobs WHERE status = 'queued' "
            "              ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "UPDATE fine_tuning_jobs j SET status = 'running', started_at = now() FROM running, next "
            "WHERE j.id = next.id AND running.n < $1 AND running.gpus + next.num_gpus <= $2 + 1e-9 RETURNING j.*",
            max_running, gpu_budget)
        return _row(FineTuningJob, row) if row else None


async def running_jobs(pool: asyncpg.Pool) -> list[FineTuningJob]:
    rows = await pool.fetch("SELECT * FROM fine_tuning_jobs WHERE status = 'running' ORDER BY started_at, id")
    return [_row(FineTuningJob, r) for r in rows]


async def mark_submitted(pool: asyncpg.Pool, job_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE fine_tuning_jobs SET submitted_at = coalesce(submitted_at, now()), retry_at = NULL "
                           "WHERE id = $1", job_id)
        await add_event(conn, job_id, "Fine-tuning job started", dedupe_key="started")


async def record_submit_failure(pool: asyncpg.Pool, job_id: str, retry_in_s: float) -> int:
    """Count a failed submission and hold the next one back `retry_in_s`; returns the failures so far."""
    async with pool.acquire() as conn, conn.transaction():
        attempts = await conn.fetchval(
            "UPDATE fine_tuning_jobs SET submit_attempts = submit_attempts + 1, "
            "retry_at = now() + make_interval(secs => $2) WHERE id = $1 AND status = 'running' "
            "RETURNING submit_attempts", job_id, retry_in_s)
        if attempts is not None:
            await add_event(conn, job_id, f"Submitting the training job failed (attempt {attempts}); retrying",
                            level="warn", dedupe_key=f"submit_failed:{attempts}")
        return attempts or 0


async def record_progress(pool: asyncpg.Pool, job_id: str, log_offset: int,
                          events: list[tuple[str, dict[str, Any]]]) -> None:
    """Events parsed from new log lines, and how far the log has been read, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        for key, event in events:
            await add_event(conn, job_id, dedupe_key=key, **event)
        await conn.execute("UPDATE fine_tuning_jobs SET log_offset = $2 WHERE id = $1", job_id, log_offset)


async def finish(pool: asyncpg.Pool, job_id: str, status: Status, message: str, *, level: str = "info",
                 fine_tuned_model: str | None = None, adapter_version: str | None = None,
                 trained_tokens: int | None = None, metrics: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None) -> FineTuningJob | None:
    """Record a terminal state once (a replay after a restart changes nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE fine_tuning_jobs SET status = $2, fine_tuned_model = $3, adapter_version = $4, "
            "trained_tokens = $5, metrics = $6::jsonb, error = $7::jsonb, finished_at = now() "
            "WHERE id = $1 AND status = 'running' RETURNING *",
            job_id, status, fine_tuned_model, adapter_version, trained_tokens,
            jsonb(metrics), jsonb(error))
        if row is not None:
            await add_event(conn, job_id, message, level=level, dedupe_key=status)
        return _row(FineTuningJob, row) if row else None
