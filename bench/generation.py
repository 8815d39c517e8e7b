"""Generation benchmark: the fine-tuned route through the ingress vs the raw vLLM `AsyncLLM`, in one run.

Same engine arguments (the profile's), same prompt token ids (the model's chat template), same sampling
(greedy, `ignore_eos`, fixed length), same adapters mixed request by request, same number of concurrent
clients. Reports completion tokens/s and time to first token for both and their ratio; then the RAG route's
per-stage latency (p50/p95) over the demo corpus.

    python -m bench.generation [--clients 4] [--requests 24] [--max-tokens 64] [--rag-questions 10]

It starts its own local cluster (temporary state dir, ports 8200/6400/8285) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.cluster import bench_cluster, machine, pct, publish_random_adapters, write_report

PROMPTS = ["Write a short story about a robot learning to paint.", "Explain how a hash map works.",
           "Give me three tips for writing clear documentation.", "Describe the water cycle.",
           "What makes a good unit test?", "Summarize the plot of a heist movie you invent.",
           "How do vaccines train the immune system?", "List the steps to brew green tea."]
RAG_QUESTIONS = ["What is httpx?", "What is pgvector?", "What does the peft package do?",
                 "How do I create an HNSW index in Postgres?", "What is Typer?", "What is FastAPI?",
                 "How does Ray Serve scale deployments?", "What is trl used for?", "What is asyncpg?",
                 "What does tqdm do?", "What is bitsandbytes?", "What are sentence transformers?"]


@dataclass(frozen=True)
class Result:
    ttft_s: float
    total_s: float
    tokens: int


def report(results: list[Result], wall_s: float) -> dict[str, float]:
    tokens = sum(r.tokens for r in results)
    return {"requests": len(results), "completion_tokens": tokens, "wall_s": round(wall_s, 2),
            "tokens_per_s": round(tokens / wall_s, 1),
            "ttft_p50_ms": round(pct([r.ttft_s * 1000 for r in results], 50), 1),
            "ttft_p95_ms": round(pct([r.ttft_s * 1000 for r in results], 95), 1),
            "latency_p50_ms": round(pct([r.total_s * 1000 for r in results], 50), 1)}


async def run_clients(jobs: list[Any], clients: int, one: Any) -> tuple[list[Result], float]:
    """`clients` concurrent workers draining `jobs` in order; returns every result and the wall time."""
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    results: list[Result] = []

    async def worker() -> None:
        while not queue.empty():
            results.append(await one(queue.get_nowait()))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return results, time.perf_counter() - started


# ------------------------------------------------------------------------------------------- raw engine

async def bench_raw(settings, adapters: dict[str, Path], jobs: list[tuple[str, str]], clients: int,  # noqa: ANN001
                    max_tokens: int) -> dict[str, float]:
    from transformers import AutoTokenizer
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind

    from cluster.models.cache import resolve
    from serve.deployments.llm_engine import build_engine

    spec = settings.llm_spec
    path = resolve(spec.model, settings.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = build_engine(spec, path, on_gpu=False)
    loras = {name: LoRARequest(name, i + 1, str(p)) for i, (name, p) in enumerate(adapters.items())}
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True,
                            output_kind=RequestOutputKind.DELTA)
    counter = iter(range(1_000_000))

    async def one(job: tuple[str, str]) -> Result:
        adapter, prompt = job
        started = time.perf_counter()
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                            add_generation_prompt=True, return_dict=False)
        ttft, tokens = None, 0
        async for out in engine.generate(TokensPrompt(prompt_token_ids=ids), params, f"raw-{next(counter)}",
                                         lora_request=loras[adapter]):
            tokens += len(out.outputs[0].token_ids)
            if ttft is None and out.outputs[0].text:
                ttft = time.perf_counter() - started
        return Result(ttft or 0.0, time.perf_counter() - started, tokens)

    try:
        await run_clients([(name, PROMPTS[0]) for name in adapters], len(adapters), one)  # warm-up, load adapters
        results, wall = await run_clients(jobs, clients, one)
        return report(results, wall)
    finally:
        engine.shutdown()


# ---------------------------------------------------------------------------------------------- ingress

async def bench_ingress(url: str, jobs: list[tuple[str, str]], clients: int, max_tokens: int,
                        base: str | None = None) -> dict[str, float]:
    """Streams each (model, prompt) job: the fine-tuned route for adapters, the plain route for `base`."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one(job: tuple[str, str]) -> Result:
            adapter, prompt = job
            route = "plain" if adapter == base else "finetuned"
            body = {"model": adapter, "route": route, "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True, "cache": False}
            started, ttft, tokens = time.perf_counter(), None, 0
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if event["choices"] and ttft is None and event["choices"][0]["delta"].get("content"):
                        ttft = time.perf_counter() - started
                    if event.get("usage"):
                        tokens = event["usage"]["completion_tokens"]
            return Result(ttft or 0.0, time.perf_counter() - started, tokens)

        adapters = sorted({a for a, _ in jobs})
        await run_clients([(name, PROMPTS[0]) for name in adapters], len(adapters), one)  # warm-up
        results, wall = await run_clients(jobs, clients, one)
        return report(results, wall)


# ------------------------------------------------------------------------------------------------- RAG

def ingest_demo_corpus(client: httpx.Client) -> None:
    from cluster.content.package_docs import DEMO_PACKAGES, package_docs

    docs = package_docs(DEMO_PACKAGES)
    for i in range(0, len(docs), 4):
        client.post("/v1/documents", json={"documents": [
            {"source": d.filename, "content": d.titled(), "content_type": d.content_type}
            for d in docs[i:i + 4]]}).raise_for_status()


def bench_rag(client: httpx.Client, base: str, questions: list[str], max_tokens: int,
              rerank: bool | None) -> dict[str, Any]:
    """Per-stage timings of the RAG route; `rerank` None = the profile's default."""
    stages: dict[str, list[float]] = {k: [] for k in ("embed_ms", "search_ms", "rerank_ms", "ttft_ms",
                                                       "generate_ms", "total_ms")}
    cited = 0
    for question in questions:
        response = client.post("/v1/chat/completions", json={
            "model": base, "route": "rag", "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0, "cache": False,
            **({} if rerank is None else {"rerank": rerank})})
        response.raise_for_status()
        payload = response.json()
        cited += bool(payload["citations"])
        for key in stages:
            stages[key].append(payload["timings"][key] or 0.0)
    return {"questions": len(questions), "rerank": rerank, "answers_with_citations": cited, "max_tokens": max_tokens,
            "stages": {k: {"p50_ms": round(pct(v, 50), 1), "p95_ms": round(pct(v, 95), 1)} for k, v in stages.items()}}


def bench_adapter_mix(url: str, base: str, adapters: list[str], counts: tuple[int, ...], requests: int,
                      clients: int, max_tokens: int) -> dict[str, Any]:
    """Throughput with the base model alone, then with 1, 2, 4... adapters in the mix (requests spread round-robin
    over them), same prompts, clients and lengths; each ratio is against the base-alone run of this same call."""
    runs: dict[str, Any] = {}
    for n in (0, *counts):
        models = [base] if n == 0 else adapters[:n]
        jobs = [(models[i % len(models)], PROMPTS[i % len(PROMPTS)]) for i in range(requests)]
        label = "base" if n == 0 else f"{n}_adapters"
        print(f"adapter mix: {label} ({requests} requests, {clients} clients) ...", flush=True)
        runs[label] = asyncio.run(bench_ingress(url, jobs, clients, max_tokens, base=base))
        runs[label]["vs_base"] = round(runs[label]["tokens_per_s"] / runs["base"]["tokens_per_s"], 3)
        print(json.dumps(runs[label]), flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rag-questions", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/generation.json"))
    args = parser.parse_args()
    from cluster.store.adapters import AdapterStore

    with bench_cluster() as settings:
        spec = settings.llm_spec
        out: dict[str, Any] = {
            "machine": machine(), "profile": settings.profile,
            "model": spec.model, "dtype": spec.dtype, "max_loras": spec.max_loras, "clients": args.clients,
            "requests": args.requests, "max_tokens": args.max_tokens, "stream_interval": spec.stream_interval}
        store = AdapterStore.from_settings(settings)
        refs = publish_random_adapters(settings, "bench", 2)
        adapters = {ref.name: store.local_copy(ref.name, ref.version) for ref in refs}
        names = sorted(adapters)
        jobs = [(names[i % len(names)], PROMPTS[i % len(PROMPTS)]) for i in range(args.requests)]
        print(f"raw AsyncLLM: {args.requests} requests, {args.clients} clients, adapters {names} ...", flush=True)
        out["raw_engine"] = asyncio.run(bench_raw(settings, adapters, jobs, args.clients, args.max_tokens))
        print(json.dumps(out["raw_engine"]), flush=True)
        print("through the ingress (fine-tuned route, SSE) ...", flush=True)
        out["ingress"] = asyncio.run(bench_ingress(settings.http_url, jobs, args.clients, args.max_tokens))
        print(json.dumps(out["ingress"]), flush=True)
        out["throughput_ratio"] = round(out["ingress"]["tokens_per_s"] / out["raw_engine"]["tokens_per_s"], 3)
        out["ttft_p50_ratio"] = round(out["ingress"]["ttft_p50_ms"] / out["raw_engine"]["ttft_p50_ms"], 2)
        print(f"throughput ratio ingress/raw: {out['throughput_ratio']}", flush=True)
        if args.rag_questions:
            with httpx.Client(base_url=settings.http_url, timeout=600) as client:
                ingest_demo_corpus(client)
                for key, rerank in (("rag", None), ("rag_reranked", True)):
                    print(f"RAG route stage breakdown over {args.rag_questions} questions (rerank: "
                          f"{'profile default' if rerank is None else rerank}) ...", flush=True)
                    out[key] = bench_rag(client, spec.served_name, RAG_QUESTIONS[:args.rag_questions],
                                         args.max_tokens, rerank)
                    print(json.dumps(out[key]), flush=True)
    write_report(out, args.out)


if __name__ == "__main__":
    main()
