"""The knowledge base in Postgres: document upserts, listing, deletion, and hybrid search SQL.

Used by the online path (the ingress) and the offline path (the ingestion job) alike; embeddings are computed
by the caller, so this module needs only a pool. Writes are transactional: a changed document's chunks are
replaced in the same transaction that updates its row, so a search sees the old chunks or the new ones, never
a mix, and a failed batch writes nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Sequence

import asyncpg
import numpy as np

from cluster.content.chunking import Chunk
from cluster.content.parsing import NewDocument

UpsertStatus = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class PreparedDocument:
    """A document with its chunks embedded, ready to be written."""

    document: NewDocument
    chunks: Sequence[Chunk]
    embeddings: np.ndarray
    glossary: Sequence[tuple[str, str]] = ()  # (acronym, expansion) pairs it defines (cluster/content/glossary)


@dataclass(frozen=True)
class StoredDocument:
    id: uuid.UUID
    source: str
    title: str
    content_type: str
    content_hash: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UpsertResult:
    status: UpsertStatus
    document: StoredDocument


@dataclass(frozen=True)
class SearchFilters:
    sources: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Candidate:
    chunk_id: int
    document_id: uuid.UUID
    source: str
    title: str
    ordinal: int
    text: str
    metadata: dict[str, Any]
    vector_score: float | None  # cosine similarity, when the chunk was in the vector top-k
    keyword_score: float | None  # BM25, when it was in the keyword top-k
    fused_score: float
    similarity: float | None = None  # cosine similarity to the query for every hit (none in keyword mode)
    content_hash: str = ""  # the document's, when retrieved (a cached answer is stored only while it still is)


_DOC_COLUMNS = """d.id, d.source, d.title, d.content_type, d.content_hash, d.metadata, d.created_at, d.updated_at,
    (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunk_count"""


def _stored(row: asyncpg.Record) -> StoredDocument:
    meta = row["metadata"]
    return StoredDocument(
        id=row["id"], source=row["source"], title=row["title"], content_type=row["content_type"],
        content_hash=row["content_hash"], metadata=json.loads(meta) if isinstance(meta, str) else meta,
        chunk_count=row["chunk_count"], created_at=row["created_at"], updated_at=row["updated_at"])


async def content_hashes(pool: asyncpg.Pool, sources: Sequence[str]) -> dict[str, str]:
    """What is stored now for these sources: lets callers skip embedding unchanged documents."""
    rows = await pool.fetch("SELECT source, content_hash FROM documents WHERE source = ANY($1::text[])", list(sources))
    return {r["source"]: r["content_hash"] for r in rows}


async def get_by_source(conn: asyncpg.Pool | asyncpg.Connection, source: str) -> StoredDocument | None:
    row = await conn.fetchrow(f"SELECT {_DOC_COLUMNS} FROM documents d WHERE d.source = $1", source)
    return _stored(row) if row else None


async def write_documents(pool: asyncpg.Pool, prepared: Sequence[PreparedDocument],
                          unchanged: Sequence[str] = ()) -> list[UpsertResult]:
    """Create or replace every prepared document in ONE transaction; `unchanged` sources are only reported.

    Rows are locked in source order so concurrent writers of overlapping batches cannot deadlock; a
    document whose stored hash already equals the new one (written meanwhile by someone else) is left alone.
    """
    results: dict[str, UpsertResult] = {}
    async with pool.acquire() as conn, conn.transaction():
        for item in sorted(prepared, key=lambda p: p.document.source):
            doc = item.document
            current = await conn.fetchrow("SELECT id, content_hash FROM documents WHERE source = $1 FOR UPDATE",
                                          doc.source)
            if current is not None and current["content_hash"] == doc.content_hash:
                status: UpsertStatus = "unchanged"
                doc_id = current["id"]
            elif current is not None:
                status, doc_id = "updated", current["id"]
                await conn.execute(
                    "UPDATE documents SET title = $2, content_type = $3, content_hash = $4, content = $5, "
                    "metadata = $6::jsonb, updated_at = now() WHERE id = $1",
                    doc_id, doc.title, doc.content_type, doc.content_hash, doc.content, json.dumps(doc.metadata))
                await conn.execute("DELETE FROM chunks WHERE document_id = $1", doc_id)
                await conn.execute("DELETE FROM glossary WHERE document_id = $1", doc_id)
            else:
                status = "created"
                doc_id = await conn.fetchval(
                    "INSERT INTO documents (source, title, content_type, content_hash, content, metadata) "
                    "VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING id",
                    doc.source, doc.title, doc.content_type, doc.content_hash, doc.content, json.dumps(doc.metadata))
            if status != "unchanged":
                await conn.copy_records_to_table(
                    "chunks", columns=["document_id", "ordinal", "text", "token_count", "embedding"],
                    records=[(doc_id, c.ordinal, c.text, c.token_count, emb)
                             for c, emb in zip(item.chunks, item.embeddings)])
                await conn.executemany("INSERT INTO glossary (document_id, acronym, expansion) VALUES ($1, $2, $3)",
                                       [(doc_id, a, e) for a, e in dict.fromkeys(item.glossary)])
            stored = await get_by_source(conn, doc.source)
            assert stored is not None
            results[doc.source] = UpsertResult(status, stored)
        for source in unchanged:
            stored = await get_by_source(conn, source)
            if stored is not None:
                results[source] = UpsertResult("unchanged", stored)
    order = [p.document.source for p in prepared] + list(unchanged)
    return [results[s] for s in order if s in results]


async def list_documents(pool: asyncpg.Pool, limit: int, offset: int) -> tuple[int, list[StoredDocument]]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval("SELECT count(*) FROM documents")
        rows = await conn.fetch(f"SELECT {_DOC_COLUMNS} FROM documents d ORDER BY d.created_at, d.id "
                                "LIMIT $1 OFFSET $2", limit, offset)
    return total, [_stored(r) for r in rows]


async def get_document(pool: asyncpg.Pool, doc_id: uuid.UUID) -> StoredDocument | None:
    row = await pool.fetchrow(f"SELECT {_DOC_COLUMNS} FROM documents d WHERE d.id = $1", doc_id)
    return _stored(row) if row else None


async def document_chunks(pool: asyncpg.Pool, doc_id: uuid.UUID) -> list[Chunk]:
    rows = await pool.fetch("SELECT ordinal, text, token_count FROM chunks WHERE document_id = $1 ORDER BY ordinal",
                            doc_id)
    return [Chunk(r["ordinal"], r["text"], r["token_count"]) for r in rows]


async def delete_document(pool: asyncpg.Pool, doc_id: uuid.UUID) -> bool:
    """Delete a document and (by cascade, in the same statement) all its chunks."""
    return await pool.execute("DELETE FROM documents WHERE id = $1", doc_id) == "DELETE 1"


async def counts(conn: asyncpg.Pool | asyncpg.Connection) -> tuple[int, int]:
    """(documents, chunks) in the knowledge base."""
    row = await conn.fetchrow("SELECT (SELECT count(*) FROM documents) AS d, (SELECT count(*) FROM chunks) AS c")
    return row["d"], row["c"]


# ------------------------------------------------------------------------------------------------ search

async def glossary_lookup(pool: asyncpg.Pool | asyncpg.Connection, acronyms: Sequence[str],
                          text: str) -> dict[str, str]:
    """acronym -> expansion for the given acronyms and for every stored expansion the text contains (so both
    "PAM" and "pluggable authentication modules" find the pair); where documents disagree, the expansion most
    documents give."""
    rows = await pool.fetch(
        """SELECT DISTINCT ON (acronym) acronym, expansion FROM (
               SELECT acronym, lower(expansion) AS expansion, count(*) AS documents FROM glossary
               WHERE acronym = ANY($1::text[]) OR strpos(lower($2), lower(expansion)) > 0
               GROUP BY acronym, lower(expansion)) g
           ORDER BY acronym, documents DESC, expansion""", list(acronyms), text)
    return {r["acronym"]: r["expansion"] for r in rows}


def _filter_sql(filters: SearchFilters, first_param: int) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if filters.sources:
        params.append(list(filters.sources))
        clauses.append(f"d.source = ANY(${first_param + len(params) - 1}::text[])")
    if filters.metadata:
        params.append(json.dumps(filters.metadata))
        clauses.append(f"d.metadata @> ${first_param + len(params) - 1}::jsonb")
    return (" AND ".join(clauses) if clauses else "TRUE"), params


SearchMode = Literal["hybrid", "vector", "keyword"]


@dataclass(frozen=True)
class Fusion:
    """How the two rankings become one (the profile's `retrieval`, cluster/profiles.py, says why these values).

    Weighted reciprocal-rank fusion: a chunk scores sum(weight / (rrf_k + rank)) over the rankings that found
    it. `max_per_document` then lets at most that many chunks of one document into the first places, so a long
    document's many similar chunks cannot crowd out other documents (the rest follow, in fused order).
    """

    mode: SearchMode = "hybrid"
    rrf_k: int = 60
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    max_per_document: int = 0  # 0: no cap
    bm25_k1: float = 1.2
    bm25_b: float = 0.75


# $1 query embedding, $2 query text, $3 k; a chunk's rank in each list is its row number.
_VECTOR_CTE = """vec AS (
    SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank FROM (
        SELECT c.id, 1 - (c.embedding <=> $1) AS score FROM chunks c {join} {where}
        ORDER BY c.embedding <=> $1 LIMIT $3
    ) v
)"""
# BM25 over the postings of the query's terms (migration 004): IDF from the corpus-wide chunk count and each
# term's document frequency, length-normalised by the chunk's term count against the mean. $4 k1, $5 b.
_KEYWORD_CTE = """qt AS (
    SELECT DISTINCT term FROM ragtune_terms($2)
), stats AS (
    SELECT coalesce(sum(chunks), 0)::float8 AS n,
           greatest(coalesce(sum(terms)::float8 / nullif(sum(chunks), 0), 1), 1) AS avgdl FROM term_stats
), postings AS (
    SELECT p.term, p.chunk_id, p.document_id, p.tf, p.chunk_len FROM chunk_terms p JOIN qt USING (term)
), idf AS (
    SELECT term, ln(1 + (s.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf FROM postings CROSS JOIN stats s
    GROUP BY term, s.n
), kw AS (
    SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank FROM (
        SELECT p.chunk_id AS id,
               sum(i.idf * p.tf * ($4 + 1) / (p.tf + $4 * (1 - $5 + $5 * p.chunk_len / s.avgdl))) AS score
        FROM postings p JOIN idf i USING (term) CROSS JOIN stats s {join} {where}
        GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT $3
    ) k
)"""


def hybrid_search_sql(filters: SearchFilters, mode: SearchMode = "hybrid") -> tuple[str, list[Any]]:
    """Vector top-k (HNSW, cosine) and BM25 top-k, fused by weighted reciprocal rank with a per-document cap,
    in one statement; `mode` vector or keyword runs one side alone (what fusion is measured against).

    Parameters: $1 query embedding, $2 query text, $3 k, $4 BM25 k1, $5 BM25 b, $6 RRF constant, $7 vector
    weight, $8 keyword weight, $9 per-document cap (0: none), then the filter values (returned).
    """
    where, params = _filter_sql(filters, 10)
    ctes = []
    if mode != "keyword":
        ctes.append(_VECTOR_CTE.format(join="JOIN documents d ON d.id = c.document_id" if params else "",
                                       where=f"WHERE {where}" if params else ""))
    if mode != "vector":
        ctes.append(_KEYWORD_CTE.format(join="JOIN documents d ON d.id = p.document_id" if params else "",
                                        where=f"WHERE {where}" if params else ""))
    vec = "vec" if mode != "keyword" else "(SELECT NULL::bigint AS id, NULL::float8 AS score, NULL::bigint AS rank " \
                                          "WHERE false) vec"
    kw = "kw" if mode != "vector" else "(SELECT NULL::bigint AS id, NULL::float8 AS score, NULL::bigint AS rank " \
                                       "WHERE false) kw"
    # Every parameter typed once, whichever sides run (a one-sided statement leaves some unused).
    args = "args AS (SELECT $1::vector, $2::text, $3::int, $4::float8, $5::float8, $6::float8, $7::float8, " \
           "$8::float8, $9::int)"
    similarity = "1 - (c.embedding <=> $1)" if mode != "keyword" else "NULL::float8"
    sql = f"""
WITH {", ".join([args, *ctes])}, fused AS (
    SELECT coalesce(vec.id, kw.id) AS id, vec.score AS vector_score, kw.score AS keyword_score,
           coalesce($7 / ($6 + vec.rank), 0) + coalesce($8 / ($6 + kw.rank), 0) AS fused_score
    FROM {vec} FULL OUTER JOIN {kw} ON kw.id = vec.id
), placed AS (
    SELECT f.*, row_number() OVER (PARTITION BY c.document_id ORDER BY f.fused_score DESC, f.id) AS nth
    FROM fused f JOIN chunks c ON c.id = f.id
)
SELECT c.id AS chunk_id, c.document_id, d.source, d.title, d.metadata, d.content_hash, c.ordinal, c.text,
       p.vector_score, p.keyword_score, p.fused_score, {similarity} AS similarity
FROM placed p
JOIN chunks c ON c.id = p.id
JOIN documents d ON d.id = c.document_id
ORDER BY ($9 > 0 AND p.nth > $9), p.fused_score DESC, c.id
LIMIT $3"""
    return sql, params


async def hybrid_search(pool: asyncpg.Pool, embedding: np.ndarray, text: str, top_k: int,
                        fusion: Fusion = Fusion(), filters: SearchFilters = SearchFilters()) -> list[Candidate]:
    sql, filter_params = hybrid_search_sql(filters, fusion.mode)
    rows = await pool.fetch(sql, np.asarray(embedding, dtype=np.float32), text, top_k, fusion.bm25_k1, fusion.bm25_b,
                            fusion.rrf_k, fusion.vector_weight, fusion.keyword_weight, fusion.max_per_document,
                            *filter_params)
    return [Candidate(
        chunk_id=r["chunk_id"], document_id=r["document_id"], source=r["source"], title=r["title"],
        ordinal=r["ordinal"], text=r["text"],
        metadata=json.loads(r["metadata"]) if isinstance(r["metadata"], str) else r["metadata"],
        vector_score=r["vector_score"], keyword_score=r["keyword_score"], fused_score=float(r["fused_score"]),
        similarity=r["similarity"], content_hash=r["content_hash"],
    ) for r in rows]
