"""Recorded answers and their ratings on a real Postgres (a private embedded server): one rating per answer (a new
one replaces it), answers belong to their tenant, a downvote removes the cache entry the answer came from or
became, stats per day/route/adapter, unrated answers pruned after the profile's days."""

from __future__ import annotations

from typing import AsyncIterator

import asyncpg
import numpy as np
import pytest

from cluster.store import cache
from cluster.store import feedback as store
from tests.support.private_db import private_pool

DIM = 8


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async with private_pool("f-", DIM, max_size=4) as pool:
        yield pool


@pytest.fixture
async def clean(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("DELETE FROM responses")
    await pool.execute("DELETE FROM semantic_cache")
    return pool


def _response(rid: str, question: str = "What is BM25?", route: str = "rag", adapter: str | None = None,
              tenant: str = "local", scope: str | None = None, entry: int | None = None) -> store.ResponseRecord:
    return store.ResponseRecord(rid, "chat", route, "smollm2", adapter, tenant, [{"role": "user", "content": question}],
                                "An answer.", "stop", [], {"total_ms": 5.0}, {"prompt_tokens": 3},
                                "hit" if entry else "miss", scope, entry)


async def _entry(pool: asyncpg.Pool, scope: str, question: str) -> int:
    v = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    entry = await cache.store(pool, scope=scope, model="smollm2", question=question, embedding=v,
                              answer={"text": "An answer."}, kb_version=None, require_version=False, sources={},
                              ttl_s=60, max_entries=100)
    assert entry is not None
    return entry


async def test_a_rating_replaces_the_last_and_belongs_to_the_answers_tenant(clean: asyncpg.Pool) -> None:
    await store.record_response(clean, _response("chatcmpl-1", tenant="key-a"), 30)
    first = await store.rate(clean, "chatcmpl-1", "key-a", "up", None, None)
    assert first is not None and first.rating == "up"
    second = await store.rate(clean, "chatcmpl-1", "key-a", "down", "too short", "A ranking function.")
    assert second is not None and second.id == first.id and second.correction == "A ranking function."
    assert await clean.fetchval("SELECT count(*) FROM feedback") == 1
    assert await store.rate(clean, "chatcmpl-1", "key-b", "down", None, None) is None  # another tenant's answer
    assert await store.rate(clean, "chatcmpl-nope", "key-a", "up", None, None) is None
    [rated] = await store.rated(clean)
    assert (rated.rating, rated.correction, rated.messages[-1]["content"]) == ("down", "A ranking function.",
                                                                                "What is BM25?")


async def test_a_downvote_removes_the_cache_entry_that_served_or_stored_the_answer(clean: asyncpg.Pool) -> None:
    served = await _entry(clean, "scope-1", "What is BM25?")
    other = await _entry(clean, "scope-1", "What is RRF?")
    await store.record_response(clean, _response("chatcmpl-hit", scope="scope-1", entry=served), 30)
    await store.record_response(clean, _response("chatcmpl-miss", "What is RRF?", scope="scope-1"), 30)
    up = await store.rate(clean, "chatcmpl-hit", "local", "up", None, None)
    assert up is not None and up.cache_invalidated == 0
    assert await clean.fetchval("SELECT count(*) FROM semantic_cache") == 2
    down = await store.rate(clean, "chatcmpl-hit", "local", "down", None, None)
    assert down is not None and down.cache_invalidated == 1
    assert {r["id"] for r in await clean.fetch("SELECT id FROM semantic_cache")} == {other}
    down = await store.rate(clean, "chatcmpl-miss", "local", "down", None, None)  # the entry it became
    assert down is not None and down.cache_invalidated == 1
    assert await clean.fetchval("SELECT count(*) FROM semantic_cache") == 0


async def test_stats_count_answers_and_ratings_per_route_and_adapter(clean: asyncpg.Pool) -> None:
    for i, (route, adapter) in enumerate([("rag", None), ("rag", None), ("finetuned", "support@2"),
                                          ("finetuned", "support@3")]):
        await store.record_response(clean, _response(f"chatcmpl-{i}", route=route, adapter=adapter), 30)
    await store.rate(clean, "chatcmpl-0", "local", "up", None, None)
    await store.rate(clean, "chatcmpl-1", "local", "down", None, None)
    await store.rate(clean, "chatcmpl-3", "local", "down", None, None)
    rows = {(r["route"], r["adapter"]): (r["responses"], r["up"], r["down"]) for r in await store.stats(clean, 7)}
    assert rows == {("rag", None): (2, 1, 1), ("finetuned", "support@2"): (1, 0, 0),
                    ("finetuned", "support@3"): (1, 0, 1)}


async def test_unrated_answers_older_than_the_profiles_days_are_pruned(clean: asyncpg.Pool) -> None:
    await store.record_response(clean, _response("chatcmpl-old"), 30)
    await store.record_response(clean, _response("chatcmpl-rated"), 30)
    await store.rate(clean, "chatcmpl-rated", "local", "up", None, None)
    await clean.execute("UPDATE responses SET created_at = now() - interval '31 days'")
    await store.record_response(clean, _response("chatcmpl-new"), 30)
    left = {r["id"] for r in await clean.fetch("SELECT id FROM responses")}
    assert left == {"chatcmpl-rated", "chatcmpl-new"}
