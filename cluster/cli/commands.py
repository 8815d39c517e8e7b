"""The `ragtune` commands: local lifecycle, models, ingestion jobs, search, ask, adapters, fine-tuning, the demo."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from pydantic import ValidationError

from cluster.cli.client import RagtuneClient
from cluster.evaluation.rules import Declared
from cluster.evaluation.runner import RunOptions

app = typer.Typer(help="ragtune: RAG, fine-tuned and hybrid LLM serving on one Ray cluster.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Offline models of the active profile.", no_args_is_help=True)
corpus_app = typer.Typer(help="The demo corpus (installed packages' documentation).", no_args_is_help=True)
adapters_app = typer.Typer(help="LoRA adapters in the adapter store (served by name, hot-loaded on first use).",
                           no_args_is_help=True)
evals_app = typer.Typer(help="Eval runs recorded on the cluster (POST /v1/evals; `ragtune eval` submits one).",
                        no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(corpus_app, name="corpus")
app.add_typer(adapters_app, name="adapters")
keys_app = typer.Typer(help="API keys (`Authorization: Bearer`); stored hashed in the cluster's database.",
                       no_args_is_help=True)
app.add_typer(evals_app, name="evals")
app.add_typer(keys_app, name="keys")
feedback_app = typer.Typer(help="Users' ratings of answers (POST /v1/feedback), as eval sets and training files.",
                           no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


def say_error(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    say_error(message)
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
    grounded = results.get("grounded-answering", {}).get("metrics", {})
    if "final_loss" in grounded:
        typer.echo(f"grounded-answering adapter: {grounded['examples']} examples, {grounded['steps']} steps, loss "
                   f"{grounded['first_loss']} -> {grounded['final_loss']} (held-out {grounded['eval_loss']})")
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
                      ("test llm", p.test_llm.model if p.test_llm else None), ("rag answers", p.answer_adapter),
                      ("guardrails", p.guardrails.model if p.guardrails.enabled and p.guardrails.classifier else None)):
        if ref is None:
            continue
        try:
            where = resolve(ref, s.models_dir)
        except ModelNotPrepared as exc:
            where = f"NOT PREPARED ({exc})"
        typer.echo(f"{role:<11} {ref:<40} {where}")
    from cluster.models.rerank_gate import rerank_decision

    decision = rerank_decision(s)
    typer.echo(f"rerank: {'on' if decision.rerank else 'OFF'} by default on every endpoint ({decision.reason})"
               + ("" if decision.rerank else '; a request with "rerank": true uses it anyway'))


@corpus_app.command("eval-sets")
def corpus_eval_sets(out_dir: Path) -> None:
    """Write the shipped evaluation sets (knowledge-qa.jsonl, extraction.jsonl) into OUT_DIR."""
    from cluster.demo.eval_sets import write_sets

    for path, n in write_sets(out_dir):
        typer.echo(f"wrote {n} cases to {path}")


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
    body: dict = {"query": query, "top_n": top_n, **({"top_k": top_k} if top_k is not None else {})}
    with RagtuneClient(settings().http_url, timeout_s=120) as client:
        print_hits(query, client.request("POST", "/v1/search", json=body))


def print_hits(query: str, payload: dict) -> None:
    typer.secho(f"\n> {query}", bold=True)
    for rank, hit in enumerate(payload["hits"], 1):
        snippet = " ".join(hit["text"].split())[:220]
        score = f"{hit['rerank_score']:.3f}" if hit["rerank_score"] is not None else f"{hit['fused_score']:.3f}"
        typer.echo(f"{rank}. [{score}] {hit['title']}  ({hit['source']} #{hit['chunk_ordinal']})")
        typer.echo(f"   {snippet}...")
    t = payload["timings"]
    typer.echo(f"   timings: embed {t['embed_ms']:.0f} ms, search {t['search_ms']:.0f} ms, "
               f"rerank {t['rerank_ms']:.0f} ms, total {t['total_ms']:.0f} ms")


@adapters_app.command("list")
def adapters_list() -> None:
    """Adapters in the store: name, content version, base model, rank."""
    from cluster.store.adapters import AdapterStore

    s = settings()
    refs = AdapterStore.from_settings(s).list()
    typer.echo(f"adapter store: {s.adapter_store_uri} ({len(refs)} adapters)")
    for ref in refs:
        typer.echo(f"  {ref.name:<32} {ref.version}  base={ref.base_model}  r={ref.rank}")


@adapters_app.command("add")
def adapters_add(name: str, directory: Annotated[Path, typer.Argument(help="A PEFT adapter directory.")]) -> None:
    """Publish a PEFT adapter under NAME (replacing any previous version); running replicas serve it next request."""
    from cluster.store.adapters import AdapterError, AdapterStore

    s = settings()
    try:
        ref = AdapterStore.from_settings(s).put(
            name, directory.expanduser().resolve(), {"base_model": s.llm_spec.served_name, "created": time.time()})
    except AdapterError as exc:
        fail(str(exc))
    typer.echo(f"published {ref.name}@{ref.version}")


@adapters_app.command("remove")
def adapters_remove(name: str) -> None:
    """Delete an adapter from the store."""
    from cluster.store.adapters import AdapterStore

    s = settings()
    if not AdapterStore.from_settings(s).delete(name):
        fail(f"no adapter named {name!r}")
    typer.echo(f"removed {name}")


def _with_database(action):  # noqa: ANN001, ANN202 - one async call against the cluster's database
    import asyncio

    from cluster.store import db

    async def run():  # noqa: ANN202
        try:
            pool = await db.open_pool(settings(), max_size=2)
        except (db.DatabaseUnavailable, OSError) as exc:
            fail(f"cannot reach the database ({exc}); `ragtune up` starts it")
        try:
            return await action(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="What the key is for (shown by `keys list`).")],
                scope: Annotated[str, typer.Option(help="use: model endpoints; admin: everything.")] = "use") -> None:
    """Create a key and print it once (only its hash is stored)."""
    from cluster.store import api_keys

    if scope not in api_keys.SCOPES:
        fail(f"--scope must be one of {', '.join(api_keys.SCOPES)}, got {scope!r}", 2)
    try:
        record, key = _with_database(lambda pool: api_keys.create(pool, name, scope))  # type: ignore[arg-type]
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"created {record.id} ({record.scope}, {record.name!r}); the key, shown only now:")
    typer.echo(key)


@keys_app.command("list")
def keys_list(revoked: Annotated[bool, typer.Option(help="Include revoked keys.")] = False) -> None:
    """Keys by id, scope, name and prefix (never the key)."""
    from cluster.store import api_keys

    keys = _with_database(lambda pool: api_keys.list_keys(pool, include_revoked=revoked))
    typer.echo(f"{len(keys)} keys" + ("" if keys else ": the ingress serves loopback clients without one"))
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"  {k.id}  {k.scope:<5}  {k.prefix}...  {state:<22}  {k.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`ragtune keys list`).")]) -> None:
    """Revoke a key: the next request with it is a 401, on every replica."""
    from cluster.store import api_keys

    if _with_database(lambda pool: api_keys.revoke(pool, key_id)) is None:
        fail(f"no active key with id {key_id!r}", 2)
    typer.echo(f"revoked {key_id}")


def print_answer(payload: dict) -> None:
    """An answer's citations and its per-stage timings and token counts."""
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


