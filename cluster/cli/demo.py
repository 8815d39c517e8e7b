"""What `ragtune demo` (and so `make demo`) runs: up, ingest the stack's docs as a Ray Job, search, fine-tune the
JSON-extraction adapter through the queue, base vs adapter on held-out sentences, then the three routes."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cluster.cli.client import RagtuneClient
from cluster.cli.commands import fail, follow_job, print_answer, print_hits, report_finished
from cluster.demo import extraction
from cluster.settings import Settings
from cluster.training.datasets import digest

QUERIES = (
    "How do I create an HNSW index for approximate nearest neighbor search in Postgres?",
    "How can I fine-tune a large language model with LoRA adapters on a small GPU?",
    "How does Ray Serve scale model deployments?",
    "What is the fastest way to serve an LLM with an OpenAI-compatible API?",
)
QUESTIONS = ("What is httpx?", "What does the peft package do?")
SUFFIX = "json-extract"


def demo_adapter(client: RagtuneClient) -> str:
    """Train the demo's JSON-extraction adapter through the fine-tuning queue, or reuse the one already trained on
    this exact dataset. Prints how long the first adapter token took after the job succeeded."""
    train_set, _ = extraction.split()
    data = extraction.jsonl(train_set)
    for m in client.request("GET", "/v1/models")["data"]:
        if ((m.get("metadata") or {}).get("dataset") or {}).get("sha256") == digest(data):
            typer.echo(f"reusing adapter {m['id']} (trained on this dataset before)")
            return m["id"]
    uploaded = client.request("POST", "/v1/files", files={"file": ("json-extract.jsonl", data)},
                              data={"purpose": "fine-tune"})
    body = {"model": client.base_model(), "training_file": uploaded["id"], "suffix": SUFFIX,
            "system_prompt": extraction.SYSTEM_PROMPT,
            "hyperparameters": {"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 5}}
    job = client.request("POST", "/v1/fine_tuning/jobs", json=body)
    typer.echo(f"queued {job['id']}: LoRA on {len(train_set)} sentence -> JSON examples (one epoch, about 5 "
               "minutes on 2 cores); progress below comes from the job's events")
    job = follow_job(client, job["id"])
    succeeded_at = time.monotonic()
    report_finished(job)
    name = job["fine_tuned_model"]
    client.reply(name, extraction.prompt(train_set[0][0]), "finetuned", max_tokens=1)
    typer.echo(f"job success -> first token from the new adapter: {time.monotonic() - succeeded_at:.2f} s "
               "(no restart, no redeploy)")
    return name


def base_vs_adapter(client: RagtuneClient, adapter: str) -> None:
    base = client.base_model()
    _, test = extraction.split()
    sentences, records = [t[0] for t in test], [t[1] for t in test]
    typer.secho(f"\nBase model vs adapter on {len(test)} held-out sentences (unseen names, cities, phrasings)",
                bold=True)
    started = time.monotonic()
    base_out = extraction.complete(lambda m: client.reply(base, m, "plain"), sentences, extraction.SYSTEM_PROMPT)
    tuned_out = extraction.complete(lambda m: client.reply(adapter, m, "finetuned"), sentences)
    for sentence, b, t in list(zip(sentences, base_out, tuned_out))[:3]:
        typer.secho(f"\n> {sentence}", bold=True)
        typer.echo(f"  base:    {' '.join(b.split())[:160]}")
        typer.echo(f"  adapter: {' '.join(t.split())[:160]}")
    b_score, t_score = extraction.score(base_out, records), extraction.score(tuned_out, records)
    typer.echo(f"\n{'':<10}{'valid JSON':>12}{'schema':>9}{'exact match':>13}")
    for label, sc in (("base", b_score), ("adapter", t_score)):
        typer.echo(f"{label:<10}{sc['valid_json']:>12.2f}{sc['schema']:>9.2f}{sc['exact_match']:>13.2f}")
    typer.echo(f"({2 * len(test)} requests in {time.monotonic() - started:.0f} s)")


def three_routes(client: RagtuneClient, adapter: str) -> None:
    base = client.base_model()
    _, test = extraction.split()
    asks = [(q, "rag", base) for q in QUESTIONS]
    sentence_question = extraction.prompt(test[0][0])[0]["content"]
    asks += [(sentence_question, "finetuned", adapter), (sentence_question, "hybrid", adapter)]
    rows = []
    for question, route, model in asks:
        typer.secho(f"\n> [{route}] {question}", bold=True)
        payload = client.chat({"model": model, "messages": [{"role": "user", "content": question}],
                               "route": route, "max_tokens": 96, "temperature": 0})
        typer.echo("   " + " ".join(payload["choices"][0]["message"]["content"].split()))
        print_answer(payload)
        t = payload["timings"]
        rows.append((question.splitlines()[-1][:34], route, len(payload["citations"]), t["embed_ms"] + t["search_ms"],
                     t["rerank_ms"], t["generate_ms"], t["total_ms"]))
    typer.secho("\nside by side (ms)", bold=True)
    typer.echo(f"{'question':<36}{'route':<11}{'cites':>6}{'retrieve':>10}{'rerank':>8}{'generate':>10}{'total':>9}")
    for q, route, cites, retrieve, rerank, generate, total in rows:
        typer.echo(f"{q:<36}{route:<11}{cites:>6}{retrieve:>10.0f}{rerank:>8.0f}{generate:>10.0f}{total:>9.0f}")


def up_with_corpus(s: Settings) -> None:
    """The cluster up, and the demo corpus ingested by the Ray Job (unchanged files are skipped on a re-run)."""
    from cluster.content.package_docs import export_corpus
    from cluster.models.cache import ModelNotPrepared
    from cluster.ops import local
    from cluster.ops.ray_jobs import submit_and_follow

    try:
        local.up(s, echo=typer.echo)
    except (RuntimeError, TimeoutError, ModelNotPrepared) as exc:
        fail(str(exc))
    corpus_dir = s.state_dir / "corpus"
    paths = export_corpus(corpus_dir)
    typer.echo(f"exported {len(paths)} package docs to {corpus_dir}")
    if submit_and_follow(s, ["python", "-m", "jobs.ingest", str(corpus_dir)], echo=typer.echo) != 0:
        fail("the ingestion job failed")


def run_eval_demo(s: Settings, out: Path, concurrency: int, max_tokens: int, cases: int | None = None) -> None:
    """Both shipped sets through every route on the demo cluster; a report each, and the recommendations.
    `cases` keeps only the first N of each set (the demo's short run)."""
    up_with_corpus(s)
    with RagtuneClient(s.http_url) as client:
        adapter = demo_adapter(client)
    recommend_routes(s, adapter, out, concurrency, max_tokens, cases)


def recommend_routes(s: Settings, adapter: str, out: Path, concurrency: int, max_tokens: int,
                     cases: int | None = None) -> None:
    from cluster.cli.commands import run_eval
    from cluster.demo.eval_sets import write_sets
    from cluster.evaluation.rules import Declared

    (qa, n_qa), (extract, n_extract) = write_sets(out / "sets", cases)
    runs = (  # what the team would declare: no QA training data; the extraction adapter's own training set
        ("knowledge-qa", qa, n_qa, ("rag", "hybrid", "plain", "finetuned", "search"), Declared(labelled_examples=0)),
        ("extraction", extract, n_extract, ("plain", "finetuned", "rag", "hybrid"),
         Declared(labelled_examples=len(extraction.split()[0]))),
    )
    rows = []
    for name, path, n, routes, declared in runs:
        typer.secho(f"\n{name}: {n} cases ({path})", bold=True)
        summary = run_eval(s, path.read_bytes(), str(path), routes, adapter, declared, concurrency=concurrency,
                           max_tokens=max_tokens, volume=1000, out_dir=out / name)
        rows.append((name, summary))
    typer.secho("\nrecommendations (ragtune eval, docs/eval.md)", bold=True)
    for name, summary in rows:
        quality = ", ".join(f"{r} {v['quality']:.2f}" for r, v in summary["routes"].items() if v["quality"] is not None)
        typer.echo(f"{name:<14} -> {summary['recommendation']['route']}  ({summary['primary_metric']}: {quality})")


def run_demo(s: Settings) -> None:
    up_with_corpus(s)
    with RagtuneClient(s.http_url) as client:
        for query in QUERIES:
            print_hits(query, client.request("POST", "/v1/search", json={"query": query, "top_n": 3}))
        typer.secho("\nFine-tuning through the queue (POST /v1/files, POST /v1/fine_tuning/jobs)", bold=True)
        adapter = demo_adapter(client)
        base_vs_adapter(client, adapter)
        typer.secho(f"\nThree routes: rag (base model + sources), finetuned and hybrid (adapter {adapter!r})",
                    bold=True)
        three_routes(client, adapter)
    typer.secho("\nWhich route? A short ragtune eval run of the shipped sets (make eval runs them whole)", bold=True)
    recommend_routes(s, adapter, s.state_dir / "evals" / "demo", concurrency=2, max_tokens=48, cases=10)
    typer.secho(f"\nThe cluster keeps running at {s.http_url} (API docs: {s.http_url}/docs).", bold=True)
    typer.echo("Try: ragtune ask \"your question\" [--route rag|finetuned|hybrid --adapter NAME --stream]")
    typer.echo("     ragtune train DATA.jsonl --suffix NAME --follow; ragtune jobs")
    typer.echo("Stop it with: make down  (or: ragtune down)")
