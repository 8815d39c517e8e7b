"""Calling the model deployments from any process (the ingress, the ingestion job): lists are cut into slices of
at most the deployment's batch size and the slices sent concurrently, so Serve's dynamic batcher fills its
batches across replicas."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


async def in_slices(items: Sequence[T], size: int, call: Callable[[list[T]], Awaitable[list[Any]]]) -> list[Any]:
    """Call `call` on consecutive slices of at most `size` items, concurrently, and concatenate in order."""
    parts = await asyncio.gather(*(call(list(items[i:i + size])) for i in range(0, len(items), size)))
    return [x for part in parts for x in part]


class EmbedderClient:
    """The Embedder deployment as `embed(texts) -> (n, dim) array`; `embed_queries` remembers recent queries."""

    def __init__(self, handle: Any, max_batch_size: int, remembered_queries: int = 2048) -> None:
        self.handle, self.max_batch_size = handle, max_batch_size
        self.remembered_queries = remembered_queries
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = await in_slices(texts, self.max_batch_size, lambda part: self.handle.embed.remote(part))
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """`embed` for questions, with the last `remembered_queries` kept: a request embeds its question for the
        semantic cache and again for retrieval, and an embedding depends on nothing but the text."""
        known = {t: self._queries[t] for t in texts if t in self._queries}  # before any await: others may evict
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            known.update(zip(missing, await self.embed(missing)))
        for text in dict.fromkeys(texts):
            self._queries[text] = known[text]
            self._queries.move_to_end(text)
        while len(self._queries) > self.remembered_queries:
            self._queries.popitem(last=False)
        rows = [known[t] for t in texts]
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    async def token_counts(self, texts: Sequence[str]) -> list[int]:
        return await self.handle.tokenize_counts.remote(list(texts))


class RerankerClient:
    """The Reranker deployment as `score(query, passages) -> relevance per passage`."""

    def __init__(self, handle: Any, max_batch_size: int) -> None:
        self.handle, self.max_batch_size = handle, max_batch_size

    async def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        pairs = [(query, p) for p in passages]
        scores = await in_slices(pairs, self.max_batch_size, lambda part: self.handle.score.remote(part))
        return np.asarray(scores, dtype=np.float32)