@app.command()
def ask(
    question: str,
    route: Annotated[Optional[str], typer.Option(help="rag | finetuned | hybrid | plain (default: rag, or "
                                                      "finetuned with --adapter).")] = None,
    adapter: Annotated[Optional[str], typer.Option(help="An adapter's name (`ragtune adapters list`).")] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they are generated.")] = False,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    top_n: Annotated[Optional[int], typer.Option(help="Sources in the prompt (rag, hybrid).")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0, max=2, help="Default: the route's (the profile's "
                                                                           "sampling: rag 0.1, hybrid 0).")] = None,
) -> None:
    """Ask the running cluster a question; print the answer, its citations and per-stage timings."""
    with RagtuneClient(settings().http_url) as client:
        body = {"model": adapter or client.base_model(), "messages": [{"role": "user", "content": question}],
                "max_tokens": max_tokens, **({"route": route} if route else {}),
                **({"temperature": temperature} if temperature is not None else {}),
                **({"top_n": top_n} if top_n else {})}
        typer.secho(f"\n> {question}", bold=True)
        if stream:
            _, payload = client.chat_stream(body, lambda piece: typer.echo(piece, nl=False))
            typer.echo()
        else:
            payload = client.chat(body)
            typer.echo(payload["choices"][0]["message"]["content"])
    print_answer(payload)


# ------------------------------------------------------------------------------------------ fine-tuning

