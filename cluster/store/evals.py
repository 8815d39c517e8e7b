"""Evaluation runs' storage: the queue (one row per run), the cases a run was created with, one result per case
and route, and events.

A run is created with its cases in one transaction, so a refused or failed creation leaves nothing. Results are
written one at a time as answers end and never twice (`UNIQUE (eval_id, position, route)`), so a run that was
interrupted resumes with what is missing and keeps what it had. Each Ray submission of a run is an attempt with
its own submission id (Ray refuses to reuse one), fixed before it is submitted, so a dispatcher that crashes
between claiming and submitting resubmits under the same id and a run never executes twice at once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, Sequence

import asyncpg

from cluster.store.db import jsonb

Status = Literal["queued", "in_progress", "completed", "failed", "canceled"]
Verdict = Literal["pass", "fail", "error", "unscored"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "canceled"})


class EvalStateError(ValueError):
    """An action the run's state does not allow (cancelling a finished run)."""


@dataclass(frozen=True)
class EvalRun:
    id: str
    name: str | None
    model: str
    adapter: str | None
    routes: list[str]
    options: dict[str, Any]
    data_source: dict[str, Any]
    cases: int
    metadata: dict[str, str] | None
    status: Status
    cancel_requested: bool
    attempt: int
    ray_submission_id: str | None
    report: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def total(self) -> int:
        """Answers the run will have: every case on every route."""
        return self.cases * len(self.routes)


@dataclass(frozen=True)
class StoredResult:
    id: int
    eval_id: str
    position: int
    route: str
    status: Verdict
    result: dict[str, Any]
    attempt: int
    created_at: datetime


@dataclass(frozen=True)
class EvalEvent:
    id: int
    eval_id: str
    created_at: datetime
    level: str
    message: str
    data: dict[str, Any] | None


_JSON = ("options", "data_source", "metadata", "report", "error", "result", "data")


def _row(cls: type, record: asyncpg.Record) -> Any:
    values = {f.name: record[f.name] for f in fields(cls)}
    for key in _JSON:
        if isinstance(values.get(key), str):
            values[key] = json.loads(values[key])
    return cls(**values)


_json = jsonb  # a metric that came out NaN is stored as null, not refused by jsonb


def new_id() -> str:
    return f"evalrun-{uuid.uuid4().hex[:24]}"


async def add_event(conn: asyncpg.Connection | asyncpg.Pool, eval_id: str, message: str, *, level: str = "info",
                    data: dict[str, Any] | None = None, dedupe_key: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO eval_events (eval_id, level, message, data, dedupe_key) VALUES ($1, $2, $3, $4::jsonb, $5) "
        "ON CONFLICT (eval_id, dedupe_key) DO NOTHING", eval_id, level, message, _json(data), dedupe_key)


# ------------------------------------------------------------------------------------------- the API's side

