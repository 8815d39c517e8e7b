"""The locust side of the load test: a mixed workload against the ingress, bounded in requests and time, with
the Serve replica counts sampled every second. Run by `bench.load` in its own process (locust monkey-patches the
standard library with gevent, which Ray must not see); writes every request and every sample as JSON.

    python -m bench.load_driver --url http://127.0.0.1:8200 --dashboard http://127.0.0.1:8285 --app ragtune-bench \
        --base smollm2-135m-instruct --adapters a,b,c --users 10 --chat-users 4 --load-s 150 --max-requests 1500 \
        --cooldown-s 90 --out results.json
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust import FastHttpUser, between, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from cluster.ops.replicas import replica_counts  # noqa: E402

QUESTIONS = ["What is httpx?", "What is pgvector?", "What does the peft package do?", "How do I create an HNSW index?",
             "What is Typer?", "What is FastAPI?", "What is trl used for?", "What does tqdm do?"]
SEARCHES = ["vector similarity search in Postgres", "fine-tune with LoRA adapters", "async HTTP client",
            "command line interface", "progress bar", "tokenize text quickly", "quantize a model to 4 bits"]
PASSAGES = [f"{q} ({i})" for i, q in enumerate((QUESTIONS + SEARCHES) * 5)]
CONFIG: dict[str, Any] = {}


class ApiUser(FastHttpUser):
    abstract = True
    # A closed loop on 2 cores queues for tens of seconds at the peak: that is latency, not failure.
    network_timeout = 300.0
    connection_timeout = 30.0

    def _post(self, name: str, path: str, body: dict[str, Any]) -> None:
        with self.client.post(path, json=body, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {(response.text or str(response.error))[:200]}")

    def _chat(self, name: str, body: dict[str, Any]) -> None:
        self._post(name, "/v1/chat/completions", {"max_tokens": CONFIG["max_tokens"], "temperature": 0, "cache": False,
                                                  **body})


class ChatUser(ApiUser):
    """An assistant's users: RAG questions, and the fine-tuned and hybrid routes spread over several adapters."""

    fixed_count = 4  # set from --chat-users
    wait_time = between(0.5, 2.0)

    @task(3)
    def rag(self) -> None:
        self._chat("rag", {"model": CONFIG["base"], "route": "rag", "rerank": True, "top_k": CONFIG["rerank_top_k"],
                           "messages": [{"role": "user", "content": random.choice(QUESTIONS)}]})

    @task(3)
    def finetuned(self) -> None:
        self._chat("finetuned", {"model": random.choice(CONFIG["adapters"]), "route": "finetuned",
                                 "messages": [{"role": "user", "content": random.choice(QUESTIONS)}]})

    @task(2)
    def hybrid(self) -> None:
        self._chat("hybrid", {"model": random.choice(CONFIG["adapters"]), "route": "hybrid", "rerank": True,
                              "top_k": CONFIG["rerank_top_k"],
                              "messages": [{"role": "user", "content": random.choice(QUESTIONS)}]})


class RetrievalUser(ApiUser):
    """Search-heavy clients: reranked search, and embeddings of their own texts (64 per request)."""

    wait_time = between(0.1, 0.5)

    @task(1)
    def search(self) -> None:
        self._post("search", "/v1/search", {"query": random.choice(SEARCHES), "rerank": True,
                                            "top_k": CONFIG["rerank_top_k"], "top_n": 4})

    @task(1)
    def embeddings(self) -> None:  # 64 texts: two concurrent batches of 32 at the embedder
        self._post("embeddings", "/v1/embeddings", {"input": random.sample(PASSAGES, 64)})


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--url", "--dashboard", "--app", "--base", "--adapters"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--chat-users", type=int, default=4, help="of --users; the rest are retrieval clients")
    parser.add_argument("--spawn-rate", type=float, default=2.0)
    parser.add_argument("--load-s", type=float, default=150.0)
    parser.add_argument("--max-requests", type=int, default=1500)
    parser.add_argument("--cooldown-s", type=float, default=90.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rerank-top-k", type=int, default=8, help="candidates the cross-encoder scores per request")
    parser.add_argument("--at-rest", default="Embedder=1,Reranker=1",
                        help="replica counts that end the cool-down early, e.g. Embedder=1,Reranker=1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    CONFIG.update(base=args.base, adapters=args.adapters.split(","), max_tokens=args.max_tokens,
                  rerank_top_k=args.rerank_top_k)
    at_rest = {name: int(n) for name, n in (pair.split("=") for pair in args.at_rest.split(","))}

    started = time.time()
    requests: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []

    @events.request.add_listener
    def on_request(request_type: str, name: str, response_time: float, exception: Any = None,
                   **_: Any) -> None:
        requests.append({"t": round(time.time() - started, 3), "name": name, "ms": round(response_time, 1),
                         "ok": exception is None, "error": None if exception is None else str(exception)[:200]})

    ChatUser.fixed_count = args.chat_users
    env = Environment(user_classes=[ChatUser, RetrievalUser], host=args.url, events=events)
    runner = env.create_local_runner()

    def sample() -> None:
        while True:
            try:
                counts = replica_counts(args.dashboard, args.app)
                samples.append({"t": round(time.time() - started, 2),
                                **{name: c.running for name, c in counts.items()},
                                **{f"{name}.target": c.target for name, c in counts.items()}})
            except Exception as exc:  # noqa: BLE001 - a missed sample is a gap in the plot, not a failure
                print(f"replica sample failed: {exc}", flush=True)
            gevent.sleep(1.0)

    # Start from rest: setup (ingestion) may have left a deployment scaled out.
    rest_deadline = time.time() + args.cooldown_s
    while time.time() < rest_deadline:
        counts = replica_counts(args.dashboard, args.app)
        if all(getattr(counts.get(name), "running", None) == n for name, n in at_rest.items()):
            break
        gevent.sleep(1.0)
    started = time.time()
    sampler = gevent.spawn(sample)
    runner.start(args.users, spawn_rate=args.spawn_rate)
    deadline = started + args.load_s
    while time.time() < deadline and len(requests) < args.max_requests:
        gevent.sleep(1.0)
        if int(time.time() - started) % 10 == 0:
            done = len(requests)
            print(f"load: {time.time() - started:5.0f} s, {runner.user_count} users, {done} requests "
                  f"({sum(not r['ok'] for r in requests)} failed), {done / (time.time() - started):.1f} req/s",
                  flush=True)
    load_end = time.time() - started
    runner.quit()  # waits for in-flight requests: they are part of the result
    print(f"load stopped after {load_end:.0f} s and {len(requests)} requests; cooling down ...", flush=True)
    cool_deadline = time.time() + args.cooldown_s
    while time.time() < cool_deadline:
        gevent.sleep(1.0)
        last = samples[-1] if samples else {}
        if all(last.get(name) == n for name, n in at_rest.items()) and time.time() - started - load_end > 5:
            break
    sampler.kill()
    args.out.write_text(json.dumps({"load_end_s": round(load_end, 2), "requests": requests, "replicas": samples,
                                    "config": vars(args) | {"out": str(args.out)}}))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