def follow_job(client: RagtuneClient, job_id: str, poll_s: float = 1.0) -> dict:
    """Print a job's events as they happen, with a progress bar over its steps; returns the finished job."""
    from tqdm import tqdm

    seen, bar, latest = 0, None, {}
    while True:
        job = client.request("GET", f"/v1/fine_tuning/jobs/{job_id}")
        page = client.request("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 1000})["data"]
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


def report_finished(job: dict) -> None:
    """Success says how to use the adapter; anything else is a CLI failure with the job's error."""
    if job["status"] == "succeeded":
        typer.secho(f"succeeded: {job['fine_tuned_model']} is served now "
                    f"(ragtune ask '...' --adapter {job['fine_tuned_model']})", fg=typer.colors.GREEN)
        return
    fail(f"job {job['id']} {job['status']}" + (f": {job['error']['message']}" if job.get("error") else ""))


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
    with RagtuneClient(s.http_url, timeout_s=120) as client:
        uploaded = client.request("POST", "/v1/files", files={"file": (data.name, raw)},
                                  data={"purpose": "fine-tune"})
        typer.echo(f"uploaded {data} as {uploaded['id']} ({uploaded['examples']} examples)")
        hyper = {k: v for k, v in {"n_epochs": epochs, "batch_size": batch_size, "max_steps": max_steps,
                                   "learning_rate_multiplier": learning_rate_multiplier}.items() if v is not None}
        base = client.base_model()
        body = {"model": base, "training_file": uploaded["id"], "hyperparameters": hyper, "priority": priority,
                **({"suffix": suffix} if suffix else {}),
                **({"system_prompt": system_prompt} if system_prompt else {})}
        job = client.request("POST", "/v1/fine_tuning/jobs", json=body)
        typer.echo(f"queued fine-tuning job {job['id']} on {base}")
        if not follow:
            typer.echo(f"follow it with: ragtune jobs --follow {job['id']}")
            return
        report_finished(follow_job(client, job["id"]))


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    follow: Annotated[Optional[str], typer.Option(help="Follow this job until it ends.")] = None,
    cancel: Annotated[Optional[str], typer.Option(help="Cancel this job.")] = None,
) -> None:
    """List recent fine-tuning jobs (or follow / cancel one)."""
    with RagtuneClient(settings().http_url, timeout_s=120) as client:
        if cancel:
            job = client.request("POST", f"/v1/fine_tuning/jobs/{cancel}/cancel")
            typer.echo(f"{job['id']}: {'cancelled' if job['status'] == 'cancelled' else 'stopping'}")
            return
        if follow:
            report_finished(follow_job(client, follow))
            return
        listed = client.request("GET", "/v1/fine_tuning/jobs", params={"limit": limit})["data"]
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


def _floors(specs: list[str]) -> list[tuple[str | None, str, float]]:
    """`[ROUTE.]METRIC=VALUE` -> (route or None for every route, metric, floor)."""
    floors = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        route, dot, metric = name.rpartition(".")
        try:
            floor = float(value)
        except ValueError:
            floor = None
        if not sep or not metric or floor is None:
            fail(f"--fail-under takes [ROUTE.]METRIC=VALUE (e.g. finetuned.exact_fields=0.9), got {spec!r}", 2)
        floors.append((route if dot else None, metric, floor))
    return floors


def _below(report: dict, floors: list[tuple[str | None, str, float]]) -> list[str]:
    misses = []
    for route, metric, floor in floors:
        for name, r in report["routes"].items():
            value = r["quality"] if metric == "quality" else r["metrics"].get(metric)
            if (route is None or route == name) and value is not None and value < floor:
                misses.append(f"{name} {metric} {value:.3f} < {floor}")
            elif route == name and value is None:
                misses.append(f"{name} has no {metric}")
    return misses


