"""The knowledge pipelines behind the ingress: ingest (chunk -> embed -> write) and search
(embed -> hybrid SQL -> rerank). Each hop is one deployment-handle call or one SQL statement, timed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Sequence

import asyncpg
import numpy as np
from ray.serve.handle import DeploymentHandle

from cluster.store import knowledge
from cluster.content.parsing import Chunk, Chunker, NewDocument, build_document
from cluster.store.knowledge import Candidate, PreparedDocument, SearchFilters, UpsertResult
from cluster.settings import Settings
from serve.deployments.torch_runtime import in_slices


@dataclass(frozen=True)
class RankedHit:
    candidate: Candidate
    rerank_score: float | None


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[RankedHit]
    embed_ms: float
    search_ms: float
    rerank_ms: float
    total_ms: float


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


class EmbedderClient:
    """Slices text lists to the deployment's batch size and fans the slices out concurrently."""

    def __init__(self, handle: DeploymentHandle, max_batch_size: int) -> None:
        self.handle, self.max_batch_size = handle, max_batch_size

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = await in_slices(texts, self.max_batch_size, lambda part: self.handle.embed.remote(part))
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


class RerankerClient:
    def __init__(self, handle: DeploymentHandle, max_batch_size: int) -> None:
        self.handle, self.max_batch_size = handle, max_batch_size

    async def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        pairs = [(query, p) for p in passages]
        scores = await in_slices(pairs, self.max_batch_size, lambda part: self.handle.score.remote(part))
        return np.asarray(scores, dtype=np.float32)


class KnowledgeService:
    def __init__(self, settings: Settings, embedder: EmbedderClient, reranker: RerankerClient,
                 chunker: Chunker) -> None:
        self.settings = settings
        self.embedder = embedder
        self.reranker = reranker
        self.chunker = chunker

    def prepare(self, content: str, **fields: Any) -> tuple[NewDocument, list[Chunk]]:
        """Validate, parse and chunk one document (CPU work: callers run it in a thread)."""
        return build_document(self.chunker, content, max_chunks=self.settings.ingest.max_chunks_per_document,
                              **fields)

    async def ingest(self, pool: asyncpg.Pool, documents: Sequence[tuple[NewDocument, list[Chunk]]]
                     ) -> list[UpsertResult]:
        """Embed what changed, then write the whole batch in one transaction."""
        sources = [d.source for d, _ in documents]
        if len(set(sources)) != len(sources):
            dup = next(s for s in sources if sources.count(s) > 1)
            raise ValueError(f"source {dup!r} appears more than once in this request")
        stored = await knowledge.content_hashes(pool, sources)
        changed = [(d, c) for d, c in documents if stored.get(d.source) != d.content_hash]
        unchanged = [d.source for d, _ in documents if stored.get(d.source) == d.content_hash]
        texts = [chunk.text for _, chunks in changed for chunk in chunks]
        vectors = await self.embedder.embed(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        prepared, start = [], 0
        for doc, chunks in changed:
            prepared.append(PreparedDocument(doc, chunks, vectors[start:start + len(chunks)]))
            start += len(chunks)
        return await knowledge.write_documents(pool, prepared, unchanged)

    async def search(self, pool: asyncpg.Pool, query: str, top_k: int, top_n: int, rerank: bool,
                     filters: SearchFilters) -> SearchOutcome:
        started = time.perf_counter()
        vector = (await self.embedder.embed([query]))[0]
        embed_ms = _ms(started)
        t = time.perf_counter()
        candidates = await knowledge.hybrid_search(pool, vector, query, top_k, self.settings.search.rrf_k, filters)
        search_ms = _ms(t)
        t = time.perf_counter()
        if rerank and candidates:
            scores = await self.reranker.score(query, [c.text for c in candidates])
            order = np.argsort(-scores, kind="stable")[:top_n]
            hits = [RankedHit(candidates[i], float(scores[i])) for i in order]
        else:
            hits = [RankedHit(c, None) for c in candidates[:top_n]]
        rerank_ms = _ms(t) if rerank else 0.0
        return SearchOutcome(hits, embed_ms, search_ms, rerank_ms, _ms(started))

    async def warm(self) -> None:
        await asyncio.gather(self.embedder.embed(["warm-up"]), self.reranker.score("warm-up", ["warm-up"]))
