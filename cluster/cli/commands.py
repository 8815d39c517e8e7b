"""The `ragtune` command: local lifecycle, model preparation, ingestion jobs and quick searches."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer
from pydantic import ValidationError

app = typer.Typer(help="ragtune: RAG, fine-tuned and hybrid LLM serving on one Ray cluster.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Offline models of the active profile.", no_args_is_help=True)
corpus_app = typer.Typer(help="The demo corpus (installed packages' documentation).", no_args_is_help=True)
adapters_app = typer.Typer(help="LoRA adapters in the adapter store (served by name, hot-loaded on first use).",
                           no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(corpus_app, name="corpus")
app.add_typer(adapters_app, name="adapters")


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings():  # noqa: ANN201 - imported lazily so `ragtune --help` stays fast
    from cluster.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid settings: {exc}", 2)


@app.command()
def up(wait: Annotated[bool, typer.Option(help="Wait until /readyz answers 200.")] = True) -> None:
    """Start (or join) Ray, start the embedded database, deploy the Serve application."""
    from cluster.ops import local
    from cluster.models.cache import ModelNotPrepared

    try:
        local.up(settings(), echo=typer.echo, wait=wait)
    except (RuntimeError, TimeoutError, ModelNotPrepared) as exc:
        fail(str(exc))


@app.command()
def down() -> None:
    """Stop what `ragtune up` started, and nothing else."""
    from cluster.ops import local

    local.down(settings(), echo=typer.echo)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Deployments, replicas and the database."""
    from cluster.ops import local

    report = local.status(settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    typer.echo(f"profile   {report['profile']}    url {report['url']}")
    database = report["database"]
    typer.echo(f"database  {database['status']}" + (
        f"  ({database.get('documents', 0)} documents, {database.get('chunks', 0)} chunks)"
        if database["status"] == "up" else f"  {database.get('error', '')}"))
    typer.echo(f"ray       {report['ray']['status']}  {report['ray']['address']}")
    serve = report.get("serve")
    if serve:
        typer.echo(f"serve     {serve['status']}")
        for name, dep in serve.get("deployments", {}).items():
            replicas = ", ".join(f"{k.lower()}={v}" for k, v in dep["replicas"].items()) or "no replicas"
            typer.echo(f"  {name:<10} {dep['status']:<10} {replicas}")
    if database["status"] != "up" or report["ray"]["status"] != "up":
        raise typer.Exit(1)


@models_app.command("prepare")
def models_prepare(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Build only this model (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if a verified copy exists.")] = False,
) -> None:
    """Build the offline models into the models cache (a no-op when they are there and verified)."""
    from cluster.models.cache import ModelNotPrepared, prepare

    s = settings()
    typer.echo(f"models cache: {s.models_dir}")
    started = time.monotonic()
    try:
        results = prepare(s.models_dir, only, force=force, echo=typer.echo)
    except ModelNotPrepared as exc:
        fail(str(exc))
    metrics = results.get("minilm-cross-encoder", {}).get("metrics", {})
    if "reranker_mrr_at_10" in metrics:
        typer.echo(f"reranker held-out MRR@10: {metrics['reranker_mrr_at_10']} "
                   f"(embedder alone: {metrics['embedder_mrr_at_10']})")
    typer.echo(f"done in {time.monotonic() - started:.1f} s")


@models_app.command("list")
def models_list() -> None:
    """The active profile's models and where they resolve to."""
    from cluster.models.cache import ModelNotPrepared, resolve

    s = settings()
    p = s.profile_spec
    for role, ref in (("llm", p.llm.model), ("embedder", p.embedder.model), ("reranker", p.reranker.model),
                      ("test llm", p.test_llm.model if p.test_llm else None)):
        if ref is None:
            continue
        try:
            where = resolve(ref, s.models_dir)
        except ModelNotPrepared as exc:
            where = f"NOT PREPARED ({exc})"
        typer.echo(f"{role:<9} {ref:<40} {where}")


@corpus_app.command("export")
def corpus_export(out_dir: Path) -> None:
    """Write the demo corpus (documentation of the installed stack) as files into OUT_DIR."""
    from cluster.content.package_docs import export_corpus

    paths = export_corpus(out_dir)
    typer.echo(f"wrote {len(paths)} documents to {out_dir}")


@app.command()
def ingest(
    directory: Annotated[Path, typer.Argument(help="Directory of .md/.rst/.txt/.html files (recursively).")],
    follow: Annotated[bool, typer.Option(help="Stream the job's logs and wait for it to end.")] = True,
) -> None:
    """Bulk-ingest a directory as a Ray Job (`python -m jobs.ingest DIR`)."""
    from cluster.ops.ray_jobs import submit_and_follow

    directory = directory.expanduser().resolve()
    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    code = submit_and_follow(settings(), ["python", "-m", "jobs.ingest", str(directory)], follow=follow,
                             echo=typer.echo)
    raise typer.Exit(code)


@app.command()
def search(query: str, top_n: Annotated[int, typer.Option(help="Hits to show.")] = 5,
           top_k: Annotated[Optional[int], typer.Option(help="Candidates before reranking.")] = None) -> None:
    """Search the knowledge base through the running ingress and print ranked hits with sources."""
    s = settings()
    body: dict = {"query": query, "top_n": top_n}
    if top_k is not None:
        body["top_k"] = top_k
    try:
        response = httpx.post(f"{s.http_url}/v1/search", json=body, timeout=120)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {s.http_url}: {exc} (is `ragtune up` running?)")
    payload = response.json()
    if response.status_code != 200:
        fail(payload.get("error", {}).get("message", response.text))
    typer.secho(f"\n> {query}", bold=True)
    for rank, hit in enumerate(payload["hits"], 1):
        snippet = " ".join(hit["text"].split())[:220]
        typer.echo(f"{rank}. [{hit['rerank_score']:.3f}] {hit['title']}  ({hit['source']} #{hit['chunk_ordinal']})")
        typer.echo(f"   {snippet}...")
    t = payload["timings"]
    typer.echo(f"   timings: embed {t['embed_ms']:.0f} ms, search {t['search_ms']:.0f} ms, "
               f"rerank {t['rerank_ms']:.0f} ms, total {t['total_ms']:.0f} ms")


@adapters_app.command("list")
def adapters_list() -> None:
    """Adapters in the store: name, content version, base model, rank."""
    from cluster.store.adapters import AdapterStore

    s = settings()
    refs = AdapterStore(s.adapter_store_uri, s.adapter_cache_dir).list()
    typer.echo(f"adapter store: {s.adapter_store_uri} ({len(refs)} adapters)")
    for ref in refs:
        typer.echo(f"  {ref.name:<32} {ref.version}  base={ref.base_model}  r={ref.rank}")


@adapters_app.command("add")
def adapters_add(name: str, directory: Annotated[Path, typer.Argument(help="A PEFT adapter directory.")]) -> None:
    """Publish a PEFT adapter under NAME (replacing any previous version); running replicas serve it next request."""
    from cluster.store.adapters import AdapterError, AdapterStore

    s = settings()
    try:
        ref = AdapterStore(s.adapter_store_uri, s.adapter_cache_dir).put(
            name, directory.expanduser().resolve(), {"base_model": s.llm_spec.served_name, "created": time.time()})
    except AdapterError as exc:
        fail(str(exc))
    typer.echo(f"published {ref.name}@{ref.version}")


@adapters_app.command("remove")
def adapters_remove(name: str) -> None:
    """Delete an adapter from the store."""
    from cluster.store.adapters import AdapterStore

    s = settings()
    if not AdapterStore(s.adapter_store_uri, s.adapter_cache_dir).delete(name):
        fail(f"no adapter named {name!r}")
    typer.echo(f"removed {name}")


def _base_model(url: str) -> str:
    models = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
    return next(m["id"] for m in models if not m.get("parent"))


def _print_answer(payload: dict) -> None:
    for c in payload.get("citations") or []:
        quote = " ".join(c["quote"].split())[:160]
        typer.echo(f"   [Source {c['source_number']}] {c['title']} ({c['source']} #{c['chunk_ordinal']}): "
                   f"\"{quote}\"")
    t = payload.get("timings") or {}
    usage = payload.get("usage") or {}
    typer.secho(f"   route {payload.get('route')} | embed {t.get('embed_ms', 0):.0f} ms, search "
                f"{t.get('search_ms', 0):.0f} ms, rerank {t.get('rerank_ms', 0):.0f} ms, generate "
                f"{t.get('generate_ms', 0):.0f} ms (first token {t.get('ttft_ms') or 0:.0f} ms), total "
                f"{t.get('total_ms', 0):.0f} ms | tokens {usage.get('prompt_tokens', 0)} in, "
                f"{usage.get('completion_tokens', 0)} out", dim=True)


def ask_once(url: str, question: str, model: str, route: str | None, stream: bool, max_tokens: int,
             extra: dict | None = None, echo_text: bool = True) -> tuple[str, dict]:
    """One question through /v1/chat/completions; returns (answer, the response's summary fields)."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream, **({"route": route} if route else {}), **(extra or {})}
    with httpx.Client(timeout=600) as client:
        if not stream:
            response = client.post(f"{url}/v1/chat/completions", json=body)
            payload = response.json()
            if response.status_code != 200:
                fail(payload.get("error", {}).get("message", response.text))
            text = payload["choices"][0]["message"]["content"]
            if echo_text:
                typer.echo(text)
            return text, payload
        parts, final = [], {}
        with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                fail(response.json().get("error", {}).get("message", response.text))
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line.removeprefix("data: "))
                if event["choices"]:
                    piece = event["choices"][0]["delta"].get("content") or ""
                    parts.append(piece)
                    if echo_text:
                        typer.echo(piece, nl=False)
                else:
                    final = event
        if echo_text:
            typer.echo()
        return "".join(parts), final


@app.command()
def ask(
    question: str,
    route: Annotated[Optional[str], typer.Option(help="rag | finetuned | hybrid | plain (default: rag, or "
                                                      "finetuned with --adapter).")] = None,
    adapter: Annotated[Optional[str], typer.Option(help="An adapter's name (`ragtune adapters list`).")] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they are generated.")] = False,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    top_n: Annotated[Optional[int], typer.Option(help="Sources in the prompt (rag, hybrid).")] = None,
) -> None:
    """Ask the running cluster a question; print the answer, its citations and per-stage timings."""
    s = settings()
    try:
        model = adapter or _base_model(s.http_url)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        fail(f"cannot reach {s.http_url}: {exc} (is `ragtune up` running?)")
    typer.secho(f"\n> {question}", bold=True)
    try:
        _, payload = ask_once(s.http_url, question, model, route, stream, max_tokens,
                              {"top_n": top_n} if top_n else None)
    except httpx.HTTPError as exc:
        fail(f"request failed: {exc}")
    _print_answer(payload)


# ------------------------------------------------------------------------------------------ fine-tuning

def _api(method: str, url: str, **kwargs) -> dict:  # noqa: ANN003
    """One API call; an error response is a CLI failure carrying the server's message."""
    try:
        response = httpx.request(method, url, timeout=120, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc} (is `ragtune up` running?)")
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        fail(message, 2 if response.status_code < 500 else 1)
    return response.json()


def follow_job(url: str, job_id: str, poll_s: float = 1.0) -> dict:
    """Print a job's events as they happen, with a progress bar over its steps; returns the finished job."""
    from tqdm import tqdm

    seen, bar, latest = 0, None, {}
    while True:
        job = _api("GET", f"{url}/v1/fine_tuning/jobs/{job_id}")
        page = _api("GET", f"{url}/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 1000})["data"]
        for event in reversed(page):
            number = int(event["id"].removeprefix("ftevent-"))
            if number <= seen:
                continue
            seen = number
            data = event.get("data") or {}
            if event["type"] == "metrics" and data.get("total_steps"):
                if bar is None:
                    bar = tqdm(total=data["total_steps"], unit="step", dynamic_ncols=True)
                bar.update(data["step"] - bar.n)
                latest.update({k: round(data[k], 4) for k in ("train_loss", "valid_loss", "tokens_per_s")
                               if k in data})
                bar.set_postfix(latest, refresh=True)
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(event["created_at"]))
                (bar.write if bar else typer.echo)(f"{stamp} {event['message']}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if bar is not None:
                bar.close()
            return job
        time.sleep(poll_s)


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="JSONL: {instruction, input, output} or {messages} per line.")],
    suffix: Annotated[Optional[str], typer.Option(help="Part of the adapter name ft:<base>:<suffix>:<id>.")] = None,
    follow: Annotated[bool, typer.Option(help="Show progress until the job ends; exit 0 only if it succeeded.")]
    = False,
    epochs: Annotated[Optional[int], typer.Option(min=1, max=50)] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, max=256)] = None,
    learning_rate_multiplier: Annotated[Optional[float], typer.Option(help="Of 2e-4.")] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1)] = None,
    system_prompt: Annotated[Optional[str], typer.Option(help="Trained with, and used by the fine-tuned route.")]
    = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
) -> None:
    """Upload a dataset and queue a LoRA fine-tuning job on the running cluster (OpenAI's fine-tuning API)."""
    from cluster.training.datasets import DatasetError, parse

    s = settings()
    try:
        raw = data.read_bytes()
        parse(raw, name=str(data))  # the server checks again, lengths included; this fails before uploading
    except OSError as exc:
        fail(f"cannot read {data}: {exc}", 2)
    except DatasetError as exc:
        fail(str(exc), 2)
    uploaded = _api("POST", f"{s.http_url}/v1/files", files={"file": (data.name, raw)},
                    data={"purpose": "fine-tune"})
    typer.echo(f"uploaded {data} as {uploaded['id']} ({uploaded['examples']} examples)")
    hyper = {k: v for k, v in {"n_epochs": epochs, "batch_size": batch_size, "max_steps": max_steps,
                               "learning_rate_multiplier": learning_rate_multiplier}.items() if v is not None}
    base = _base_model(s.http_url)
    body = {"model": base, "training_file": uploaded["id"], "hyperparameters": hyper, "priority": priority,
            **({"suffix": suffix} if suffix else {}), **({"system_prompt": system_prompt} if system_prompt else {})}
    job = _api("POST", f"{s.http_url}/v1/fine_tuning/jobs", json=body)
    typer.echo(f"queued fine-tuning job {job['id']} on {base}")
    if not follow:
        typer.echo(f"follow it with: ragtune jobs --follow {job['id']}")
        return
    _finish(s.http_url, follow_job(s.http_url, job["id"]))


