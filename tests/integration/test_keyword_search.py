"""The keyword side and the fusion of hybrid search, and the glossary query rewriting reads, in a private
embedded Postgres (no cluster): BM25 scores equal a textbook BM25 computed here over the same terms, the corpus
statistics follow every write, identifiers match exactly, the fused ranking finds what each side alone misses,
and a document's acronyms live and die with it."""

from __future__ import annotations

import math
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import numpy as np
import pytest

from cluster.content.chunking import Chunk
from cluster.content.glossary import acronyms
from cluster.content.parsing import NewDocument
from cluster.store import db, knowledge
from cluster.store.knowledge import Fusion, PreparedDocument, SearchFilters

DIM = 8


def _unit(*hot: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[list(hot)] = 1.0
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    pgdata = Path(tempfile.mkdtemp(prefix="kw-", dir="/tmp")) / "pg"
    url = db.start_embedded(pgdata)
    pool = await db.connect(url, DIM, "test-embedder")
    try:
        yield pool
    finally:
        await pool.close()
        db.stop_embedded(pgdata)


async def _write(pool: asyncpg.Pool, source: str, chunks: list[tuple[str, np.ndarray]],
                 metadata: dict | None = None) -> None:
    content = "\n\n".join(text for text, _ in chunks)
    doc = NewDocument(source=source, title=source, content_type="text/plain", content=content,
                      content_hash=uuid.uuid4().hex, metadata=metadata or {})
    await knowledge.write_documents(pool, [PreparedDocument(
        doc, [Chunk(i, text, len(text.split())) for i, (text, _) in enumerate(chunks)],
        np.stack([v for _, v in chunks]))])


async def _clear(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM documents")


async def _textbook_bm25(pool: asyncpg.Pool, query: str, k1: float = 1.2, b: float = 0.75) -> dict[int, float]:
    """BM25 (Robertson; IDF ln(1 + (N - df + 0.5) / (df + 0.5))) in Python over every chunk's terms as
    ragtune_terms makes them, with no index, postings table or statistics table involved."""
    rows = await pool.fetch("SELECT id, text FROM chunks")
    terms = {r["id"]: Counter({t["term"]: t["tf"] for t in await pool.fetch(
        "SELECT term, tf FROM ragtune_terms($1)", r["text"])}) for r in rows}
    n = len(terms)
    avgdl = sum(sum(c.values()) for c in terms.values()) / n
    wanted = {r["term"] for r in await pool.fetch("SELECT term FROM ragtune_terms($1)", query)}
    scores = {}
    for chunk_id, tf in terms.items():
        length, score = sum(tf.values()), 0.0
        for term in wanted & tf.keys():
            df = sum(1 for c in terms.values() if term in c)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * length / avgdl))
        if score:
            scores[chunk_id] = score
    return scores


CORPUS = {
    "cache.txt": ["functools.lru_cache memoizes a function: call results are kept in a least recently used cache.",
                  "The cache size is bounded by maxsize; set it to None for an unbounded cache of results."],
    "grep.txt": ["grep searches files for lines matching a pattern and prints each matching line.",
                 "The --threshold option is not one of grep's; -v inverts the sense of matching to select "
                 "non-matching lines.", "Exit status is 0 if a line is selected and 1 if no lines were selected."],
    "runner.txt": ["A runner runs jobs: running a job twice runs its steps again, and every run is logged."],
    "lru.txt": ["An LRU list orders pages by recent use; the cache evicts the least recently used page first. " * 3],
}


async def _seed(pool: asyncpg.Pool) -> None:
    await _clear(pool)
    for i, (source, texts) in enumerate(CORPUS.items()):
        await _write(pool, source, [(t, _unit(i, (i + j + 1) % DIM)) for j, t in enumerate(texts)])


@pytest.mark.parametrize("query", ["lru_cache maxsize", "Which option selects non-matching lines?",
                                   "how often does it run", "least recently used cache eviction", "exit status"])
async def test_keyword_scores_are_textbook_bm25(pool: asyncpg.Pool, query: str) -> None:
    await _seed(pool)
    got = await knowledge.hybrid_search(pool, _unit(0), query, 50, Fusion(mode="keyword"))
    expected = await _textbook_bm25(pool, query)
    assert expected, "the query matches something"
    assert {c.chunk_id: pytest.approx(c.keyword_score, rel=1e-9) for c in got} == \
        {k: pytest.approx(v, rel=1e-9) for k, v in expected.items()}
    assert [c.keyword_score for c in got] == sorted((c.keyword_score for c in got), reverse=True)
    assert all(c.vector_score is None and c.similarity is None for c in got)


