"""The semantic cache on the generation path: look an answer up before retrieval and generation, store it once it
has streamed to its end.

An entry is shared only within its scope: everything that changes an answer (route, model and adapter
`name@version`, the answering adapter, sampling, response format, retrieval options and filters, the earlier
turns of the conversation, the API key). Within the scope, the nearest cached questions above the profile's
similarity must also pass the meaning guard (`cache_guard`). rag/hybrid entries remember the documents in their
prompt (with content hashes) and the knowledge base's version; the documents' triggers remove them in the same
transaction as a change (cluster/store/cache.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Literal

import asyncpg
import numpy as np

from cluster.profiles import CacheSpec
from cluster.store import cache as store
from serve.services.cache_guard import compare
from serve.services.timing import elapsed_ms

log = logging.getLogger("ray.serve.ragtune.cache")

SCOPE_VERSION = 1  # bump when what goes into a scope, or an entry's answer, changes shape
Status = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True)
class Lookup:
    """What the cache decided for one request; `key` is None when it is bypassed."""

    status: Status
    key: "CacheKey | None" = None
    similarity: float | None = None
    entry_id: int | None = None
    answer: dict[str, Any] | None = None  # the cached answer, on a hit
    reason: str | None = None  # bypass: why; miss: the guard's reason for refusing the nearest, if it did
    lookup_ms: float = 0.0

    def info(self) -> dict[str, Any]:
        """The response's `cache` field."""
        return {"status": self.status, "similarity": None if self.similarity is None else round(self.similarity, 4),
                "reason": self.reason}


@dataclass(frozen=True)
class CacheKey:
    scope: str
    model: str
    question: str
    exact: bool  # raw completions: only the same prompt, character for character
    retrieves: bool
    embedding: Any = None
    kb_version: int | None = None


def scope_digest(**parts: Any) -> str:
    """A stable digest of everything that changes an answer (keys sorted, dataclasses as dicts)."""
    def plain(value: Any) -> Any:
        if hasattr(value, "__dataclass_fields__"):
            return plain(asdict(value))
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [plain(v) for v in value]
            return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
        return value

    blob = json.dumps({"v": SCOPE_VERSION, **plain(parts)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheService:
    def __init__(self, spec: CacheSpec, pool: Callable[[], Awaitable[asyncpg.Pool]],
                 embed: Callable[[list[str]], Awaitable[np.ndarray]],
                 count: Callable[[str], None] = lambda result: None) -> None:
        self.spec, self.pool, self.embed, self.count = spec, pool, embed, count
        self._pending: set[asyncio.Task] = set()

    def bypass_reason(self, requested: bool | None, no_cache_header: bool, temperature: float,
                      structured: bool) -> str | None:
        """Why this request neither reads nor writes the cache (None: it uses it)."""
        if not self.spec.enabled:
            return "disabled"
        if requested is False or no_cache_header:
            return "requested"
        if temperature > self.spec.max_temperature and requested is not True:
            return "sampled"  # a draw at temperature > 0 is not the answer; `cache: true` asks for it anyway
        return None

    async def lookup(self, key: CacheKey) -> Lookup:
        """A hit, a miss (with the key to store the answer under), or a bypass when the cache cannot be read: the
        database or the embedder being down must not fail a route that needs neither."""
        started = time.perf_counter()
        try:
            return await self._lookup(key, started)
        except Exception as exc:  # noqa: BLE001 - see above; the request goes on uncached
            log.warning("cache: lookup failed, answering without it: %r", exc)
            self.count("unavailable")
            return Lookup("bypass", reason="unavailable", lookup_ms=elapsed_ms(started))

    async def _lookup(self, key: CacheKey, started: float) -> Lookup:
        pool = await self.pool()
        [embedding] = await self.embed([key.question])
        kb_version = await store.knowledge_version(pool) if key.retrieves else None
        require = kb_version if key.retrieves and self.spec.knowledge == "version" else None
        key = CacheKey(key.scope, key.model, key.question, key.exact, key.retrieves, embedding, kb_version)
        refused: str | None = None
        for entry in await store.nearest(pool, key.scope, embedding, require, self.spec.candidates):
            if entry.similarity < self.spec.min_similarity:
                break
            if key.exact:
                if entry.question != key.question:
                    continue
            else:
                verdict = compare(entry.question, key.question)
                if not verdict.same:
                    refused = refused or verdict.reason
                    self.count("guard_rejected")
                    continue
            await store.record_hit(pool, entry.id)
            self.count("hit")
            return Lookup("hit", key, entry.similarity, entry.id, entry.answer,
                          lookup_ms=elapsed_ms(started))
        self.count("miss")
        return Lookup("miss", key, reason=refused and f"guard: {refused}", lookup_ms=elapsed_ms(started))

    def store_later(self, key: CacheKey, answer: dict[str, Any], sources: dict[uuid.UUID, str]) -> None:
        """Store in the background: the client has its answer already, and a failure here only costs a miss."""
        task = asyncio.get_running_loop().create_task(self._store(key, answer, sources))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store(self, key: CacheKey, answer: dict[str, Any], sources: dict[uuid.UUID, str]) -> int | None:
        if key.retrieves and self.spec.knowledge == "sources" and not sources:
            return None  # nothing would ever invalidate it (a new document never does in this mode)
        try:
            entry = await store.store(await self.pool(), scope=key.scope, model=key.model, question=key.question,
                                      embedding=key.embedding, answer=answer, kb_version=key.kb_version,
                                      require_version=self.spec.knowledge == "version", sources=sources,
                                      ttl_s=self.spec.ttl_s, max_entries=self.spec.max_entries)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot store is a slower cache, not an error
            log.warning("cache: storing an answer failed: %r", exc)
            return None
        self.count("stored" if entry is not None else "not_stored")
        return entry

    async def stats(self) -> dict[str, int]:
        return await store.stats(await self.pool())

    async def clear(self) -> int:
        return await store.clear(await self.pool())

    async def forget_model(self, name: str) -> int:
        """An adapter was deleted: its entries (every version) go too."""
        return await store.remove_model(await self.pool(), name)

    async def drain(self) -> None:
        """Wait for background stores (tests and shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