@app.command("eval")
def evaluate(
    testset_path: Annotated[Path, typer.Argument(metavar="TESTSET.jsonl", help="One case a line (docs/eval.md).")],
    routes: Annotated[Optional[str], typer.Option(help="Comma-separated: rag, finetuned, hybrid, plain, search. "
                                                       "Default: rag,plain,search, plus finetuned,hybrid with "
                                                       "--adapter.")] = None,
    adapter: Annotated[Optional[str], typer.Option(help="The adapter for the finetuned and hybrid routes.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = RunOptions.concurrency,
    max_tokens: Annotated[int, typer.Option(min=1)] = RunOptions.max_tokens,
    volume: Annotated[float, typer.Option(min=0, help="Queries per day, for the monthly cost.")] = 1000,
    out: Annotated[Optional[Path], typer.Option(help="Report directory (default: STATE_DIR/evals/<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    fail_under: Annotated[Optional[list[str]], typer.Option(help="[ROUTE.]METRIC=VALUE: exit 1 below it "
                                                                 "(repeatable; `quality` is the primary metric).")]
    = None,
    knowledge_changes: Annotated[str, typer.Option(help="daily | weekly | monthly | quarterly | rarely")]
    = Declared.knowledge_changes,
    citations_required: Annotated[bool, typer.Option(help="Answers must cite their sources.")]
    = Declared.citations_required,
    latency_budget_ms: Annotated[Optional[float], typer.Option(help="p95 per answer a route must meet.")]
    = Declared.latency_budget_ms,
    labelled_examples: Annotated[int, typer.Option(min=0, help="Labelled examples you could train on.")]
    = Declared.labelled_examples,
    training_pipeline: Annotated[bool, typer.Option(help="Whether the team can maintain a training pipeline.")]
    = Declared.can_maintain_training,
    judge: Annotated[Optional[bool], typer.Option(help="Also grade answers with the served model (judge_score; "
                                                       "default: the profile's, off on cpu-dev).")] = None,
    structured_output: Annotated[bool, typer.Option(help="json cases: constrain answers with expected's JSON "
                                                         "schema (response_format, guided decoding).")] = False,
    search_mode: Annotated[str, typer.Option(help="The search route's: hybrid, vector or keyword (one side "
                                                  "alone, to measure fusion against it).")] = "hybrid",
    rewrite: Annotated[Optional[bool], typer.Option(help="Query rewriting on the retrieving routes (default: the "
                                                         "profile's, on).")] = None,
    grounded: Annotated[Optional[bool], typer.Option(help="The rag route through the profile's grounded-answering "
                                                          "adapter (default: the profile's; on for cpu-dev).")]
    = None,
) -> None:
    """Run a test set through every route on the running cluster, measure quality, grounding, latency, tokens and
    monthly cost per route, and recommend one (the article's rules)."""
    s = settings()
    floors = _floors(fail_under or [])
    if search_mode not in ("hybrid", "vector", "keyword"):
        fail(f"--search-mode must be hybrid, vector or keyword, got {search_mode!r}", 2)
    if knowledge_changes not in ("daily", "weekly", "monthly", "quarterly", "rarely"):
        fail(f"--knowledge-changes must be daily, weekly, monthly, quarterly or rarely, got {knowledge_changes!r}", 2)
    try:
        data = testset_path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {testset_path}: {exc}", 2)
    chosen = tuple(r.strip() for r in routes.split(",") if r.strip()) if routes else None
    declared = Declared(knowledge_changes=knowledge_changes, citations_required=citations_required,  # type: ignore[arg-type]
                        latency_budget_ms=latency_budget_ms, labelled_examples=labelled_examples,
                        can_maintain_training=training_pipeline)
    summary = run_eval(s, data, str(testset_path), chosen, adapter, declared, concurrency=concurrency,
                       max_tokens=max_tokens, volume=volume,
                       out_dir=out or s.state_dir / "evals" / time.strftime("%Y%m%d-%H%M%S"), judge=judge,
                       structured_output=structured_output, search_mode=search_mode, rewrite=rewrite,
                       grounded=grounded, quiet=as_json)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "disagreements"}, indent=2, default=str))
    misses = _below(summary, floors)
    if misses:
        fail("below the floor: " + "; ".join(misses))


def run_eval(s, data: bytes, name: str, routes: tuple[str, ...] | None, adapter: str | None, declared, *,  # noqa: ANN001
             concurrency: int, max_tokens: int, volume: float, out_dir: Path, judge: bool | None = None,
             structured_output: bool = False, search_mode: str = "hybrid", rewrite: bool | None = None,
             grounded: bool | None = None, quiet: bool = False) -> dict:
    """Parse here (line numbers before anything is sent), run on the cluster, write the report; the summary.
    A refused set fails the command (exit 2); a refused submission or a run that did not complete raises
    ClientError (the CLI's main prints it)."""
    from cluster.cli.evals import run_testset
    from cluster.evaluation import testset
    from cluster.training.datasets import DatasetError

    try:
        cases = testset.parse(data, name=name)
        return run_testset(s.http_url, cases, routes, adapter, declared, concurrency=concurrency,
                           max_tokens=max_tokens, queries_per_day=volume, name=Path(name).name, out_dir=out_dir,
                           judge=judge, structured_output=structured_output, search_mode=search_mode,
                           rewrite=rewrite, grounded=grounded, quiet=quiet)
    except DatasetError as exc:
        fail(str(exc), 2)