async def test_statistics_follow_updates_and_deletes(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    recount = """SELECT (SELECT count(*) FROM chunks) AS n, (SELECT sum(tf) FROM chunk_terms) AS terms,
                        (SELECT sum(chunks) FROM term_stats) AS stat_n, (SELECT sum(terms) FROM term_stats) AS stat_terms,
                        (SELECT count(*) FROM chunk_terms t LEFT JOIN chunks c ON c.id = t.chunk_id
                         WHERE c.id IS NULL) AS orphans"""
    before = await pool.fetchrow(recount)
    assert before["n"] == before["stat_n"] == 7 and before["terms"] == before["stat_terms"] > 0
    await _write(pool, "grep.txt", [("grep prints matching lines.", _unit(1))])  # 3 chunks -> 1
    await pool.execute("DELETE FROM documents WHERE source = 'runner.txt'")
    after = await pool.fetchrow(recount)
    assert after["n"] == after["stat_n"] == 4 and after["terms"] == after["stat_terms"] < before["terms"]
    assert after["orphans"] == 0
    assert await knowledge.hybrid_search(pool, _unit(0), "runs running runner", 10, Fusion(mode="keyword")) == []
    assert await _textbook_bm25(pool, "selects non-matching lines") == {
        c.chunk_id: pytest.approx(c.keyword_score) for c in await knowledge.hybrid_search(
            pool, _unit(0), "selects non-matching lines", 10, Fusion(mode="keyword"))}


async def test_terms_stem_words_and_keep_identifiers_whole(pool: asyncpg.Pool) -> None:
    terms = {r["term"] for r in await pool.fetch(
        "SELECT term FROM ragtune_terms('Running os.path.join with --threshold and lru_cache, e.g. -v')")}
    assert {"run", "os", "path", "join", "threshold", "lru", "cach"} <= terms  # stems, identifiers split
    assert {"=os.path.join", "=--threshold", "=lru_cache", "=-v"} <= terms  # and kept whole
    assert not {t for t in terms if t.startswith("=") and t[1:] in {"running", "with", "and"}}
    await _seed(pool)
    # "lru_cache" exactly: the functools chunk, above the LRU page that says "LRU" and "cache" more often
    hits = await knowledge.hybrid_search(pool, _unit(7), "lru_cache", 10, Fusion(mode="keyword"))
    assert hits[0].source == "cache.txt" and hits[0].ordinal == 0
    assert "lru.txt" in {h.source for h in hits}  # the parts still match, lower
    runs = await knowledge.hybrid_search(pool, _unit(7), "runs", 10, Fusion(mode="keyword"))
    assert [h.source for h in runs] == ["runner.txt"]  # "runs" matches "running", "runner" by stem only if equal
    assert await knowledge.hybrid_search(pool, _unit(7), "the of and", 10, Fusion(mode="keyword")) == []


async def test_fusion_finds_what_each_side_misses_and_caps_chunks_per_document(pool: asyncpg.Pool) -> None:
    await _clear(pool)
    # One long document whose chunks all look like the query to the embedder (vector side)...
    await _write(pool, "long.txt", [(f"Part {i} of a long guide about configuring caches.", _unit(0, 1))
                                    for i in range(8)])
    # ...a document that only the keyword side finds (the identifier), and one only the vector side finds.
    await _write(pool, "ident.txt", [("Set cache_ttl_seconds to expire entries.", _unit(5))])
    await _write(pool, "meaning.txt", [("How long items stay before they are dropped.", _unit(0, 1, 2))])
    query, vector = "cache_ttl_seconds expiry", _unit(0, 1, 2)
    fusion = Fusion(max_per_document=2)

    def sources(hits: list[knowledge.Candidate]) -> list[str]:
        return [h.source for h in hits[:5]]

    vec = sources(await knowledge.hybrid_search(pool, vector, query, 20, Fusion(mode="vector", max_per_document=0)))
    kw = sources(await knowledge.hybrid_search(pool, vector, query, 20, Fusion(mode="keyword")))
    fused = sources(await knowledge.hybrid_search(pool, vector, query, 20, fusion))
    assert "ident.txt" not in vec and "meaning.txt" not in kw
    assert {"ident.txt", "meaning.txt"} <= set(fused)
    # capped: two of the long document's chunks, then the other documents, then its other six chunks
    every = await knowledge.hybrid_search(pool, vector, query, 20, fusion)
    assert sorted(h.source for h in every[:4]) == ["ident.txt", "long.txt", "long.txt", "meaning.txt"]
    assert len(every) == 10 and [h.source for h in every[4:]] == ["long.txt"] * 6
    uncapped = sources(await knowledge.hybrid_search(pool, vector, query, 20, Fusion(max_per_document=0)))
    assert uncapped[:4].count("long.txt") > 2
    # weights: keyword weight 0 is the vector order, vector weight 0 the keyword order
    only_vec = await knowledge.hybrid_search(pool, vector, query, 20, Fusion(keyword_weight=0, max_per_document=0))
    assert [h.chunk_id for h in only_vec if h.vector_score is not None] == \
        [h.chunk_id for h in await knowledge.hybrid_search(pool, vector, query, 20, Fusion(mode="vector"))]
    # filters apply to both sides
    filtered = await knowledge.hybrid_search(pool, vector, query, 20, fusion, SearchFilters(sources=("ident.txt",)))
    assert {h.source for h in filtered} == {"ident.txt"}


async def test_migration_indexes_chunks_written_before_it(tmp_path: Path) -> None:
    """A knowledge base from before migrations 004 and 005: its chunks are indexed and its documents' acronyms
    mined by the migrations themselves."""
    pgdata = Path(tempfile.mkdtemp(prefix="kwm-", dir="/tmp")) / "pg"
    url = db.start_embedded(pgdata)
    try:
        conn = await asyncpg.connect(url)
        try:
            older = [m for m in db.load_migrations(DIM) if m.version < 4]  # before BM25 and the glossary
            await conn.execute("CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                               "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            for m in older:
                await conn.execute(m.sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)", m.version, m.name, m.checksum)
            doc = await conn.fetchval("INSERT INTO documents (source, title, content_type, content_hash, content) "
                                      "VALUES ('old.txt', 'old', 'text/plain', 'h', "
                                      "'The Least Recently Used (LRU) cache: lru_cache.') RETURNING id")
            await conn.execute("INSERT INTO chunks (document_id, ordinal, text, token_count, embedding) "
                               "VALUES ($1, 0, 'The lru_cache decorator.', 4, $2::text::vector)",
                               doc, str(_unit(0).tolist()))
        finally:
            await conn.close()
        pool = await db.connect(url, DIM, "test-embedder")
        try:
            hits = await knowledge.hybrid_search(pool, _unit(0), "lru_cache", 5, Fusion(mode="keyword"))
            assert [h.source for h in hits] == ["old.txt"] and hits[0].keyword_score > 0
            assert await pool.fetchval("SELECT chunks FROM term_stats") == 1
            # migration 005's data step mined the acronyms of the document written before it
            assert await knowledge.glossary_lookup(pool, ["LRU"], "LRU") == {"LRU": "least recently used"}
        finally:
            await pool.close()
    finally:
        db.stop_embedded(pgdata)


async def test_glossary_is_written_replaced_and_deleted_with_its_document(pool: asyncpg.Pool) -> None:
    await _clear(pool)

    async def put(content: str) -> None:
        doc = NewDocument(source="auth.txt", title="auth", content_type="text/plain", content=content,
                          content_hash=uuid.uuid4().hex)
        await knowledge.write_documents(pool, [PreparedDocument(doc, [Chunk(0, content, 5)], np.stack([_unit(0)]),
                                                                acronyms(content))])

    await put("Logins use Pluggable Authentication Modules (PAM) over Transport Layer Security (TLS).")
    assert await knowledge.glossary_lookup(pool, ["PAM"], "How is PAM set up?") == {
        "PAM": "pluggable authentication modules"}
    # the long form in a query finds its acronym too
    assert await knowledge.glossary_lookup(pool, [], "enable transport layer security") == {
        "TLS": "transport layer security"}
    await put("Only the Network File System (NFS) here.")  # an update replaces the document's glossary
    assert await knowledge.glossary_lookup(pool, ["PAM", "NFS"], "PAM NFS") == {"NFS": "network file system"}
    await pool.execute("DELETE FROM documents")
    assert await pool.fetchval("SELECT count(*) FROM glossary") == 0


async def test_where_documents_disagree_the_commoner_expansion_wins(pool: asyncpg.Pool) -> None:
    await _clear(pool)
    for i, text in enumerate(["Pluggable Authentication Modules (PAM)", "Pluggable Authentication Modules (PAM)",
                              "Page Allocation Map (PAM)"]):
        doc = NewDocument(source=f"{i}.txt", title="t", content_type="text/plain", content=text,
                          content_hash=uuid.uuid4().hex)
        await knowledge.write_documents(pool, [PreparedDocument(doc, [Chunk(0, text, 3)], np.stack([_unit(0)]),
                                                                acronyms(text))])
    assert await knowledge.glossary_lookup(pool, ["PAM"], "PAM") == {"PAM": "pluggable authentication modules"}
