"""The semantic cache: what it serves on labelled question pairs, and a hit's latency against a miss's.

    python -m bench.cache [--questions 10] [--pairs-only]

1. Pairs (no cluster): every set in cluster/evaluation/sets/cache_pairs*.jsonl embedded with the profile's embedder;
   per set, paraphrases served (similarity >= the profile's threshold and passed by the meaning guard), near misses
   served (false hits; the goal is 0) and near misses the threshold alone would have served, per kind.
2. Latency (its own local cluster, the demo corpus ingested): each RAG-route question asked twice, greedy, end to
   end at the client: the first is a miss (retrieval + generation, then stored), the second a hit. The baseline is
   the miss in the same run; the goal is hit <= 0.05 x miss. Writes bench/results/cache.json and docs/cache-latency.png.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.cluster import bench_cluster, machine, pct, write_report
from bench.generation import RAG_QUESTIONS, ingest_demo_corpus

SETS = Path(__file__).resolve().parents[1] / "cluster" / "evaluation" / "sets"


def pair_rates() -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from cluster.models.cache import resolve
    from cluster.settings import Settings
    from serve.services.cache_guard import compare, score_pairs

    settings = Settings()
    threshold = settings.profile_spec.cache.min_similarity
    model = SentenceTransformer(resolve(settings.profile_spec.embedder.model, settings.models_dir), device="cpu")
    out: dict[str, Any] = {"threshold": threshold}
    for path in sorted(SETS.glob("cache_pairs*.jsonl")):
        pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        a = model.encode([p["a"] for p in pairs], normalize_embeddings=True)
        b = model.encode([p["b"] for p in pairs], normalize_embeddings=True)
        sims = list(np.sum(a * b, axis=1))
        rates = score_pairs(pairs, sims, threshold)
        by_kind: dict[str, Counter] = {}
        for p, s in zip(pairs, sims):
            if p["label"] == "near_miss":
                c = by_kind.setdefault(p["kind"], Counter())
                c["pairs"] += 1
                c["above_threshold"] += int(s >= threshold)
                c["served"] += int(s >= threshold and compare(p["a"], p["b"]).same)
        out[path.name] = {"paraphrases": rates.paraphrases, "paraphrases_served": rates.paraphrase_hits,
                          "paraphrase_hit_rate": round(rates.hit_rate, 3), "near_misses": rates.near_misses,
                          "false_hits": rates.false_hits,
                          "near_misses_served_by_threshold_alone": rates.near_misses_above_threshold,
                          "near_misses_by_kind": {k: dict(v) for k, v in sorted(by_kind.items())}}
        print(path.name, json.dumps(out[path.name]), flush=True)
    return out


def _ask(client: httpx.Client, base: str, question: str, max_tokens: int) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json={
        "model": base, "route": "rag", "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens, "temperature": 0})
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response.json()


def latency(questions: int, max_tokens: int) -> dict[str, Any]:
    with bench_cluster() as settings, httpx.Client(base_url=settings.http_url, timeout=600) as client:
        ingest_demo_corpus(client)
        base = settings.llm_spec.served_name
        miss_ms, hit_ms, statuses = [], [], Counter()
        for i, question in enumerate(RAG_QUESTIONS[:questions], start=1):
            entries = client.get("/v1/cache").json()["entries"]
            ms, first = _ask(client, base, question, max_tokens)
            statuses["first " + first["cache"]["status"]] += 1
            deadline = time.monotonic() + 30
            while client.get("/v1/cache").json()["entries"] <= entries and time.monotonic() < deadline:
                time.sleep(0.05)  # the miss is stored in the background: poll the cache until it is there
            hit, second = _ask(client, base, question, max_tokens)
            statuses["second " + second["cache"]["status"]] += 1
            same = second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
            statuses["same answer" if same else "other answer"] += 1
            miss_ms.append(ms)
            hit_ms.append(hit)
            print(f"[{i}/{questions}] miss {ms:.0f} ms, {second['cache']['status']} {hit:.1f} ms", flush=True)
    out = {"questions": questions, "max_tokens": max_tokens, "outcomes": dict(statuses),
           "miss_p50_ms": round(pct(miss_ms, 50), 1), "miss_p95_ms": round(pct(miss_ms, 95), 1),
           "hit_p50_ms": round(pct(hit_ms, 50), 1), "hit_p95_ms": round(pct(hit_ms, 95), 1),
           "miss_ms": [round(v, 1) for v in miss_ms], "hit_ms": [round(v, 1) for v in hit_ms]}
    out["hit_over_miss_p50"] = round(out["hit_p50_ms"] / out["miss_p50_ms"], 4)
    _plot(miss_ms, hit_ms, Path("docs/cache-latency.png"))
    return out


def _plot(miss_ms: list[float], hit_ms: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(miss_ms))
    ax.bar(x - 0.2, miss_ms, 0.4, label="miss (retrieve + generate)")
    ax.bar(x + 0.2, hit_ms, 0.4, label="hit (cache)")
    ax.set_yscale("log")
    ax.set_xlabel("RAG question")
    ax.set_ylabel("latency at the client, ms (log)")
    ax.set_title("Semantic cache: the same question, first a miss, then a hit")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--pairs-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/cache.json"))
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "pairs": pair_rates()}
    if not args.pairs_only:
        report["latency"] = latency(args.questions, args.max_tokens)
        print(json.dumps({k: v for k, v in report["latency"].items() if not k.endswith("_ms") or "p" in k}))
    write_report(report, args.out)


if __name__ == "__main__":
    main()
