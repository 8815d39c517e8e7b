"""`make bench`: every comparison in one run on one cluster of its own, written to docs/benchmarks.md.

1. generation through the ingress vs the raw vLLM `AsyncLLM` (throughput, TTFT; same engine arguments, prompts,
   adapters and concurrency);
2. multi-adapter serving: the base alone vs 1, 2 and 4 adapters in the mix;
3. dynamic batching in the embedder and reranker: concurrent single-item requests vs one at a time;
4. the RAG route's stage breakdown (p50/p95);
5. search through the API vs the same SQL direct, at each corpus size, with HNSW recall@10 vs exact search.

    python -m bench.suite [--chunks 20000,100000] [--quick]

Every ratio is against a baseline measured in the same run. Results: bench/results/suite.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.batching import bench_batching
from bench.cluster import bench_cluster, machine, publish_random_adapters, write_report
from bench.generation import (
    PROMPTS, RAG_QUESTIONS, bench_adapter_mix, bench_ingress, bench_raw, bench_rag, ingest_demo_corpus,
)
from bench.knowledge import bench_search, grow_to, hnsw_recall, recall_queries
from bench.report import render


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", default="20000,100000", help="corpus sizes for the search comparison")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--mix-requests", type=int, default=12)
    parser.add_argument("--rag-questions", type=int, default=8)
    parser.add_argument("--rag-max-tokens", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the suite end to end")
    parser.add_argument("--out", type=Path, default=Path("bench/results/suite.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.queries, args.requests, args.mix_requests, args.rag_questions = "3000", 10, 8, 4, 2
    sizes = [int(n) for n in args.chunks.split(",")]
    from cluster.models.rerank_gate import rerank_decision
    from cluster.store.adapters import AdapterStore
    from cluster.ops.replicas import replica_counts

    started = time.perf_counter()
    with bench_cluster() as settings:
        profile, spec = settings.profile_spec, settings.llm_spec
        results: dict[str, Any] = {
            "date": datetime.date.today().isoformat(), "machine": machine(), "profile": settings.profile,
            "llm": {"model": spec.model, "dtype": spec.dtype, "max_num_seqs": spec.max_num_seqs,
                    "max_loras": spec.max_loras, "max_lora_rank": spec.max_lora_rank,
                    "stream_interval": spec.stream_interval, "enable_prefix_caching": spec.enable_prefix_caching},
            "embedder": {"model": profile.embedder.model, "dtype": profile.embedder.dtype,
                         "max_batch_size": profile.embedder.max_batch_size,
                         "batch_wait_timeout_s": profile.embedder.batch_wait_timeout_s},
            "reranker": {"model": profile.reranker.model, "dtype": profile.reranker.dtype,
                         "max_batch_size": profile.reranker.max_batch_size},
            "settings": vars(args) | {"out": str(args.out), "doc": str(args.doc)}}
        store = AdapterStore.from_settings(settings)
        refs = publish_random_adapters(settings, "bench", 4)
        names = [ref.name for ref in refs]
        with httpx.Client(base_url=settings.http_url, timeout=600) as client:
            print("ingesting the demo corpus ...", flush=True)
            ingest_demo_corpus(client)

            mixed = names[:2]
            jobs = [(mixed[i % len(mixed)], PROMPTS[i % len(PROMPTS)]) for i in range(args.requests)]
            print(f"1. generation: raw AsyncLLM vs ingress, {args.requests} requests, {args.clients} clients ...",
                  flush=True)
            paths = {ref.name: store.local_copy(ref.name, ref.version) for ref in refs[:2]}
            raw = asyncio.run(bench_raw(settings, paths, jobs, args.clients, args.max_tokens))
            ingress = asyncio.run(bench_ingress(settings.http_url, jobs, args.clients, args.max_tokens))
            results["generation"] = {
                "requests": args.requests, "clients": args.clients, "max_tokens": args.max_tokens, "adapters": mixed,
                "raw_engine": raw, "ingress": ingress,
                "throughput_ratio": round(ingress["tokens_per_s"] / raw["tokens_per_s"], 3),
                "ttft_p50_ratio": round(ingress["ttft_p50_ms"] / raw["ttft_p50_ms"], 2)}
            print(json.dumps(results["generation"]), flush=True)
            write_report(results, args.out)  # after every section: a later failure keeps what was measured

            print("2. multi-adapter serving ...", flush=True)
            results["adapter_mix"] = {
                "requests": args.mix_requests, "clients": args.clients, "max_tokens": args.max_tokens,
                "runs": bench_adapter_mix(settings.http_url, spec.served_name, names, (1, 2, 4), args.mix_requests,
                                          args.clients, args.max_tokens)}
            write_report(results, args.out)

            print("3. dynamic batching ...", flush=True)
            results["batching"] = asyncio.run(bench_batching(
                settings.http_url, lambda d: replica_counts(settings.dashboard_url, settings.app_name)[d].running))

            print("4. RAG stage breakdown ...", flush=True)
            questions = RAG_QUESTIONS[:args.rag_questions]
            results["rag"] = {"default": bench_rag(client, spec.served_name, questions, args.rag_max_tokens, None),
                              "reranked": bench_rag(client, spec.served_name, questions, args.rag_max_tokens, True),
                              "profile_rerank": rerank_decision(settings).rerank, "top_k": profile.retrieval.top_k,
                              "top_n": profile.retrieval.top_n}

            results["search"] = []
            for size in sizes:
                print(f"5. search at {size} chunks ...", flush=True)
                chunks = asyncio.run(grow_to(settings, size))
                entry = {"chunks": chunks, **asyncio.run(bench_search(client, settings, args.queries))}
                entry["recall"] = asyncio.run(hnsw_recall(settings, asyncio.run(recall_queries(settings,
                                                                                                 args.queries))))
                print(json.dumps(entry["recall"]), flush=True)
                results["search"].append(entry)
                write_report(results, args.out)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_report(results, args.out)
    args.doc.write_text(render(results))
    print(f"wrote {args.doc} ({results['wall_s'] / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