def _finish(url: str, job: dict) -> None:
    if job["status"] == "succeeded":
        typer.secho(f"succeeded: {job['fine_tuned_model']} is served now "
                    f"(ragtune ask '...' --adapter {job['fine_tuned_model']})", fg=typer.colors.GREEN)
        return
    fail(f"job {job['id']} {job['status']}" + (f": {job['error']['message']}" if job.get("error") else ""))


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    follow: Annotated[Optional[str], typer.Option(help="Follow this job until it ends.")] = None,
    cancel: Annotated[Optional[str], typer.Option(help="Cancel this job.")] = None,
) -> None:
    """List recent fine-tuning jobs (or follow / cancel one)."""
    s = settings()
    if cancel:
        job = _api("POST", f"{s.http_url}/v1/fine_tuning/jobs/{cancel}/cancel")
        typer.echo(f"{job['id']}: {'cancelled' if job['status'] == 'cancelled' else 'stopping'}")
        return
    if follow:
        _finish(s.http_url, follow_job(s.http_url, follow))
        return
    listed = _api("GET", f"{s.http_url}/v1/fine_tuning/jobs", params={"limit": limit})["data"]
    if not listed:
        typer.echo("no fine-tuning jobs yet (ragtune train DATA.jsonl)")
        return
    typer.echo(f"{'id':<31}{'status':<11}{'created':<21}{'steps':>6}{'loss':>8}  fine-tuned model")
    for j in listed:
        m = j.get("metrics") or {}
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["created_at"]))
        loss = f"{m['final_loss']:.3f}" if m.get("final_loss") is not None else "-"
        typer.echo(f"{j['id']:<31}{j['status']:<11}{created:<21}{m.get('steps', '-'):>6}{loss:>8}  "
                   f"{j.get('fine_tuned_model') or (j.get('error') or {}).get('message', '')}")


