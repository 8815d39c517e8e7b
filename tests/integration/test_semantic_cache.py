"""The semantic cache against a real Postgres + pgvector (a private embedded server): scopes, the meaning guard,
invalidation in the writer's transaction, the knowledge-base version, stores that race a document change, TTL and
the size cap. The embedder is a stand-in (a fixed vector per question) so that similarity is set by the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import AsyncIterator

import asyncpg
import numpy as np
import pytest

from cluster.content.chunking import Chunk
from cluster.content.parsing import NewDocument
from cluster.profiles import CacheSpec
from cluster.store import cache as store
from cluster.store import knowledge
from serve.services.cache import CacheKey, CacheService
from tests.support.private_db import private_pool

DIM = 8


def _vector(*weights: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[:len(weights)] = weights
    return v / np.linalg.norm(v)


class Embeddings:
    """Questions the test names map to chosen vectors; any other text to a vector of its own."""

    def __init__(self) -> None:
        self.fixed: dict[str, np.ndarray] = {}

    async def __call__(self, texts: list[str]) -> np.ndarray:
        out = []
        for t in texts:
            if t not in self.fixed:
                seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
                self.fixed[t] = _vector(*np.random.default_rng(seed).normal(size=DIM))
            out.append(self.fixed[t])
        return np.stack(out)


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async with private_pool("c-", DIM) as pool:
        yield pool


@pytest.fixture
async def clean(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("DELETE FROM semantic_cache")
    await pool.execute("DELETE FROM documents")
    return pool


def _cache(pool: asyncpg.Pool, embed: Embeddings, counted: list[str] | None = None, **spec: object) -> CacheService:
    async def get() -> asyncpg.Pool:
        return pool

    sink = counted if counted is not None else []
    return CacheService(CacheSpec(**spec), get, embed, sink.append)  # type: ignore[arg-type]


def _key(question: str, scope: str = "s1", retrieves: bool = True, exact: bool = False) -> CacheKey:
    return CacheKey(scope, "base", question, exact=exact, retrieves=retrieves)


async def _document(pool: asyncpg.Pool, source: str, content: str) -> tuple[uuid.UUID, str]:
    digest = hashlib.sha256(content.encode()).hexdigest()
    prepared = knowledge.PreparedDocument(NewDocument(source, source, "text/plain", content, digest),
                                          [Chunk(0, content, 3)], np.stack([_vector(1.0)]))
    [result] = await knowledge.write_documents(pool, [prepared])
    return result.document.id, digest


async def _answer_and_store(cache: CacheService, question: str, sources: dict[uuid.UUID, str],
                            text: str = "an answer", scope: str = "s1") -> None:
    lookup = await cache.lookup(_key(question, scope))
    assert lookup.status == "miss" and lookup.key is not None
    cache.store_later(lookup.key, {"text": text, "finish_reason": "stop", "citations": []}, sources)
    await cache.drain()


async def test_a_paraphrase_hits_and_a_negation_of_it_misses_with_the_guards_reason(clean: asyncpg.Pool) -> None:
    embed, counted = Embeddings(), []
    cache = _cache(clean, embed, counted)
    embed.fixed |= {"How do I enable the cache?": _vector(1, 0.05), "How can I enable the cache?": _vector(1, 0.06),
                    "How do I disable the cache?": _vector(1, 0.07)}  # all three within 0.999 of each other
    await _answer_and_store(cache, "How do I enable the cache?", {}, text="Set cache.enabled.")
    hit = await cache.lookup(_key("How can I enable the cache?"))
    assert hit.status == "hit" and hit.answer["text"] == "Set cache.enabled." and hit.similarity > 0.99
    refused = await cache.lookup(_key("How do I disable the cache?"))
    assert refused.status == "miss" and refused.reason == "guard: antonym"
    assert counted.count("hit") == 1 and counted.count("guard_rejected") == 1 and "stored" in counted


async def test_scopes_never_share_and_a_far_question_misses(clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    cache = _cache(clean, embed)
    await _answer_and_store(cache, "What is hybrid search?", {}, scope="tenant-a/base@1")
    assert (await cache.lookup(_key("What is hybrid search?", "tenant-b/base@1"))).status == "miss"
    assert (await cache.lookup(_key("What is hybrid search?", "tenant-a/base@2"))).status == "miss"
    assert (await cache.lookup(_key("What is hybrid search?", "tenant-a/base@1"))).status == "hit"
    assert (await cache.lookup(_key("Who maintains pgvector?", "tenant-a/base@1"))).status == "miss"


async def test_a_raw_prompt_only_hits_itself(clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    embed.fixed |= {"The capital of France is": _vector(1, 0.01), "The capital of france is": _vector(1, 0.011)}
    cache = _cache(clean, embed)
    lookup = await cache.lookup(_key("The capital of France is", exact=True, retrieves=False))
    cache.store_later(lookup.key, {"text": " Paris.", "finish_reason": "stop"}, {})  # type: ignore[arg-type]
    await cache.drain()
    assert (await cache.lookup(_key("The capital of France is", exact=True, retrieves=False))).status == "hit"
    assert (await cache.lookup(_key("The capital of france is", exact=True, retrieves=False))).status == "miss"


async def test_updating_or_deleting_a_source_document_removes_the_entry_in_that_transaction(
        clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    cache = _cache(clean, embed, knowledge="sources")
    doc_a, hash_a = await _document(clean, "a.md", "Ragtune caches answers.")
    doc_b, hash_b = await _document(clean, "b.md", "Ragtune has guardrails.")
    await _answer_and_store(cache, "Does ragtune cache answers?", {doc_a: hash_a})
    await _answer_and_store(cache, "Does ragtune have guardrails?", {doc_b: hash_b})
    before = (await store.stats(clean))["invalidations"]

    async with clean.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE documents SET content_hash = 'changed' WHERE id = $1", doc_a)
        # inside the writer's transaction the entry is already gone; outside it, not until the commit
        assert await conn.fetchval("SELECT count(*) FROM semantic_cache") == 1
        assert await clean.fetchval("SELECT count(*) FROM semantic_cache") == 2
        await tx.rollback()
    assert (await cache.lookup(_key("Does ragtune cache answers?"))).status == "hit"  # rolled back: still valid

    await _document(clean, "a.md", "Ragtune caches answers, and invalidates them.")  # the API's write path
    assert (await cache.lookup(_key("Does ragtune cache answers?"))).status == "miss"
    assert (await cache.lookup(_key("Does ragtune have guardrails?"))).status == "hit"  # another document's
    assert await knowledge.delete_document(clean, doc_b)
    assert (await cache.lookup(_key("Does ragtune have guardrails?"))).status == "miss"
    assert (await store.stats(clean))["invalidations"] == before + 2


async def test_in_version_mode_any_new_document_retires_retrieving_entries_only(clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    cache = _cache(clean, embed, knowledge="version")
    await _answer_and_store(cache, "What is the default top_n?", {})
    plain = await cache.lookup(_key("Tell me a joke", retrieves=False))
    cache.store_later(plain.key, {"text": "...", "finish_reason": "stop"}, {})  # type: ignore[arg-type]
    await cache.drain()
    assert (await cache.lookup(_key("What is the default top_n?"))).status == "hit"
    await _document(clean, "new.md", "The default top_n is 4.")  # might change the answer: a new version
    assert (await cache.lookup(_key("What is the default top_n?"))).status == "miss"
    assert (await cache.lookup(_key("Tell me a joke", retrieves=False))).status == "hit"  # does not retrieve


async def test_an_answer_whose_document_changed_while_it_was_generated_is_not_stored(clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    cache = _cache(clean, embed, knowledge="sources")
    doc, digest = await _document(clean, "c.md", "Version one.")
    lookup = await cache.lookup(_key("What version is it?"))
    await _document(clean, "c.md", "Version two.")  # lands between retrieval and the store
    cache.store_later(lookup.key, {"text": "Version one.", "finish_reason": "stop"}, {doc: digest})  # type: ignore[arg-type]
    await cache.drain()
    assert await clean.fetchval("SELECT count(*) FROM semantic_cache") == 0


async def test_a_store_waits_for_an_uncommitted_document_change_and_then_skips(clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    cache = _cache(clean, embed, knowledge="sources")
    doc, digest = await _document(clean, "d.md", "Old text.")
    lookup = await cache.lookup(_key("What does d say?"))
    async with clean.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE documents SET content_hash = 'new' WHERE id = $1", doc)  # not committed yet
        cache.store_later(lookup.key, {"text": "Old text.", "finish_reason": "stop"}, {doc: digest})  # type: ignore[arg-type]
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        for _ in range(200):  # until the store is queued behind the writer's lock (it is, or the loop fails)
            if await clean.fetchval(waiting):
                break
            await asyncio.sleep(0.05)
        assert await clean.fetchval(waiting) == 1 and all(not t.done() for t in cache._pending)
        await tx.commit()
    await cache.drain()
    assert await clean.fetchval("SELECT count(*) FROM semantic_cache") == 0


async def test_ttl_and_the_size_cap_evict_the_least_recently_hit(clean: asyncpg.Pool) -> None:
    embed = Embeddings()
    cache = _cache(clean, embed, max_entries=3)
    for q in ("q one", "q two", "q three"):
        await _answer_and_store(cache, q, {})
    assert (await cache.lookup(_key("q one"))).status == "hit"  # q one is now the most recently used
    await _answer_and_store(cache, "q four", {})
    left = {r["question"] for r in await clean.fetch("SELECT question FROM semantic_cache")}
    assert left == {"q one", "q three", "q four"}
    await clean.execute("UPDATE semantic_cache SET expires_at = now() - interval '1 second' WHERE question = 'q one'")
    assert (await cache.lookup(_key("q one"))).status == "miss"  # expired: never served
