"""The queues' dispatcher: the one loop that moves queued fine-tuning jobs and eval runs onto Ray Jobs and
follows them.

Ray Jobs has no queue (many submissions at once starve the head), so jobs wait as rows in Postgres and this loop
submits one only while the profile's concurrency and GPU budget allow. Each tick it also follows the running
jobs: new log lines become events (step, loss, eval loss), a requested cancellation stops the Ray job, and a
finished Ray job becomes succeeded (with its adapter, already published by the job), failed or cancelled.

Eval runs (one at a time by default) record their own results and report (jobs/eval.py); the dispatcher submits
each attempt under its fixed submission id, stops a canceled one, and resumes a run whose Ray job ended before
the run did (an unreachable ingress, a lost worker) as the next attempt, up to `evals.max_attempts`.

Restart safety: all state is in Postgres, and a job's Ray submission id is fixed at creation, so after a crash
the next leader finds the job running, asks Ray about that id, and resubmits only if Ray never got it: no job is
lost and none runs twice. One replica at a time leads (a Postgres advisory lock held on its own connection).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import asyncpg

from cluster.ops.redaction import redact
from cluster.settings import Settings
from cluster.store import api_keys, db
from cluster.store import evals
from cluster.store import fine_tuning as ft
from cluster.store.adapters import AdapterStore
from cluster.training.progress import parse_events

log = logging.getLogger("ray.serve.ragtune.dispatcher")

LEADER_LOCK = 0x72616775  # one advisory lock id for the dispatcher leader


class JobsClient(Protocol):
    """The part of ray.job_submission.JobSubmissionClient the dispatcher uses (tests may pass a fake)."""

    def submit_job(self, **kwargs: Any) -> str: ...
    def get_job_info(self, job_id: str) -> Any: ...
    def get_job_logs(self, job_id: str) -> str: ...
    def stop_job(self, job_id: str) -> bool: ...


class LostLeadership(RuntimeError):
    """The leader lock's connection is gone or no longer holds the lock: another dispatcher may lead now."""


async def assert_leader(lock_conn: asyncpg.Connection) -> None:
    """Checked before every tick: a terminated lock connection releases the lock in Postgres while this process
    would go on ticking through the pool's other connections."""
    try:
        held = await lock_conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = $1 "
            "AND objsubid = 1 AND pid = pg_backend_pid() AND granted", LEADER_LOCK)
    except Exception as exc:  # noqa: BLE001 - a lock that cannot be verified is not held (asyncpg raises several kinds)
        raise LostLeadership(f"the leader lock's connection failed: {exc!r}") from None
    if not held:
        raise LostLeadership("the leader lock is no longer held")


def train_entrypoint(job: ft.FineTuningJob, training: ft.TrainingFile,
                     validation: ft.TrainingFile | None) -> list[str]:
    """`python -m jobs.train` flags for a queued job (hyperparameters were validated when it was created)."""
    h = job.hyperparameters
    args = ["python", "-m", "jobs.train", "--dataset", training.uri, "--adapter_name", job.adapter_name,
            "--suffix", job.suffix or "custom", "--job_id", job.id, "--seed", str(job.seed)]
    if validation is not None:
        args += ["--eval_dataset", validation.uri]
    flags = {"n_epochs": "--epochs", "batch_size": "--batch_size", "learning_rate": "--learning_rate",
             "max_steps": "--max_steps", "lora_rank": "--rank", "lora_alpha": "--alpha",
             "system_prompt": "--system_prompt", "max_length": "--max_length"}
    for key, flag in flags.items():
        if h.get(key) is not None:
            args += [flag, str(h[key])]
    return args


def eval_entrypoint(run: evals.EvalRun) -> list[str]:
    return ["python", "-m", "jobs.eval", "--eval_id", run.id, "--attempt", str(run.attempt)]


EVAL_EXIT_DECIDED = (1, 2)  # the eval job failed or refused the run itself: not worth another attempt