async def create(pool: asyncpg.Pool, *, eval_id: str, name: str | None, model: str, adapter: str | None,
                 routes: Sequence[str], options: dict[str, Any], data_source: dict[str, Any],
                 items: Sequence[dict[str, Any]], metadata: dict[str, str] | None = None,
                 started_by_hand: bool = False) -> EvalRun:
    """A queued run (or, `started_by_hand`, one already in progress in the caller's own process) with its cases."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO evals (id, name, model, adapter, routes, options, data_source, cases, metadata, status, "
            "attempt, started_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9::jsonb, $10, $11, "
            "CASE WHEN $10 = 'in_progress' THEN now() END) RETURNING *",
            eval_id, name, model, adapter, list(routes), _json(options), _json(data_source), len(items),
            _json(metadata), "in_progress" if started_by_hand else "queued", 1 if started_by_hand else 0)
        await conn.executemany("INSERT INTO eval_items (eval_id, position, item) VALUES ($1, $2, $3::jsonb)",
                               [(eval_id, n, _json(item)) for n, item in enumerate(items, start=1)])
        await add_event(conn, eval_id, f"Eval run created: {len(items)} cases x {len(routes)} routes "
                                       f"({', '.join(routes)})", dedupe_key="created")
        return _row(EvalRun, row)


async def get(pool: asyncpg.Pool | asyncpg.Connection, eval_id: str) -> EvalRun | None:
    row = await pool.fetchrow("SELECT * FROM evals WHERE id = $1", eval_id)
    return _row(EvalRun, row) if row else None


async def list_runs(pool: asyncpg.Pool, after: str | None, limit: int) -> tuple[list[EvalRun], bool]:
    """Newest first; `after` is the last id of the previous page."""
    rows = await pool.fetch(
        "SELECT * FROM evals WHERE $1::text IS NULL OR (created_at, id) < "
        "(SELECT created_at, id FROM evals WHERE id = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
        after, limit + 1)
    return [_row(EvalRun, r) for r in rows[:limit]], len(rows) > limit


@dataclass(frozen=True)
class Tally:
    """Results of one run with the same route, case kind and verdict, and their tokens."""

    route: str
    kind: str
    unanswerable: bool
    status: Verdict
    n: int
    prompt_tokens: int
    completion_tokens: int


async def tallies(pool: asyncpg.Pool, eval_ids: Sequence[str]) -> dict[str, list[Tally]]:
    rows = await pool.fetch(
        "SELECT r.eval_id, r.route, coalesce(i.item->>'kind', 'qa') AS kind, "
        "coalesce((i.item->>'unanswerable')::boolean, false) AS unanswerable, r.status, count(*) AS n, "
        "coalesce(sum((r.result->>'prompt_tokens')::bigint), 0) AS prompt_tokens, "
        "coalesce(sum((r.result->>'completion_tokens')::bigint), 0) AS completion_tokens "
        "FROM eval_results r JOIN eval_items i USING (eval_id, position) WHERE r.eval_id = ANY($1::text[]) "
        "GROUP BY 1, 2, 3, 4, 5", list(eval_ids))
    out: dict[str, list[Tally]] = {eval_id: [] for eval_id in eval_ids}
    for r in rows:
        out[r["eval_id"]].append(Tally(**{f.name: r[f.name] for f in fields(Tally)}))
    return out


async def list_results(pool: asyncpg.Pool, eval_id: str, after: int | None, limit: int,
                       status: str | None = None) -> tuple[list[tuple[StoredResult, dict[str, Any]]], bool]:
    """Results in the order they were recorded, each with its case; `after` is a result id."""
    rows = await pool.fetch(
        "SELECT r.*, i.item FROM eval_results r JOIN eval_items i USING (eval_id, position) "
        "WHERE r.eval_id = $1 AND ($2::bigint IS NULL OR r.id > $2) AND ($3::text IS NULL OR r.status = $3) "
        "ORDER BY r.id LIMIT $4", eval_id, after, status, limit + 1)
    return [(_row(StoredResult, r), json.loads(r["item"])) for r in rows[:limit]], len(rows) > limit


async def list_events(pool: asyncpg.Pool, eval_id: str, after: int | None,
                      limit: int) -> tuple[list[EvalEvent], bool]:
    """Newest first, like fine-tuning events."""
    rows = await pool.fetch(
        "SELECT * FROM eval_events WHERE eval_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC "
        "LIMIT $3", eval_id, after, limit + 1)
    return [_row(EvalEvent, r) for r in rows[:limit]], len(rows) > limit


async def request_cancel(pool: asyncpg.Pool, eval_id: str) -> EvalRun | None:
    """A queued run is canceled at once; one in progress is flagged (its job stops at the next result, or the
    dispatcher stops its Ray job). Finished runs cannot be canceled."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM evals WHERE id = $1 FOR UPDATE", eval_id)
        if row is None:
            return None
        if row["status"] in TERMINAL:
            raise EvalStateError(f"eval run {eval_id} has already {row['status']}")
        if row["status"] == "queued":
            row = await conn.fetchrow("UPDATE evals SET status = 'canceled', cancel_requested = true, "
                                      "finished_at = now() WHERE id = $1 RETURNING *", eval_id)
            await add_event(conn, eval_id, "Eval run canceled before it started", dedupe_key="canceled")
        elif not row["cancel_requested"]:
            row = await conn.fetchrow("UPDATE evals SET cancel_requested = true WHERE id = $1 RETURNING *", eval_id)
            await add_event(conn, eval_id, "Cancellation requested", dedupe_key="cancel_requested")
        return _row(EvalRun, row)


# --------------------------------------------------------------------------------------- the job's side

async def items(pool: asyncpg.Pool, eval_id: str) -> list[tuple[int, dict[str, Any]]]:
    rows = await pool.fetch("SELECT position, item FROM eval_items WHERE eval_id = $1 ORDER BY position", eval_id)
    return [(r["position"], json.loads(r["item"])) for r in rows]


