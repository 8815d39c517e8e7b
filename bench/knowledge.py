"""Knowledge-path benchmark: ingestion through the API vs the embedder's raw encode, and /v1/search latency at
20k+ chunks vs the same SQL run directly through asyncpg. Every ratio is against a baseline taken in the same run.

    python -m bench.knowledge [--chunks 20000] [--queries 100]

It starts its own local cluster (temporary state dir, ports 8200/6400/8285) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from bench.cluster import bench_cluster, machine, pct, write_report

QUERIES = [
    "How do I create an HNSW index in Postgres?", "fine-tune a model with LoRA adapters",
    "serve a model behind an OpenAI compatible API", "retry HTTP requests with timeouts",
    "command line interface with type hints", "distributed training on several GPUs",
    "load a dataset from disk", "tokenize text quickly", "quantize a model to 4 bits",
    "asynchronous PostgreSQL driver performance", "progress bar for loops", "validate settings from environment",
]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(values, 50), 2), "p95_ms": round(pct(values, 95), 2),
            "mean_ms": round(statistics.fmean(values), 2)}


def bench_ingest(client: httpx.Client, settings) -> dict:  # noqa: ANN001
    """Chunks/s through POST /v1/documents vs SentenceTransformer.encode on the very same chunk texts."""
    from sentence_transformers import SentenceTransformer

    from cluster.content.package_docs import DEMO_PACKAGES, package_docs
    from cluster.models.cache import resolve

    docs = package_docs(DEMO_PACKAGES)
    bodies = [{"source": f"bench/{d.filename}", "content": d.titled(), "content_type": d.content_type} for d in docs]
    started = time.perf_counter()
    created = []
    for i in range(0, len(bodies), 4):
        response = client.post("/v1/documents", json={"documents": bodies[i:i + 4]})
        response.raise_for_status()
        created.extend(response.json()["data"])
    api_s = time.perf_counter() - started
    chunks = sum(r["document"]["chunk_count"] for r in created)
    texts = [c["text"] for r in created
             for c in client.get(f"/v1/documents/{r['document']['id']}", params={"include_chunks": True}).json()["chunks"]]
    spec = settings.profile_spec.embedder
    model = SentenceTransformer(resolve(spec.model, settings.models_dir), device="cpu")
    model.max_seq_length = spec.max_seq_length
    model.encode(texts[:8])
    started = time.perf_counter()
    model.encode(texts, batch_size=spec.max_batch_size, normalize_embeddings=True)
    raw_s = time.perf_counter() - started
    del model
    return {"documents": len(created), "chunks": chunks, "api_chunks_per_s": round(chunks / api_s, 1),
            "raw_encode_chunks_per_s": round(len(texts) / raw_s, 1), "ratio": round((chunks / api_s) / (len(texts) / raw_s), 3)}


async def grow_to(settings, target_chunks: int) -> int:  # noqa: ANN001
    """Fill the knowledge base to `target_chunks` by COPYing variants of the real chunks: the same texts with
    their real embeddings plus small noise (re-normalized), so the HNSW graph and GIN index have a realistic
    size and shape without hours of CPU embedding. Marked with metadata {"synthetic": true}."""
    from cluster.store import db

    spec = settings.profile_spec.embedder
    pool = await db.open_pool(settings)
    # Copy the real chunks only (not earlier copies), numbering new copies after the ones already there.
    rows = await pool.fetch("SELECT text, token_count, embedding FROM chunks WHERE document_id IN "
                            "(SELECT id FROM documents WHERE NOT metadata ? 'synthetic')")
    have = await pool.fetchval("SELECT count(*) FROM chunks")
    first = await pool.fetchval("SELECT count(*) FROM documents WHERE metadata ? 'synthetic'")
    rng = np.random.default_rng(first)
    batch_docs = max(1, (target_chunks - have) // len(rows) + 1)
    async with pool.acquire() as conn:
        for b in range(first, first + batch_docs):
            if have >= target_chunks:
                break
            transaction = conn.transaction()
            await transaction.start()
            doc_id = await conn.fetchval(
                "INSERT INTO documents (source, title, content_type, content_hash, content, metadata) "
                "VALUES ($1, $2, 'text/plain', $3, '', '{\"synthetic\": true}'::jsonb) RETURNING id",
                f"synthetic/{b}", f"synthetic copy {b}", f"synthetic-{b}")
            records = []
            for ordinal, r in enumerate(rows):
                vec = r["embedding"].to_numpy().astype(np.float32) + rng.normal(0, 0.02, spec.dim).astype(np.float32)
                records.append((doc_id, ordinal, r["text"], r["token_count"], vec / np.linalg.norm(vec)))
            await conn.copy_records_to_table("chunks", columns=["document_id", "ordinal", "text", "token_count",
                                                                "embedding"], records=records)
            await transaction.commit()
            have += len(records)
            if (b - first) % 20 == 0 or have >= target_chunks:
                print(f"  grown to {have} chunks", flush=True)
        await conn.execute("VACUUM ANALYZE chunks")
    await pool.close()
    return have


async def bench_search(client: httpx.Client, settings, n_queries: int) -> dict:  # noqa: ANN001
    from sentence_transformers import SentenceTransformer

    from cluster.store import db, knowledge
    from cluster.store.knowledge import Fusion, SearchFilters
    from cluster.models.cache import resolve

    spec = settings.profile_spec.embedder
    queries = [QUERIES[i % len(QUERIES)] for i in range(n_queries)]
    model = SentenceTransformer(resolve(spec.model, settings.models_dir), device="cpu")
    vectors = model.encode(queries, normalize_embeddings=True)
    del model
    pool = await db.open_pool(settings)
    top_k = settings.profile_spec.retrieval.top_k
    fusion = Fusion(**settings.profile_spec.retrieval.fusion.model_dump())
    for q, v in zip(queries[:5], vectors[:5]):  # warm both paths
        await knowledge.hybrid_search(pool, v, q, top_k, fusion)
        client.post("/v1/search", json={"query": q, "rerank": False})
    sql_ms = []
    for q, v in zip(queries, vectors):
        t = time.perf_counter()
        await knowledge.hybrid_search(pool, v, q, top_k, fusion, SearchFilters())
        sql_ms.append((time.perf_counter() - t) * 1000)
    await pool.close()
    results = {"sql_direct": summary(sql_ms)}
    for label, rerank in (("api_no_rerank", False), ("api_full", True)):
        wall, stages = [], {"embed_ms": [], "search_ms": [], "rerank_ms": []}
        for q in queries:
            t = time.perf_counter()
            response = client.post("/v1/search", json={"query": q, "rerank": rerank, "top_k": top_k, "top_n": 5})
            wall.append((time.perf_counter() - t) * 1000)
            response.raise_for_status()
            for k in stages:
                stages[k].append(response.json()["timings"][k])
        results[label] = summary(wall) | {"stages_p50_ms": {k: round(pct(v, 50), 2) for k, v in stages.items()}}
    results["ratio_p50_api_no_rerank_vs_sql"] = round(results["api_no_rerank"]["p50_ms"] / results["sql_direct"]["p50_ms"], 2)
    results["ratio_p50_api_full_vs_sql"] = round(results["api_full"]["p50_ms"] / results["sql_direct"]["p50_ms"], 2)
    return results


async def hnsw_recall(settings, queries: list[str], k: int = 10) -> dict:  # noqa: ANN001
    """recall@k of the HNSW index (the pool's ef_search, as the API uses it) against exact cosine search (a
    sequential scan: index scans disabled in that transaction), over the same query vectors."""
    from sentence_transformers import SentenceTransformer

    from cluster.store import db
    from cluster.models.cache import resolve

    spec = settings.profile_spec.embedder
    model = SentenceTransformer(resolve(spec.model, settings.models_dir), device="cpu")
    vectors = model.encode(queries, normalize_embeddings=True)
    del model
    sql = "SELECT id, embedding <=> $1 AS distance FROM chunks ORDER BY embedding <=> $1 LIMIT $2"
    pool = await db.open_pool(settings)
    recalls, hnsw_ms, exact_ms = [], [], []
    async with pool.acquire() as conn:
        for v in vectors:
            t = time.perf_counter()
            approx = await conn.fetch(sql, v, k)
            hnsw_ms.append((time.perf_counter() - t) * 1000)
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
                t = time.perf_counter()
                exact = await conn.fetch(sql, v, k)
                exact_ms.append((time.perf_counter() - t) * 1000)
            # A hit counts if it is one of the exact k or exactly as close as the k-th (ties among copies).
            kth = max(r["distance"] for r in exact)
            exact_ids = {r["id"] for r in exact}
            recalls.append(sum(r["id"] in exact_ids or r["distance"] <= kth + 1e-6 for r in approx) / k)
    await pool.close()
    return {"k": k, "queries": len(queries), "recall_mean": round(statistics.fmean(recalls), 4),
            "recall_min": round(min(recalls), 2), "hnsw_p50_ms": round(pct(hnsw_ms, 50), 2),
            "exact_p50_ms": round(pct(exact_ms, 50), 2)}


async def recall_queries(settings, n: int) -> list[str]:  # noqa: ANN001
    """The natural-language queries, then the first words of stored chunks (sampled with a fixed seed)."""
    from cluster.store import db

    pool = await db.open_pool(settings)
    texts = [r["text"] for r in await pool.fetch(
        "SELECT text FROM chunks WHERE document_id IN (SELECT id FROM documents WHERE NOT metadata ? 'synthetic') "
        "ORDER BY md5(id::text) LIMIT $1", n)]
    await pool.close()
    return (QUERIES + [" ".join(t.split()[:12]) for t in texts])[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results/knowledge.json"))
    args = parser.parse_args()
    with bench_cluster() as settings:
        report: dict = {"machine": machine(), "profile": settings.profile,
                        "embedder": settings.profile_spec.embedder.model,
                        "reranker": settings.profile_spec.reranker.model}
        with httpx.Client(base_url=settings.http_url, timeout=300) as client:
            print("ingest: API vs raw encode ...", flush=True)
            report["ingest"] = bench_ingest(client, settings)
            print(json.dumps(report["ingest"]), flush=True)
            report["chunks"] = asyncio.run(grow_to(settings, args.chunks))
            print(f"search at {report['chunks']} chunks, {args.queries} queries per path ...", flush=True)
            report["search"] = asyncio.run(bench_search(client, settings, args.queries))
            print(json.dumps(report["search"], indent=2), flush=True)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
