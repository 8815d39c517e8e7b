"""An evaluation run, as a Ray Job: every case of a test set through every route of the running ingress (the
HTTP path users take), each answer scored and recorded in Postgres as it ends, then the report and the
recommendation (cluster/evaluation/report.py) stored with the run.

    # what the eval dispatcher submits for a run created with POST /v1/evals (or `ragtune eval`):
    python -m jobs.eval --eval_id evalrun-...
    # by hand: create the run here and execute it (`ragtune evals show ID` reads it afterwards)
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.eval --testset docs/eval/sets/knowledge-qa.jsonl --routes rag,plain,search

Resumable: a run's results are unique per case and route, so a job that starts on a run that already has some
asks only what is missing. An ingress (or database) that cannot be reached stops the job with exit code 75
(EX_TEMPFAIL) without recording those cases; the dispatcher resubmits it as the next attempt. A requested cancellation stops
it after the answers in flight. Exit codes: 0 finished (completed or canceled), 1 failed, 2 refused, 75 retry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("ragtune.jobs.eval")

EXIT_FAILED, EXIT_REFUSED, EXIT_RETRY = 1, 2, 75
PROGRESS_EVERY_S = 5.0


@dataclass
class EvalConfig:
    eval_id: str | None = field(default=None, metadata={"help": "Run (or resume) this recorded eval run."})
    attempt: int | None = field(default=None, metadata={"help": "Set by the dispatcher: this job's attempt."})
    testset: str | None = field(default=None, metadata={"help": "Instead: create a run from this JSONL file."})
    routes: str = field(default="rag,plain,search", metadata={"help": "With --testset: comma-separated routes."})
    adapter: str | None = field(default=None, metadata={"help": "With --testset: the adapter routes' adapter."})
    concurrency: int = 2
    max_tokens: int = 128
    queries_per_day: float | None = None
    judge: bool | None = field(default=None, metadata={"help": "With --testset: the LLM judge (default: profile)."})
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.eval_id is None) == (self.testset is None):
            raise ValueError("give exactly one of --eval_id (a recorded run) or --testset (a JSONL file)")


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    from transformers import HfArgumentParser

    (config,) = HfArgumentParser((EvalConfig,)).parse_args_into_dataclasses(list(argv) if argv is not None else None)
    return config


class Progress:
    """Periodic lines in the job's log, and an event at every tenth of the run."""

    def __init__(self, eval_id: str, total: int, already: int) -> None:
        self.eval_id, self.total, self.done, self.errors = eval_id, total, already, 0
        self.asked = 0
        self.started = self.last = time.monotonic()
        self.tenth = already * 10 // max(total, 1)

    def add(self, verdict: str) -> int | None:
        """Count one answer; the new tenth (1-10) when this answer crossed one."""
        self.done, self.asked = self.done + 1, self.asked + 1
        self.errors += verdict == "error"
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S or self.done == self.total:
            self.last = now
            print(self.line(), flush=True)
        tenth = self.done * 10 // max(self.total, 1)
        if tenth > self.tenth:
            self.tenth = tenth
            return tenth
        return None

    def line(self) -> str:
        rate = self.asked / max(time.monotonic() - self.started, 1e-9)
        return f"eval {self.eval_id}: {self.done}/{self.total} answers ({rate:.2f}/s), {self.errors} errors"


def check_testset(config: EvalConfig) -> tuple[list[Any], tuple[str, ...], str]:
    """The test set's cases and the routes, checked before anything connects (DatasetError, ValueError)."""
    from cluster.evaluation import testset

    path = Path(config.testset or "")
    cases = testset.parse(path.read_bytes(), name=str(path))
    routes = tuple(dict.fromkeys(r.strip() for r in config.routes.split(",") if r.strip()))
    return cases, routes, path.name


async def create_from_file(settings: Any, pool: Any, config: EvalConfig, cases: list[Any],
                           routes: tuple[str, ...], filename: str) -> str:
    """Record a run started by this job, its routes checked against the served models as POST /v1/evals does."""
    from cluster.cli.client import RagtuneClient
    from cluster.evaluation import records, testset
    from cluster.evaluation.rules import Declared
    from cluster.evaluation.runner import check_routes, run_options, served_models
    from cluster.store import evals

    with RagtuneClient(settings.http_url) as client:
        check_routes(routes, config.adapter, served_models(client))
        base = client.base_model()
    options = run_options(settings, routes, config.adapter, config.concurrency, config.max_tokens, config.judge)
    run = await evals.create(pool, eval_id=evals.new_id(), name=config.name or filename, model=base,
                             adapter=config.adapter, routes=routes,
                             options=records.stored_options(options, Declared(), config.queries_per_day),
                             data_source={"type": "jsonl", "source": {"type": "file", "name": filename}},
                             items=[testset.as_item(c) for c in cases], started_by_hand=True)
    print(f"created eval run {run.id}: {len(cases)} cases x {len(routes)} routes", flush=True)
    return run.id