async def recorded(pool: asyncpg.Pool, eval_id: str) -> list[StoredResult]:
    rows = await pool.fetch("SELECT * FROM eval_results WHERE eval_id = $1 ORDER BY id", eval_id)
    return [_row(StoredResult, r) for r in rows]


async def cancel_requested(pool: asyncpg.Pool, eval_id: str) -> bool:
    return bool(await pool.fetchval("SELECT cancel_requested FROM evals WHERE id = $1", eval_id))


async def record_result(pool: asyncpg.Pool, eval_id: str, position: int, route: str, status: Verdict,
                        result: dict[str, Any], attempt: int) -> bool:
    """False if this case and route already had a result (a replay after a resume)."""
    done = await pool.fetchval(
        "INSERT INTO eval_results (eval_id, position, route, status, result, attempt) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (eval_id, position, route) DO NOTHING RETURNING id",
        eval_id, position, route, status, _json(result), attempt)
    return done is not None


async def mark_started(pool: asyncpg.Pool, eval_id: str, attempt: int, remaining: int) -> EvalRun | None:
    """The job began (or resumed); None if the run is already finished (nothing to do)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE evals SET status = 'in_progress', started_at = coalesce(started_at, now()) "
            "WHERE id = $1 AND status IN ('queued', 'in_progress') RETURNING *", eval_id)
        if row is None:
            return None
        resumed = row["cases"] * len(row["routes"]) - remaining
        await add_event(conn, eval_id, f"Attempt {attempt} started: {remaining} answers to go"
                                       + (f", {resumed} already recorded" if resumed else ""),
                        data={"attempt": attempt, "remaining": remaining}, dedupe_key=f"started-{attempt}")
        return _row(EvalRun, row)


async def finish(pool: asyncpg.Pool, eval_id: str, status: Status, message: str, *, level: str = "info",
                 report: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> EvalRun | None:
    """Record a terminal state once (a replay changes nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE evals SET status = $2, report = $3::json, error = $4::jsonb, finished_at = now() "
            "WHERE id = $1 AND status NOT IN ('completed', 'failed', 'canceled') RETURNING *",
            eval_id, status, _json(report), _json(error))
        if row is not None:
            await add_event(conn, eval_id, message, level=level, dedupe_key=status)
        return _row(EvalRun, row) if row else None


# -------------------------------------------------------------------------------- the dispatcher's side

async def claim_next(pool: asyncpg.Pool, max_running: int) -> EvalRun | None:
    """The oldest queued run becomes attempt 1 (in progress) if fewer than `max_running` dispatched runs are; the
    count and the claim are one statement under a lock, so two dispatchers never exceed the limit."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE evals IN SHARE ROW EXCLUSIVE MODE")
        row = await conn.fetchrow(
            "UPDATE evals SET status = 'in_progress', attempt = 1, ray_submission_id = 'ragtune-' || id || '-1', "
            "started_at = now() WHERE id = (SELECT id FROM evals WHERE status = 'queued' ORDER BY created_at, id "
            "LIMIT 1) AND (SELECT count(*) FROM evals WHERE status = 'in_progress' AND ray_submission_id IS NOT NULL) "
            "< $1 RETURNING *", max_running)
        return _row(EvalRun, row) if row else None


async def dispatched(pool: asyncpg.Pool) -> list[EvalRun]:
    """Runs in progress on a Ray job the dispatcher submitted (runs started by hand are their owner's)."""
    rows = await pool.fetch("SELECT * FROM evals WHERE status = 'in_progress' AND ray_submission_id IS NOT NULL "
                            "ORDER BY started_at, id")
    return [_row(EvalRun, r) for r in rows]


async def next_attempt(pool: asyncpg.Pool, eval_id: str, reason: str) -> EvalRun | None:
    """A new submission id for a run whose Ray job ended before the run did (a lost worker, an unreachable
    ingress); the results it recorded stay."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE evals SET attempt = attempt + 1, ray_submission_id = 'ragtune-' || id || '-' || (attempt + 1) "
            "WHERE id = $1 AND status = 'in_progress' RETURNING *", eval_id)
        if row is not None:
            await add_event(conn, eval_id, f"Attempt {row['attempt'] - 1} ended early ({reason}); resuming as "
                                           f"attempt {row['attempt']}", level="warn",
                            dedupe_key=f"retry-{row['attempt']}")
        return _row(EvalRun, row) if row else None