class Dispatcher:
    """Owned by a Serve deployment (serve/app.py) or by tests; `start()` runs the loop until `stop()`."""

    def __init__(self, settings: Settings, client: JobsClient | None = None,
                 on_queue: Callable[[dict[str, int]], None] | None = None) -> None:
        self.settings = settings
        self.on_queue = on_queue  # told the jobs per state after every tick (the deployment exports it)
        self.spec = settings.profile_spec.training
        self.store = AdapterStore.from_settings(settings)
        self._client = client
        self._task: asyncio.Task | None = None
        self.pool: asyncpg.Pool | None = None
        self._woken = asyncio.Event()
        self.eval_key: str | None = None  # the cluster's own API key, registered on the first eval submission

    def wake(self) -> None:
        """Tick now rather than at the next poll (a job was created or cancelled)."""
        self._woken.set()

    async def _nap(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._woken.wait(), seconds)
        except TimeoutError:
            pass
        self._woken.clear()

    @property
    def client(self) -> JobsClient:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.settings.dashboard_url)
        return self._client

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()

    async def _run(self) -> None:
        interval = self.settings.fine_tuning.poll_interval_s
        while True:
            try:
                await self._lead(interval)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - database or Ray down: log, back off, try again
                log.exception("dispatcher: tick failed; retrying")
            await asyncio.sleep(interval)

    async def _lead(self, interval: float) -> None:
        """Hold the leader lock on a dedicated connection (released if this process dies) and tick forever."""
        if self.pool is None:
            self.pool = await db.open_pool(self.settings, max_size=3)
        async with self.pool.acquire() as lock_conn:
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK):
                await asyncio.sleep(interval)
            try:
                while True:
                    await assert_leader(lock_conn)
                    await self.tick()
                    await self._nap(interval)
            finally:
                try:
                    await lock_conn.execute("SELECT pg_advisory_unlock($1)", LEADER_LOCK)
                except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                    pass  # the connection is gone, and the lock with it

    async def tick(self) -> None:
        """Follow every running job, then start queued ones while the budget allows. One job's trouble (Ray
        refusing it, a log it cannot read) is logged and left for the next tick; it never stops the others."""
        assert self.pool is not None
        for job in await ft.running_jobs(self.pool):
            try:
                await self.follow(job)
            except Exception:  # noqa: BLE001
                log.exception("dispatcher: following fine-tuning job %s failed", job.id)
        while (job := await ft.claim_next(self.pool, self.spec.max_concurrent_jobs, self.spec.gpu_budget)):
            try:
                await self.submit(job)
            except Exception:  # noqa: BLE001
                log.exception("dispatcher: submitting fine-tuning job %s failed", job.id)
        for run in await evals.dispatched(self.pool):
            try:
                await self.follow_eval(run)
            except Exception:  # noqa: BLE001 - one run's trouble must not stop the others (or fine-tuning)
                log.exception("dispatcher: following eval run %s failed", run.id)
        while (run := await evals.claim_next(self.pool, self.settings.evals.max_concurrent_runs)):
            await self.submit_eval(run)
        if self.on_queue is not None:
            self.on_queue(await ft.queue_depth(self.pool))

    async def _ray(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.client, method), *args, **kwargs)

    async def _ray_info(self, submission_id: str) -> Any | None:
        try:
            return await self._ray("get_job_info", submission_id)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return None
            raise

    async def submit(self, job: ft.FineTuningJob) -> None:
        """Submit under the job's fixed submission id; if Ray already has it (a crash after submitting), keep it."""
        assert self.pool is not None
        training = await ft.get_file(self.pool, job.training_file)
        validation = await ft.get_file(self.pool, job.validation_file) if job.validation_file else None
        if training is None:
            await ft.finish(self.pool, job.id, "failed", "Training file no longer exists", level="error",
                            error={"code": "invalid_training_file", "message": "training file not found",
                                   "param": "training_file"})
            return
        entrypoint = train_entrypoint(job, training, validation)
        try:
            await self._ray("submit_job", entrypoint=shlex.join(entrypoint), submission_id=job.ray_submission_id,
                            runtime_env={"env_vars": self.settings.environment() | {"HF_HUB_OFFLINE": "1"}},
                            entrypoint_num_cpus=self.spec.num_cpus,
                            entrypoint_num_gpus=job.num_gpus or None,
                            entrypoint_resources=self.spec.resources or None,
                            metadata={"ragtune_job": job.id, "adapter": job.adapter_name})
        except Exception as exc:  # noqa: BLE001 - whatever Ray said, the retry is bounded
            if "already exists" not in str(exc):
                await self._submit_failed(job, exc)
                return
        await ft.mark_submitted(self.pool, job.id)
        log.info("dispatcher: submitted %s as Ray job %s", job.id, job.ray_submission_id)

    async def _submit_failed(self, job: ft.FineTuningJob, exc: Exception) -> None:
        """Count the failure; after `max_submit_attempts` the job fails (the reason in the logs, not the
        response: Ray's messages carry addresses), else it is retried after a growing pause."""
        assert self.pool is not None
        limits = self.settings.fine_tuning
        attempts = await ft.record_submit_failure(
            self.pool, job.id, limits.submit_retry_s * 2 ** min(job.submit_attempts, 10))
        log.warning("dispatcher: Ray refused %s (attempt %d of %d): %s", job.id, attempts,
                    limits.max_submit_attempts, exc)
        if attempts >= limits.max_submit_attempts:
            await ft.finish(self.pool, job.id, "failed", f"Fine-tuning job failed: it could not be submitted to Ray "
                            f"({attempts} attempts)", level="error",
                            error={"code": "submission_failed", "param": None, "message": (
                                f"the training job could not be submitted after {attempts} attempts; the "
                                "cluster's logs have the reason")})

    def _timeout_s(self, job: ft.FineTuningJob) -> float:
        return float(job.hyperparameters.get("timeout_s") or self.spec.job_timeout_s)

    async def follow(self, job: ft.FineTuningJob) -> None:
        assert self.pool is not None
        info = await self._ray_info(job.ray_submission_id)
        if info is None:  # claimed, then the dispatcher died before Ray got it: submit now (same id)
            if job.cancel_requested:
                await ft.finish(self.pool, job.id, "cancelled", "Job cancelled before it started")
            elif job.retry_at is None or job.retry_at <= datetime.now(timezone.utc):
                await self.submit(job)
            return
        if job.submitted_at is None:
            await ft.mark_submitted(self.pool, job.id)
        await self._read_logs(job)
        status = str(getattr(info.status, "value", info.status))
        if job.cancel_requested and status in ("PENDING", "RUNNING"):
            await self._ray("stop_job", job.ray_submission_id)
            return
        if status in ("PENDING", "RUNNING") and job.started_at is not None and \
                (datetime.now(timezone.utc) - job.started_at).total_seconds() > self._timeout_s(job):
            await self._timed_out(job)
            return
        if status == "SUCCEEDED":
            await self._succeeded(job)
        elif status == "FAILED":
            await self._failed(job, info)
        elif status == "STOPPED":
            await self._cancelled(job)

    async def _read_logs(self, job: ft.FineTuningJob) -> None:
        assert self.pool is not None
        logs = await self._ray("get_job_logs", job.ray_submission_id)
        new = logs[job.log_offset:]
        complete = new[:new.rfind("\n") + 1]
        if complete:
            events = parse_events(complete.splitlines())
            await ft.record_progress(self.pool, job.id, job.log_offset + len(complete), events)

    async def _succeeded(self, job: ft.FineTuningJob) -> None:
        assert self.pool is not None
        ref = await asyncio.to_thread(self.store.get, job.adapter_name)
        if ref is None or ref.metadata.get("job_id") != job.id:
            await ft.finish(self.pool, job.id, "failed", "The training job ended without publishing its adapter",
                            level="error", error={"code": "no_adapter", "message": "no adapter was published",
                                                  "param": None})
            return
        metrics = {k: v for k, v in (ref.metadata.get("metrics") or {}).items() if k != "loss_history"}
        await ft.finish(self.pool, job.id, "succeeded", f"New fine-tuned model created: {ref.name}",
                        fine_tuned_model=ref.name, adapter_version=ref.version,
                        trained_tokens=metrics.get("trained_tokens"), metrics=metrics)
        log.info("dispatcher: %s succeeded: %s@%s", job.id, ref.name, ref.version)

    async def _failed(self, job: ft.FineTuningJob, info: Any) -> None:
        assert self.pool is not None
        refused = await self.pool.fetchval(
            "SELECT message FROM fine_tuning_events WHERE job_id = $1 AND dedupe_key = 'refused'", job.id)
        stopped = await self.pool.fetchval(
            "SELECT message FROM fine_tuning_events WHERE job_id = $1 AND dedupe_key = 'failed'", job.id)
        code = "invalid_training_file" if refused or info.driver_exit_code == 2 else "training_failed"
        # Ray's own message is a traceback tail with paths: it goes to the logs, the job says what it knows.
        if not (refused or stopped):
            log.warning("dispatcher: %s failed: %s", job.id, info.message)
        message = redact(refused or stopped or "the training job failed; the cluster's logs have the details")
        await ft.finish(self.pool, job.id, "failed", f"Fine-tuning job failed: {message}", level="error",
                        error={"code": code, "message": message, "param": "training_file" if refused else None})

    async def _timed_out(self, job: ft.FineTuningJob) -> None:
        """Over its time limit: stopped, failed, and any adapter it managed to publish removed."""
        assert self.pool is not None
        limit = self._timeout_s(job)
        await self._ray("stop_job", job.ray_submission_id)
        ref = await asyncio.to_thread(self.store.get, job.adapter_name)
        if ref is not None and ref.metadata.get("job_id") == job.id:
            await asyncio.to_thread(self.store.delete, job.adapter_name)
        await ft.finish(self.pool, job.id, "failed", f"Fine-tuning job failed: it ran longer than {limit:.0f} s",
                        level="error", error={"code": "timeout", "param": "hyperparameters.timeout_s", "message": (
                            f"the training job ran longer than its limit of {limit:.0f} s and was stopped")})

    async def _cancelled(self, job: ft.FineTuningJob) -> None:
        """Stopped by a cancellation. A job stopped after its atomic publish would leave an adapter behind: the
        adapter is removed, so a cancelled job never leaves one."""
        assert self.pool is not None
        ref = await asyncio.to_thread(self.store.get, job.adapter_name)
        if ref is not None and ref.metadata.get("job_id") == job.id:
            await asyncio.to_thread(self.store.delete, job.adapter_name)
        await ft.finish(self.pool, job.id, "cancelled", "Job cancelled; no adapter was published")

    # ----------------------------------------------------------------------------------------- eval runs

    async def submit_eval(self, run: evals.EvalRun) -> None:
        assert self.pool is not None and run.ray_submission_id is not None
        # The eval job calls the ingress: with the cluster's own key, which works once user keys exist.
        if self.eval_key is None:
            self.eval_key = await api_keys.internal_key(self.pool, self.settings.state_dir)
        try:
            await self._ray("submit_job", entrypoint=shlex.join(eval_entrypoint(run)),
                            submission_id=run.ray_submission_id,
                            runtime_env={"env_vars": self.settings.environment() | {"HF_HUB_OFFLINE": "1",
                                                                                     "RAGTUNE_API_KEY": self.eval_key}},
                            metadata={"ragtune_eval": run.id, "attempt": str(run.attempt)})
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                raise
        log.info("dispatcher: submitted eval run %s attempt %d as Ray job %s", run.id, run.attempt,
                 run.ray_submission_id)

    async def follow_eval(self, run: evals.EvalRun) -> None:
        assert self.pool is not None and run.ray_submission_id is not None
        info = await self._ray_info(run.ray_submission_id)
        if info is None:  # claimed but never submitted, or a restarted Ray cluster forgot it: same id again
            if run.cancel_requested:
                await evals.finish(self.pool, run.id, "canceled", "Eval run canceled")
            else:
                await self.submit_eval(run)
            return
        status = str(getattr(info.status, "value", info.status))
        if status in ("PENDING", "RUNNING"):
            if run.cancel_requested:
                await self._ray("stop_job", run.ray_submission_id)
            return
        # The job ended. It records completed / canceled / failed itself; whatever it did not record is decided here.
        if run.cancel_requested:
            await evals.finish(self.pool, run.id, "canceled", "Eval run canceled")
        elif status == "SUCCEEDED" or info.driver_exit_code in EVAL_EXIT_DECIDED:
            await evals.finish(self.pool, run.id, "failed", "The eval job ended without finishing the run",
                               level="error", error={"code": "eval_failed", "message": "the eval job failed"})
        elif run.attempt < self.settings.evals.max_attempts:
            reason = "stopped" if status == "STOPPED" else f"exit code {info.driver_exit_code}"
            resumed = await evals.next_attempt(self.pool, run.id, reason)
            if resumed is not None:
                await self.submit_eval(resumed)
        else:
            await evals.finish(self.pool, run.id, "failed", f"Eval run failed after {run.attempt} attempts",
                               level="error", error={"code": "ingress_unavailable", "message": (
                                   f"the eval job ended early {run.attempt} times (the ingress was unreachable or "
                                   "the job was lost); the recorded results are kept")})


class JobDispatcher:
    """The Serve deployment around `Dispatcher`: one replica on the head node, restarted by Serve if it dies."""

    def __init__(self, settings: Settings) -> None:
        from serve.observability.metrics import QueueMetrics

        self.dispatcher = Dispatcher(settings, on_queue=QueueMetrics().set)
        self.dispatcher.start()

    async def wake(self) -> None:
        self.dispatcher.wake()

    async def check_health(self) -> None:
        task = self.dispatcher._task
        if task is None or task.done():
            raise RuntimeError("the dispatcher loop is not running")

    async def __del__(self) -> None:
        await self.dispatcher.stop()
