"""The knowledge pipelines behind the routers: ingest (the one pipeline in `cluster.content.ingest`, embedding
through the Embedder deployment), search (embed -> hybrid SQL -> rerank), the document store, and the raw
embeddings and rerank APIs. Each hop is one deployment-handle call or one SQL statement, timed."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from cluster.content.chunking import Chunk
from cluster.content.ingest import ChunkedDocument, Ingester
from cluster.content.parsing import DocumentError, DocumentTooLarge, NotText, decode_text
from cluster.models.rerank_gate import RerankDecision, rerank_decision
from cluster.ops.handles import EmbedderClient, RerankerClient
from cluster.settings import SearchLimits, Settings
from cluster.store import knowledge
from cluster.store.db import LazyPool
from cluster.store.knowledge import Candidate, Fusion, SearchFilters, SearchMode, StoredDocument, UpsertResult
from serve.schemas.documents import DocumentIn
from serve.services import rewriting
from serve.services.errors import ApiError, bounded, invalid, not_found
from serve.services.rewriting import Rewritten
from serve.services.timing import elapsed_ms

TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-rst", "text/html"})


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
    queries: tuple[str, ...] = ()  # what was searched (the query, or its rewrites)
    rewrites: tuple[str, ...] = ()  # the rewriting steps that changed it
    rewrite_ms: float = 0.0


@dataclass(frozen=True)
class UploadedFile:
    name: str
    data: bytes
    content_type: str | None


def retrieval_bounds(limits: SearchLimits, top_k: int | None, top_n: int | None, default_k: int,
                     default_n: int) -> tuple[int, int]:
    """(top_k, top_n) with their defaults, refused (400) beyond the limits or when top_n > top_k. Search and the
    retrieving generation routes both check here."""
    top_k = bounded(top_k, default_k, limits.max_top_k, "top_k")
    top_n = bounded(top_n, min(default_n, top_k), limits.max_top_n, "top_n")
    if top_n > top_k:
        raise invalid(f"top_n ({top_n}) must not exceed top_k ({top_k})", param="top_n")
    return top_k, top_n


def fuse_rankings(rankings: Sequence[Sequence[Candidate]], fusion: Fusion, top_k: int) -> list[Candidate]:
    """One ranking from several (a decomposed question's parts): reciprocal-rank fusion with the profile's
    constant, then the same per-document cap the SQL applies to each, cut to top_k."""
    scores: dict[int, float] = {}
    first: dict[int, Candidate] = {}
    for ranking in rankings:
        for rank, c in enumerate(ranking, start=1):
            scores[c.chunk_id] = scores.get(c.chunk_id, 0.0) + 1.0 / (fusion.rrf_k + rank)
            first.setdefault(c.chunk_id, c)
    ordered = sorted(first.values(), key=lambda c: (-scores[c.chunk_id], c.chunk_id))
    seen: dict[Any, int] = {}
    placed = []
    for c in ordered:
        seen[c.document_id] = seen.get(c.document_id, 0) + 1
        placed.append((fusion.max_per_document > 0 and seen[c.document_id] > fusion.max_per_document, c))
    return [replace(c, fused_score=scores[c.chunk_id]) for over, c in sorted(placed, key=lambda p: p[0])][:top_k]


def check_query(text: str, limits: SearchLimits, param: str) -> None:
    if len(text) > limits.max_query_chars:
        raise invalid(f"{param} is {len(text)} characters; retrieval takes at most {limits.max_query_chars}",
                      param=param, code="query_too_long")


class KnowledgeService:
    def __init__(self, settings: Settings, db: LazyPool, embedder: EmbedderClient, reranker: RerankerClient,
                 ingester: Ingester) -> None:
        self.settings = settings
        self.db = db
        self.embedder = embedder
        self.reranker = reranker
        self._rerank_default: RerankDecision | None = None  # decided on first use (reads the model's manifest)
        self.ingester = ingester

    # ------------------------------------------------------------------------------------------ ingest

    def check_count(self, n: int) -> None:
        limit = self.settings.ingest.max_documents_per_request
        if n > limit:
            raise ApiError(413, f"{n} documents in one request; the limit is {limit}", param="documents",
                           code="too_many_documents")

    async def _prepare(self, i: int, item: DocumentIn) -> ChunkedDocument:
        name = item.source or f"documents[{i}]"
        try:
            return await asyncio.to_thread(self.ingester.prepare, item.content, source=item.source, name=name,
                                           title=item.title, content_type=item.content_type, metadata=item.metadata)
        except DocumentTooLarge as exc:
            raise ApiError(413, str(exc), param="content", code="document_too_large") from None
        except DocumentError as exc:
            raise invalid(f"{name}: {exc}", param=f"documents[{i}]", code="invalid_document") from None

    async def ingest(self, items: Sequence[DocumentIn]) -> list[UpsertResult]:
        """Add or replace documents: all of them in one transaction, or none."""
        self.check_count(len(items))
        prepared = [await self._prepare(i, item) for i, item in enumerate(items)]
        try:
            return await self.ingester.write(await self.db.get(), prepared)
        except ValueError as exc:
            raise invalid(str(exc), param="documents") from None

    async def ingest_files(self, files: Sequence[UploadedFile], metadata: dict[str, Any]) -> list[UpsertResult]:
        """Uploaded files (the file name is the source): too large is a 413, not text a 415."""
        self.check_count(len(files))
        items = []
        for f in files:
            if "\x00" in f.name:
                raise ApiError(400, "a file name contains a NUL character", param="files", code="invalid_value")
            try:
                self.ingester.check_size(len(f.data), f.name)
                text = decode_text(f.data, f.name)
            except DocumentTooLarge as exc:
                raise ApiError(413, str(exc), param="content", code="document_too_large") from None
            except NotText as exc:
                raise ApiError(415, str(exc), param="files", code="unsupported_media") from None
            kind = f.content_type if f.content_type in TEXT_TYPES else None
            items.append(DocumentIn(content=text, source=f.name, content_type=kind, metadata=metadata))
        return await self.ingest(items)

    # ---------------------------------------------------------------------------------------- documents

    async def list_documents(self, limit: int, offset: int) -> tuple[int, list[StoredDocument]]:
        return await knowledge.list_documents(await self.db.get(), limit, offset)

    async def get_document(self, document_id: uuid.UUID, with_chunks: bool) -> tuple[StoredDocument, list[Chunk]]:
        pool = await self.db.get()
        doc = await knowledge.get_document(pool, document_id)
        if doc is None:
            raise not_found(f"no document with id {document_id}", param="document_id")
        return doc, (await knowledge.document_chunks(pool, document_id) if with_chunks else [])

    async def delete_document(self, document_id: uuid.UUID) -> None:
        if not await knowledge.delete_document(await self.db.get(), document_id):
            raise not_found(f"no document with id {document_id}", param="document_id")

    # ------------------------------------------------------------------------------------------- search

    def bounds(self, top_k: int | None, top_n: int | None) -> tuple[int, int]:
        """/v1/search's: the profile's candidates (as the RAG route fuses), the search page size."""
        limits = self.settings.search
        return retrieval_bounds(limits, top_k, top_n, self.settings.profile_spec.retrieval.top_k,
                                limits.default_top_n)

    def rerank_choice(self, requested: bool | None) -> tuple[bool, str]:
        """Whether to rerank, and why: the request's choice, or the profile's decision (rerank_gate) with its
        reason."""
        if requested is not None:
            return requested, "requested"
        if self._rerank_default is None:
            self._rerank_default = rerank_decision(self.settings)
        return self._rerank_default.rerank, self._rerank_default.reason

    def fusion(self, mode: SearchMode, per_document_cap: bool = True) -> Fusion:
        """The profile's fusion (cluster/profiles.FusionSpec) for one search mode; a prompt's context takes the
        best chunks whatever their document (no cap)."""
        spec = self.settings.profile_spec.retrieval.fusion
        return Fusion(mode=mode, **spec.model_dump(exclude={"max_per_document"}),
                      max_per_document=spec.max_per_document if per_document_cap else 0)

    def rewrite_choice(self, requested: bool | None) -> bool:
        return self.settings.profile_spec.retrieval.rewrite if requested is None else requested

    async def rewrite(self, user_turns: Sequence[str]) -> Rewritten:
        pool = await self.db.get()
        return await rewriting.rewrite(user_turns, lambda acronyms, text: knowledge.glossary_lookup(
            pool, acronyms, text), self.settings.search.max_query_chars)

    async def search(self, query: str, top_k: int, top_n: int, rerank: bool, filters: SearchFilters,
                     mode: SearchMode = "hybrid", rewrite: bool = False, history: Sequence[str] = (),
                     per_document_cap: bool = True) -> SearchOutcome:
        """Rewrite (with the user's earlier turns, `history`), embed every query in one call, search each, fuse
        the rankings of a decomposed question's parts, rerank against the whole question."""
        started = time.perf_counter()
        rewritten = await self.rewrite([*history, query]) if rewrite else Rewritten((query,))
        rewrite_ms = elapsed_ms(started) if rewrite else 0.0
        t = time.perf_counter()
        queries = list(rewritten.queries)
        # keyword-only search needs no embedding (the SQL still takes a vector parameter, unused)
        vectors = await self.embedder.embed_queries(queries) if mode != "keyword" else \
            [self._no_vector()] * len(queries)
        embed_ms = elapsed_ms(t) if mode != "keyword" else 0.0
        t = time.perf_counter()
        pool, fusion = await self.db.get(), self.fusion(mode, per_document_cap)
        rankings = await asyncio.gather(*(knowledge.hybrid_search(pool, v, q, top_k, fusion, filters)
                                          for q, v in zip(queries, vectors)))
        candidates = rankings[0] if len(rankings) == 1 else fuse_rankings(rankings, fusion, top_k)
        search_ms = elapsed_ms(t)
        t = time.perf_counter()
        if rerank and candidates:
            scores = await self.reranker.score(" ".join(queries), [c.text for c in candidates])
            order = np.argsort(-scores, kind="stable")[:top_n]
            hits = [RankedHit(candidates[i], float(scores[i])) for i in order]
        else:
            hits = [RankedHit(c, None) for c in candidates[:top_n]]
        rerank_ms = elapsed_ms(t) if rerank else 0.0
        return SearchOutcome(hits, embed_ms, search_ms, rerank_ms, elapsed_ms(started), rewritten.queries,
                             rewritten.rewrites, rewrite_ms)

    def _no_vector(self) -> np.ndarray:
        return np.zeros(self.settings.profile_spec.embedder.dim, dtype=np.float32)

    # ------------------------------------------------------------------------------ embeddings and rerank

    async def embeddings(self, texts: list[str], base64_floats: bool) -> tuple[list[list[float] | str], int]:
        """One vector per text (a list of floats, or OpenAI's base64 of little-endian float32), and the token count."""
        if len(texts) > 2048:
            raise invalid("at most 2048 inputs per request", param="input")
        vectors, tokens = await asyncio.gather(self.embedder.embed(texts), self.embedder.token_counts(texts))
        data = [base64.b64encode(v.astype(np.float32).tobytes()).decode() if base64_floats else v.tolist()
                for v in vectors]
        return data, sum(tokens)

    async def rerank(self, query: str, texts: list[str], top_n: int | None) -> list[tuple[int, float]]:
        """(index into texts, relevance) for the top_n most relevant, best first (ties keep the input order)."""
        if len(texts) > 1000:
            raise invalid("at most 1000 documents per request", param="documents")
        top_n = len(texts) if top_n is None else min(top_n, len(texts))
        scores = await self.reranker.score(query, texts)
        return [(int(i), float(scores[i])) for i in np.argsort(-scores, kind="stable")[:top_n]]

    async def warm(self) -> None:
        await asyncio.gather(self.embedder.embed(["warm-up"]), self.reranker.score("warm-up", ["warm-up"]))
