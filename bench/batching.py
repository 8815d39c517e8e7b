"""Dynamic batching in the embedder and reranker deployments: items/s through the API with many concurrent
single-item requests (Serve's `@serve.batch` merges them into one forward pass) vs the same requests one at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import httpx

TEXTS = [f"Passage {i}: vector search in Postgres with pgvector, LoRA adapters served by vLLM, and Ray Serve "
         f"replicas that scale with load. Item number {i} of the batching benchmark." for i in range(256)]


async def _rate(calls: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Requests/s for `calls` requests issued by `concurrency` workers."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def bench_batching(url: str, replicas: Callable[[str], int], calls: int = 128,
                         concurrency: int = 32) -> dict[str, Any]:
    """`replicas(deployment)` says how many replicas served the batched run (the autoscaler may add one)."""
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def embed(i: int) -> None:
            (await client.post("/v1/embeddings", json={"input": TEXTS[i % len(TEXTS)]})).raise_for_status()

        async def rerank(i: int) -> None:
            (await client.post("/v1/rerank", json={"query": "vector search with adapters",
                                                   "documents": [TEXTS[i % len(TEXTS)]]})).raise_for_status()

        out: dict[str, Any] = {"calls": calls, "concurrency": concurrency, "items_per_request": 1}
        for name, one in (("embedder", embed), ("reranker", rerank)):
            await _rate(8, 1, one)  # warm
            sequential = await _rate(calls, 1, one)
            batched = await _rate(calls, concurrency, one)
            out[name] = {"one_at_a_time_per_s": round(sequential, 1), "batched_per_s": round(batched, 1),
                         "ratio": round(batched / sequential, 2),
                         "replicas_after_batched_run": replicas(name.capitalize())}
            print(f"{name}: {out[name]}", flush=True)
        return out
