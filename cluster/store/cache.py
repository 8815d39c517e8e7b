"""The semantic cache's tables (migration 008): nearest cached questions in a scope, storing an answer with the
documents it came from, hits, eviction.

Invalidation is not here: the `documents` triggers remove an entry in the same transaction as any change to a
document in its prompt, whoever writes (the API, the ingest job, SQL by hand).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from cluster.store import db

CACHE_WRITE = 72410008  # the advisory lock the documents trigger shares (see 008_semantic_cache.sql)


@dataclass(frozen=True)
class CachedAnswer:
    id: int
    question: str
    similarity: float
    answer: dict[str, Any]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def knowledge_version(conn: asyncpg.Pool | asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT version FROM knowledge_state")


async def nearest(pool: asyncpg.Pool, scope: str, embedding: np.ndarray, kb_version: int | None,
                  limit: int) -> list[CachedAnswer]:
    """The cached questions of `scope` nearest to `embedding`, best first; with `kb_version`, only entries answered
    from that knowledge base (or from none)."""
    rows = await pool.fetch(
        "SELECT id, question, answer, 1 - (embedding <=> $2) AS similarity FROM semantic_cache "
        "WHERE scope = $1 AND expires_at > now() AND ($3::bigint IS NULL OR kb_version IS NULL OR kb_version = $3) "
        "ORDER BY embedding <=> $2 LIMIT $4",
        scope, np.asarray(embedding, dtype=np.float32), kb_version, limit)
    return [CachedAnswer(r["id"], r["question"], float(r["similarity"]), _json(r["answer"])) for r in rows]


async def record_hit(pool: asyncpg.Pool, entry_id: int) -> None:
    await pool.execute("UPDATE semantic_cache SET hits = hits + 1, last_hit_at = now() WHERE id = $1", entry_id)


async def store(pool: asyncpg.Pool, *, scope: str, model: str, question: str, embedding: np.ndarray,
                answer: dict[str, Any], kb_version: int | None, require_version: bool,
                sources: dict[uuid.UUID, str], ttl_s: int, max_entries: int, lock_timeout_ms: int = 2000) -> int | None:
    """Store an answer unless the knowledge it came from changed meanwhile (None then, or when a long document write
    holds the lock past `lock_timeout_ms`: an answer not cached is only slower, never wrong).

    `sources`: document id -> the content hash its chunks had when retrieved. `kb_version`: the knowledge base's
    version read before retrieval (None for routes that do not retrieve); `require_version`: the entry is only
    stored if that is still the version now (the profile's `knowledge: version`).
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        try:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CACHE_WRITE)
        except asyncpg.LockNotAvailableError:
            return None
        if sources:
            rows = await conn.fetch("SELECT id, content_hash FROM documents WHERE id = ANY($1::uuid[])", list(sources))
            if {r["id"]: r["content_hash"] for r in rows} != sources:
                return None  # changed or deleted since it was retrieved
        if kb_version is not None and require_version and await knowledge_version(conn) != kb_version:
            return None
        entry_id = await conn.fetchval(
            "INSERT INTO semantic_cache (scope, model, question, embedding, answer, kb_version, expires_at) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6, now() + make_interval(secs => $7)) RETURNING id",
            scope, model, question, np.asarray(embedding, dtype=np.float32), db.jsonb(answer), kb_version,
            float(ttl_s))
        await conn.executemany(
            "INSERT INTO semantic_cache_sources (entry_id, document_id, content_hash) VALUES ($1, $2, $3)",
            [(entry_id, doc, digest) for doc, digest in sources.items()])
        await conn.execute("DELETE FROM semantic_cache WHERE expires_at <= now()")
        await conn.execute("DELETE FROM semantic_cache WHERE id IN (SELECT id FROM semantic_cache "
                           "ORDER BY last_hit_at DESC, id DESC OFFSET $1)", max_entries)
    return entry_id


async def remove(pool: asyncpg.Pool, entry_id: int) -> bool:
    """Drop one entry (a downvoted answer)."""
    return await pool.execute("DELETE FROM semantic_cache WHERE id = $1", entry_id) == "DELETE 1"


async def remove_model(pool: asyncpg.Pool, name: str) -> int:
    """Drop every entry an adapter (any version) answered: it was deleted."""
    pattern = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "@%"
    status = await pool.execute("DELETE FROM semantic_cache WHERE model = $1 OR model LIKE $2", name, pattern)
    return int(status.split()[-1])


async def stats(pool: asyncpg.Pool) -> dict[str, int]:
    row = await pool.fetchrow("SELECT (SELECT count(*) FROM semantic_cache) AS entries, "
                              "(SELECT coalesce(sum(hits), 0) FROM semantic_cache) AS hits, "
                              "version, cache_invalidations FROM knowledge_state")
    return {"entries": row["entries"], "hits": int(row["hits"]), "knowledge_version": row["version"],
            "invalidations": row["cache_invalidations"]}


async def clear(pool: asyncpg.Pool) -> int:
    status = await pool.execute("DELETE FROM semantic_cache")
    return int(status.split()[-1])