DEMO_QUERIES = (
    "How do I create an HNSW index for approximate nearest neighbor search in Postgres?",
    "How can I fine-tune a large language model with LoRA adapters on a small GPU?",
    "How does Ray Serve scale model deployments?",
    "What is the fastest way to serve an LLM with an OpenAI-compatible API?",
)
DEMO_QUESTIONS = ("What is httpx?", "What does the peft package do?")
DEMO_SUFFIX = "json-extract"


def _demo_adapter(s) -> str:  # noqa: ANN001
    """Train the demo's JSON-extraction adapter through the fine-tuning queue, or reuse the one already trained on
    this exact dataset. Prints how long the first adapter token took after the job succeeded."""
    from cluster.demo import extraction as extraction_task
    from cluster.training import datasets as training_data

    train_set, _ = extraction_task.split()
    data = extraction_task.jsonl(train_set)
    digest = training_data.digest(data)
    models = _api("GET", f"{s.http_url}/v1/models")["data"]
    for m in models:
        if ((m.get("metadata") or {}).get("dataset") or {}).get("sha256") == digest:
            typer.echo(f"reusing adapter {m['id']} (trained on this dataset before)")
            return m["id"]
    uploaded = _api("POST", f"{s.http_url}/v1/files", files={"file": ("json-extract.jsonl", data)},
                    data={"purpose": "fine-tune"})
    body = {"model": _base_model(s.http_url), "training_file": uploaded["id"], "suffix": DEMO_SUFFIX,
            "system_prompt": extraction_task.SYSTEM_PROMPT,
            "hyperparameters": {"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 5}}
    job = _api("POST", f"{s.http_url}/v1/fine_tuning/jobs", json=body)
    typer.echo(f"queued {job['id']}: LoRA on {len(train_set)} sentence -> JSON examples (one epoch, about 5 "
               "minutes on 2 cores); progress below comes from the job's events")
    job = follow_job(s.http_url, job["id"])
    succeeded_at = time.monotonic()
    _finish(s.http_url, job)
    name = job["fine_tuned_model"]
    extraction_task.complete(s.http_url, name, [train_set[0][0]], "finetuned", max_tokens=1)
    typer.echo(f"job success -> first token from the new adapter: {time.monotonic() - succeeded_at:.2f} s "
               "(no restart, no redeploy)")
    return name


def _demo_base_vs_adapter(s, adapter: str) -> None:  # noqa: ANN001
    from cluster.demo import extraction as extraction_task

    base = _base_model(s.http_url)
    _, test = extraction_task.split()
    sentences, records = [t[0] for t in test], [t[1] for t in test]
    typer.secho(f"\nBase model vs adapter on {len(test)} held-out sentences (unseen names, cities, phrasings)",
                bold=True)
    started = time.monotonic()
    base_out = extraction_task.complete(s.http_url, base, sentences, "plain", extraction_task.SYSTEM_PROMPT)
    tuned_out = extraction_task.complete(s.http_url, adapter, sentences, "finetuned")
    for sentence, b, t in list(zip(sentences, base_out, tuned_out))[:3]:
        typer.secho(f"\n> {sentence}", bold=True)
        typer.echo(f"  base:    {' '.join(b.split())[:160]}")
        typer.echo(f"  adapter: {' '.join(t.split())[:160]}")
    b_score, t_score = extraction_task.score(base_out, records), extraction_task.score(tuned_out, records)
    typer.echo(f"\n{'':<10}{'valid JSON':>12}{'schema':>9}{'exact match':>13}")
    for label, sc in (("base", b_score), ("adapter", t_score)):
        typer.echo(f"{label:<10}{sc['valid_json']:>12.2f}{sc['schema']:>9.2f}{sc['exact_match']:>13.2f}")
    typer.echo(f"({2 * len(test)} requests in {time.monotonic() - started:.0f} s)")


def _demo_routes(s, adapter: str) -> None:  # noqa: ANN001
    from cluster.demo import extraction as extraction_task

    base = _base_model(s.http_url)
    _, test = extraction_task.split()
    asks = [(q, "rag", base) for q in DEMO_QUESTIONS]
    sentence_question = extraction_task.prompt(test[0][0])[0]["content"]
    asks += [(sentence_question, "finetuned", adapter), (sentence_question, "hybrid", adapter)]
    rows = []
    for question, route, model in asks:
        typer.secho(f"\n> [{route}] {question}", bold=True)
        text, payload = ask_once(s.http_url, question, model, route, False, 96, echo_text=False)
        typer.echo("   " + " ".join(text.split()))
        _print_answer(payload)
        t = payload["timings"]
        rows.append((question.splitlines()[-1][:34], route, len(payload["citations"]), t["embed_ms"] + t["search_ms"],
                     t["rerank_ms"], t["generate_ms"], t["total_ms"]))
    typer.secho("\nside by side (ms)", bold=True)
    typer.echo(f"{'question':<36}{'route':<11}{'cites':>6}{'retrieve':>10}{'rerank':>8}{'generate':>10}{'total':>9}")
    for q, route, cites, retrieve, rerank, generate, total in rows:
        typer.echo(f"{q:<36}{route:<11}{cites:>6}{retrieve:>10.0f}{rerank:>8.0f}{generate:>10.0f}{total:>9.0f}")


@app.command()
def demo() -> None:
    """Bring the cluster up, ingest the stack's docs as a Ray Job, search, fine-tune a JSON-extraction adapter
    through the queue, compare base vs adapter, then ask on all three routes."""
    from cluster.ops import local
    from cluster.content.package_docs import export_corpus
    from cluster.ops.ray_jobs import submit_and_follow
    from cluster.models.cache import ModelNotPrepared

    s = settings()
    try:
        local.up(s, echo=typer.echo)
    except (RuntimeError, TimeoutError, ModelNotPrepared) as exc:
        fail(str(exc))
    corpus_dir = s.state_dir / "corpus"
    paths = export_corpus(corpus_dir)
    typer.echo(f"exported {len(paths)} package docs to {corpus_dir}")
    if submit_and_follow(s, ["python", "-m", "jobs.ingest", str(corpus_dir)], echo=typer.echo) != 0:
        fail("the ingestion job failed")
    for query in DEMO_QUERIES:
        search(query, top_n=3, top_k=None)
    typer.secho("\nFine-tuning through the queue (POST /v1/files, POST /v1/fine_tuning/jobs)", bold=True)
    adapter = _demo_adapter(s)
    _demo_base_vs_adapter(s, adapter)
    typer.secho(f"\nThree routes: rag (base model + sources), finetuned and hybrid (adapter {adapter!r})", bold=True)
    _demo_routes(s, adapter)
    typer.secho(f"\nThe cluster keeps running at {s.http_url} (API docs: {s.http_url}/docs).", bold=True)
    typer.echo("Try: ragtune ask \"your question\" [--route rag|finetuned|hybrid --adapter NAME --stream]")
    typer.echo("     ragtune train DATA.jsonl --suffix NAME --follow; ragtune jobs")
    typer.echo("Stop it with: make down  (or: ragtune down)")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