@evals_app.command("list")
def evals_list(limit: Annotated[int, typer.Option(min=1, max=100)] = 20) -> None:
    """Recent eval runs, newest first."""
    with RagtuneClient(settings().http_url) as client:
        runs = client.request("GET", "/v1/evals", params={"limit": limit})["data"]
    for r in runs:
        rec = (r["report"] or {}).get("recommendation", {}).get("route") or "-"
        typer.echo(f"{r['id']}  {r['status']:<11} {r['progress']['completed']:>5}/{r['progress']['total']:<5} "
                   f"{','.join(r['routes']):<32} -> {rec:<9} {r['name'] or ''}")
    if not runs:
        typer.echo("no eval runs yet (ragtune eval TESTSET.jsonl)")


@evals_app.command("show")
def evals_show(eval_id: str,
               out: Annotated[Optional[Path], typer.Option(help="Write the report here (completed runs).")] = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False) -> None:
    """One run: status and counts; for a completed run, its recommendation table (and the report files)."""
    from cluster.cli.evals import write_report

    s = settings()
    with RagtuneClient(s.http_url) as client:
        run = client.request("GET", f"/v1/evals/{eval_id}")
        if as_json:
            typer.echo(json.dumps(run, indent=2))
            return
        typer.echo(f"{run['id']}: {run['status']}, {run['progress']['completed']}/{run['progress']['total']} answers "
                   f"({run['result_counts']['passed']} passed, {run['result_counts']['failed']} failed, "
                   f"{run['result_counts']['errored']} errored), attempt {run['attempt']}")
        if run["error"]:
            typer.echo(f"error: {run['error']['message']}")
        if run["status"] == "completed":
            write_report(client, run, out or s.state_dir / "evals" / eval_id, echo=typer.echo)


@evals_app.command("cancel")
def evals_cancel(eval_id: str) -> None:
    """Cancel a queued or running eval run (results recorded so far are kept)."""
    with RagtuneClient(settings().http_url) as client:
        run = client.request("POST", f"/v1/evals/{eval_id}/cancel")
    typer.echo(f"{run['id']}: {run['status']}{' (stopping)' if run['status'] == 'in_progress' else ''}")


@app.command("eval-demo")
def eval_demo(out: Annotated[Path, typer.Option(help="Where the two reports go.")] = Path("docs/eval"),
              concurrency: Annotated[int, typer.Option(min=1, max=64)] = 2,
              max_tokens: Annotated[int, typer.Option(min=1)] = 64) -> None:
    """What `make eval` runs: the demo cluster, then the two shipped sets (knowledge QA, JSON extraction) through
    every route, with a report each under OUT."""
    from cluster.cli.demo import run_eval_demo

    run_eval_demo(settings(), out, concurrency=concurrency, max_tokens=max_tokens)


@app.command()
def demo() -> None:
    """Bring the cluster up, ingest the stack's docs as a Ray Job, search, fine-tune a JSON-extraction adapter
    through the queue, compare base vs adapter, then ask on all three routes."""
    from cluster.cli.demo import run_demo

    run_demo(settings())


@feedback_app.command("export")
def feedback_export(
    as_: Annotated[str, typer.Option("--as", help="eval: an eval test set; train: a fine-tuning file.")],
    out: Annotated[Path, typer.Option(help="Where to write the JSONL.")],
) -> None:
    """Rated answers as JSONL: `--as eval` for `ragtune eval FILE`, `--as train` for `ragtune train FILE`."""
    if as_ not in ("eval", "train"):
        fail(f"--as must be eval or train, not {as_!r}", 2)
    with RagtuneClient(settings().http_url, timeout_s=120) as client:
        response = client.raw("GET", "/v1/feedback/export", params={"as": as_})
    lines = int(response.headers.get("x-lines", "0"))
    if lines == 0:
        fail("no rated answers to export yet (POST /v1/feedback rates one)", 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(response.content)
    tmp.replace(out)  # never a half-written file under the name
    typer.echo(f"wrote {lines} {'cases' if as_ == 'eval' else 'examples'} to {out}")
