"""Served answers and their ratings (migration 009): record a response, rate it (a downvote removes the cache
entry it came from or became, in the same transaction), stats per route and adapter over time, and the rated
answers that `ragtune feedback export` turns into eval cases and training examples."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from cluster.store import db

Rating = Literal["up", "down"]


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    kind: Literal["chat", "completion"]
    route: str
    model: str
    adapter: str | None
    tenant: str
    messages: list[dict[str, str]]
    answer: str
    finish_reason: str | None
    citations: list[dict[str, Any]]
    timings: dict[str, Any]
    usage: dict[str, Any]
    cache_status: str | None = None
    cache_scope: str | None = None
    cache_entry: int | None = None


@dataclass(frozen=True)
class Feedback:
    id: str
    response_id: str
    rating: Rating
    comment: str | None
    correction: str | None
    created_at: datetime
    updated_at: datetime
    route: str
    model: str
    adapter: str | None
    cache_invalidated: int = 0


@dataclass(frozen=True)
class Rated:
    """A rated answer, as the export needs it."""

    response_id: str
    route: str
    adapter: str | None
    messages: list[dict[str, str]]
    answer: str
    rating: Rating
    correction: str | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def record_response(pool: asyncpg.Pool, r: ResponseRecord, keep_unrated_days: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO responses (id, kind, route, model, adapter, tenant, messages, answer, finish_reason, "
            "citations, timings, usage, cache_status, cache_scope, cache_entry) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7::jsonb, $8, $9, $10::jsonb, $11::jsonb, $12::jsonb, $13, $14, $15) ON CONFLICT (id) DO NOTHING",
            r.id, r.kind, r.route, r.model, r.adapter, r.tenant, db.jsonb(r.messages), r.answer, r.finish_reason,
            db.jsonb(r.citations), db.jsonb(r.timings), db.jsonb(r.usage), r.cache_status, r.cache_scope,
            r.cache_entry)
        await conn.execute(
            "DELETE FROM responses r WHERE r.created_at < now() - make_interval(days => $1) "
            "AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id)", keep_unrated_days)


async def rate(pool: asyncpg.Pool, response_id: str, tenant: str, rating: Rating, comment: str | None,
               correction: str | None) -> Feedback | None:
    """Rate a response (a later rating of the same response replaces it); None when this tenant has no such
    response. A downvote removes the cache entry that served the answer, or that the answer became."""
    async with pool.acquire() as conn, conn.transaction():
        r = await conn.fetchrow("SELECT route, model, adapter, cache_scope, cache_entry, messages FROM responses "
                                "WHERE id = $1 AND tenant = $2", response_id, tenant)
        if r is None:
            return None
        row = await conn.fetchrow(
            "INSERT INTO feedback (id, response_id, rating, comment, correction) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (response_id) DO UPDATE SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, "
            "correction = EXCLUDED.correction, updated_at = now() RETURNING *",
            f"fb-{uuid.uuid4().hex[:24]}", response_id, rating, comment, correction)
        removed = 0
        if rating == "down" and (r["cache_entry"] is not None or r["cache_scope"] is not None):
            question = _json(r["messages"])[-1]["content"]
            status = await conn.execute(
                "DELETE FROM semantic_cache WHERE id = $1 OR (scope = $2 AND question = $3)",
                r["cache_entry"], r["cache_scope"], question)
            removed = int(status.split()[-1])
    return Feedback(row["id"], response_id, row["rating"], row["comment"], row["correction"], row["created_at"],
                    row["updated_at"], r["route"], r["model"], r["adapter"], removed)


async def stats(pool: asyncpg.Pool, days: int) -> list[dict[str, Any]]:
    """Per day, route and adapter over the last `days`: answers served (recorded), rated up, rated down."""
    rows = await pool.fetch(
        "SELECT date_trunc('day', r.created_at) AS day, r.route, r.adapter, count(*) AS responses, "
        "count(*) FILTER (WHERE f.rating = 'up') AS up, count(*) FILTER (WHERE f.rating = 'down') AS down "
        "FROM responses r LEFT JOIN feedback f ON f.response_id = r.id "
        "WHERE r.created_at >= date_trunc('day', now()) - make_interval(days => $1 - 1) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 NULLS FIRST", days)
    return [dict(r) for r in rows]


async def rated(pool: asyncpg.Pool, since: datetime | None = None) -> list[Rated]:
    rows = await pool.fetch(
        "SELECT r.id, r.route, r.adapter, r.messages, r.answer, f.rating, f.correction FROM feedback f "
        "JOIN responses r ON r.id = f.response_id WHERE ($1::timestamptz IS NULL OR f.updated_at >= $1) "
        "ORDER BY f.updated_at, f.id", since)
    return [Rated(r["id"], r["route"], r["adapter"], _json(r["messages"]), r["answer"], r["rating"], r["correction"])
            for r in rows]