async def execute(settings: Any, pool: Any, eval_id: str, attempt: int | None) -> int:
    from cluster.cli.client import ClientError, RagtuneClient
    from cluster.evaluation import records, testset
    from cluster.evaluation import report as reports
    from cluster.evaluation.runner import CaseResult, IngressUnavailable, Work, pending, run_pending, verdict
    from cluster.store import evals

    run = await evals.get(pool, eval_id)
    if run is None:
        print(f"no eval run {eval_id}", file=sys.stderr)
        return EXIT_REFUSED
    if run.status in evals.TERMINAL:
        print(f"eval run {eval_id} has already {run.status}; nothing to do", flush=True)
        return 0
    attempt = attempt or run.attempt
    stored = await evals.items(pool, eval_id)
    cases = list(zip([p for p, _ in stored], testset.parse_items([i for _, i in stored], name=eval_id)))
    options, declared, queries_per_day = records.options_of(run)
    done = {(r.position, r.route) for r in await evals.recorded(pool, eval_id)}
    work = pending(cases, run.routes, done)
    if await evals.mark_started(pool, eval_id, attempt, len(work)) is None:
        return 0
    progress = Progress(eval_id, run.total, len(done))
    print(f"eval {eval_id} attempt {attempt}: {len(work)} answers to ask, {len(done)} already recorded", flush=True)

    async def record(item: Work, result: CaseResult) -> bool:
        status = verdict(item.case, result)
        await evals.record_result(pool, eval_id, item.position, item.route, status, result.as_dict(), attempt)
        tenth = progress.add(status)
        if tenth is not None:
            await evals.add_event(pool, eval_id, f"{progress.done}/{progress.total} answers recorded",
                                  data={"done": progress.done, "total": progress.total},
                                  dedupe_key=f"progress-{tenth}")
        return not await evals.cancel_requested(pool, eval_id)

    try:
        with RagtuneClient(settings.http_url) as client:
            await run_pending(client, work, options, run.model, record, retries=settings.evals.request_retries)
    except (IngressUnavailable, ClientError) as exc:
        print(f"eval {eval_id}: the ingress is unavailable ({exc}); stopping so the run can resume", flush=True)
        return EXIT_RETRY
    if await evals.cancel_requested(pool, eval_id):
        await evals.finish(pool, eval_id, "canceled", f"Eval run canceled after {progress.done}/{run.total} answers")
        print(f"eval {eval_id}: canceled", flush=True)
        return 0
    recorded = sorted(await evals.recorded(pool, eval_id), key=lambda r: (run.routes.index(r.route), r.position))
    results = [CaseResult(**r.result) for r in recorded]  # in the run's route order, as the report lists them
    summary = reports.summarize([c for _, c in cases], results, declared, settings.profile_spec.costs,
                                queries_per_day)
    route = summary["recommendation"]["route"]
    await evals.finish(pool, eval_id, "completed", f"Eval run completed: {len(recorded)} answers; recommended "
                                                   f"route: {route or 'none'}", report=summary)
    print(f"eval {eval_id}: completed; recommended route: {route}", flush=True)
    return 0


async def _main(config: EvalConfig) -> int:
    import asyncpg

    from cluster.cli.client import ClientError
    from cluster.settings import Settings
    from cluster.store import db
    from cluster.store import evals

    # The database going away (stopped, restarted, unreachable): stop, keep what is recorded, resume later.
    lost = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError)
    settings = Settings()
    checked = check_testset(config) if config.testset else None  # a bad file is refused before connecting
    try:
        pool = await db.open_pool(settings, max_size=2)
    except lost as exc:
        print(f"cannot reach the database ({type(exc).__name__}); try again", file=sys.stderr, flush=True)
        return EXIT_RETRY
    eval_id = config.eval_id
    try:
        if checked is not None:
            try:
                eval_id = await create_from_file(settings, pool, config, *checked)
            except ValueError as exc:
                print(f"refused: {exc}", file=sys.stderr, flush=True)
                return EXIT_REFUSED
            except ClientError as exc:  # creating a run by hand asks the ingress for the served models
                print(f"error: {exc}", file=sys.stderr, flush=True)
                return EXIT_FAILED
        assert eval_id is not None
        try:
            return await execute(settings, pool, eval_id, config.attempt)
        except lost as exc:
            print(f"eval {eval_id}: lost the database ({type(exc).__name__}); stopping so the run can resume",
                  flush=True)
            return EXIT_RETRY
        except Exception as exc:  # noqa: BLE001 - recorded with the run; the job's log has the traceback
            log.exception("eval %s failed", eval_id)
            await evals.finish(pool, eval_id, "failed", f"Eval run failed: {type(exc).__name__}", level="error",
                               error={"code": "eval_failed", "message": f"the eval job failed ({type(exc).__name__})"})
            return EXIT_FAILED
    finally:
        try:
            await asyncio.wait_for(pool.close(), 10)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()  # a database that went away does not hold the job's exit


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.training.datasets import DatasetError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main(parse_args(argv)))
    except (DatasetError, ValueError, OSError) as exc:  # the arguments or the test set file
        print(f"refused: {exc}", file=sys.stderr, flush=True)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
