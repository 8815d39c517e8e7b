"""The fine-tuning queue cannot jam: the real dispatcher and queue SQL on a private embedded Postgres, with a fake
Ray jobs client that can refuse submissions, fail lookups and hand back any log. Cases: a NaN loss line, a
submission that always fails, one job whose follow-up raises, a job over its time limit, claims from several
dispatchers at once, and a leader whose lock connection is terminated."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

import asyncpg
import pytest

from cluster.settings import FineTuningLimits, Settings
from cluster.store import fine_tuning as ft
from serve.deployments import dispatcher as dispatching
from tests.support.private_db import private_pool

RAY_SECRET = "ray://10.1.2.3:10001 /home/ray/session_2026/logs"  # must never reach a job's error


class FakeRay:
    """Ray's job client, in memory and thread-safe (the dispatcher calls it from worker threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, str] = {}  # submission id -> status
        self.logs: dict[str, str] = {}
        self.submissions: list[str] = []
        self.stopped: list[str] = []
        self.refuse: set[str] = set()  # submission ids whose submission raises
        self.broken: set[str] = set()  # submission ids whose lookup raises

    def submit_job(self, **kwargs: Any) -> str:
        sid = kwargs["submission_id"]
        with self.lock:
            self.submissions.append(sid)
            if sid in self.refuse:
                raise RuntimeError(f"Failed to submit job: {RAY_SECRET}")
            if sid in self.jobs:
                raise RuntimeError(f"Job with submission_id {sid} already exists")
            self.jobs[sid] = "RUNNING"
        return sid

    def get_job_info(self, job_id: str) -> Any:
        with self.lock:
            if job_id in self.broken:
                raise ConnectionError(f"lookup failed at {RAY_SECRET}")
            if job_id not in self.jobs:
                raise RuntimeError(f"Job {job_id} does not exist")
            return SimpleNamespace(status=self.jobs[job_id], driver_exit_code=None, message=RAY_SECRET)

    def get_job_logs(self, job_id: str) -> str:
        return self.logs.get(job_id, "")

    def stop_job(self, job_id: str) -> bool:
        with self.lock:
            self.stopped.append(job_id)
            self.jobs[job_id] = "STOPPED"
        return True


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async with private_pool("q-", max_size=12) as pool:
        yield pool


@pytest.fixture
async def queue(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    await pool.execute("DELETE FROM fine_tuning_jobs")
    await pool.execute("DELETE FROM training_files")
    await ft.create_file(pool, ft.TrainingFile(id="file-q", filename="d.jsonl", purpose="fine-tune", bytes=1,
                                               sha256="0" * 64, examples=1, uri="/nonexistent/d.jsonl",
                                               created_at=None))  # type: ignore[arg-type]
    yield pool


def _dispatcher(pool: asyncpg.Pool, ray: FakeRay, tmp_path: Path, **limits: Any) -> dispatching.Dispatcher:
    settings = Settings(state_dir=tmp_path, fine_tuning=FineTuningLimits(submit_retry_s=0, **limits))
    d = dispatching.Dispatcher(settings, client=ray)
    d.pool = pool
    return d


async def _job(pool: asyncpg.Pool, n: int, **hyper: Any) -> ft.FineTuningJob:
    job_id = f"ftjob-{n:024d}"
    return await ft.create_job(pool, job_id=job_id, model="base", training_file="file-q", validation_file=None,
                               suffix="q", hyperparameters={"n_epochs": 1} | hyper, seed=1, priority=0, num_gpus=0,
                               adapter_name=f"ft:base:q:{n:08d}")


async def _status(pool: asyncpg.Pool, job_id: str) -> str:
    return await pool.fetchval("SELECT status FROM fine_tuning_jobs WHERE id = $1", job_id)


async def test_a_nan_loss_is_recorded_as_null_and_the_queue_moves_on(queue: asyncpg.Pool, tmp_path: Path) -> None:
    ray = FakeRay()
    d = _dispatcher(queue, ray, tmp_path)
    first = await _job(queue, 1)
    await d.tick()
    ray.logs[first.ray_submission_id] = ("progress event=train step=1 total=4 loss=nan lr=inf tokens=10\n"
                                         "failed: the training loss became nan at step 1 of 4\n")
    ray.jobs[first.ray_submission_id] = "FAILED"
    second = await _job(queue, 2)
    await d.tick()  # used to raise on every tick: jsonb refuses NaN
    events = await queue.fetch("SELECT dedupe_key, data::text AS data, message FROM fine_tuning_events "
                               "WHERE job_id = $1", first.id)
    step = next(e for e in events if e["dedupe_key"] == "step:1")
    assert '"train_loss": null' in step["data"] and '"learning_rate": null' in step["data"]
    job = await ft.get_job(queue, first.id)
    assert job is not None and job.status == "failed" and "loss became nan" in job.error["message"]
    assert await _status(queue, second.id) == "running" and second.ray_submission_id in ray.jobs


async def test_a_submission_that_always_fails_fails_the_job_after_bounded_attempts(queue: asyncpg.Pool,
                                                                                   tmp_path: Path) -> None:
    ray = FakeRay()
    d = _dispatcher(queue, ray, tmp_path, max_submit_attempts=3, poll_interval_s=1)
    d.spec = d.spec.model_copy(update={"max_concurrent_jobs": 2})
    doomed, fine = await _job(queue, 1), await _job(queue, 2)
    ray.refuse.add(doomed.ray_submission_id)
    for _ in range(5):
        await d.tick()
    assert ray.submissions.count(doomed.ray_submission_id) == 3  # bounded, then failed
    job = await ft.get_job(queue, doomed.id)
    assert job is not None and job.status == "failed" and job.error["code"] == "submission_failed"
    assert "3 attempts" in job.error["message"] and "10.1.2.3" not in str(job.error) and "/home" not in str(job.error)
    assert ray.submissions.count(fine.ray_submission_id) == 1 and await _status(queue, fine.id) == "running"


async def test_one_jobs_trouble_does_not_stop_the_others(queue: asyncpg.Pool, tmp_path: Path) -> None:
    ray = FakeRay()
    d = _dispatcher(queue, ray, tmp_path)
    d.spec = d.spec.model_copy(update={"max_concurrent_jobs": 3})
    broken, done = await _job(queue, 1), await _job(queue, 2)
    await d.tick()
    ray.broken.add(broken.ray_submission_id)
    ray.jobs[done.ray_submission_id] = "FAILED"
    waiting = await _job(queue, 3)
    await d.tick()
    assert await _status(queue, broken.id) == "running"  # left for the next tick
    assert await _status(queue, done.id) == "failed"  # followed although the job before it raised
    job = await ft.get_job(queue, done.id)
    assert job is not None and RAY_SECRET not in job.error["message"]  # Ray's message stays in the logs
    assert await _status(queue, waiting.id) == "running"  # and the queue behind them moved


async def test_a_job_over_its_time_limit_is_stopped_and_fails(queue: asyncpg.Pool, tmp_path: Path) -> None:
    ray = FakeRay()
    d = _dispatcher(queue, ray, tmp_path)
    d.spec = d.spec.model_copy(update={"max_concurrent_jobs": 2})
    slow, default = await _job(queue, 1, timeout_s=60), await _job(queue, 2)
    await d.tick()
    await queue.execute("UPDATE fine_tuning_jobs SET started_at = now() - interval '61 seconds'")
    await d.tick()
    assert ray.stopped == [slow.ray_submission_id]
    job = await ft.get_job(queue, slow.id)
    assert job is not None and job.status == "failed" and job.error["code"] == "timeout"
    assert await _status(queue, default.id) == "running"  # the profile's limit is hours


async def test_claims_from_many_dispatchers_at_once_never_exceed_the_limit(queue: asyncpg.Pool) -> None:
    for n in range(12):
        await _job(queue, n)
    for limit in (1, 3):
        claimed = await asyncio.gather(*(ft.claim_next(queue, limit, 0.0) for _ in range(10)))
        assert sum(c is not None for c in claimed) <= limit
        assert await queue.fetchval("SELECT count(*) FROM fine_tuning_jobs WHERE status = 'running'") == limit


async def test_a_terminated_lock_connection_ends_leadership(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as lock_conn, pool.acquire() as other:
        assert await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", dispatching.LEADER_LOCK)
        await dispatching.assert_leader(lock_conn)
        with pytest.raises(dispatching.LostLeadership):
            await dispatching.assert_leader(other)  # holds nothing
        assert not await other.fetchval("SELECT pg_try_advisory_lock($1)", dispatching.LEADER_LOCK)
        await other.execute("SELECT pg_terminate_backend($1)", lock_conn.get_server_pid())
        with pytest.raises(dispatching.LostLeadership):
            await dispatching.assert_leader(lock_conn)
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", dispatching.LEADER_LOCK)  # free again
        await other.execute("SELECT pg_advisory_unlock($1)", dispatching.LEADER_LOCK)


async def test_the_file_store_quota_is_checked_with_the_insert(queue: asyncpg.Pool) -> None:
    def record(n: int, size: int) -> ft.TrainingFile:
        return ft.TrainingFile(id=f"file-quota-{n}", filename="d.jsonl", purpose="fine-tune", bytes=size,  # type: ignore[arg-type]
                               sha256="0" * 64, examples=1, uri=f"/nonexistent/{n}", created_at=None)

    used = await queue.fetchval("SELECT sum(bytes) FROM training_files")
    results = await asyncio.gather(*(ft.create_file(queue, record(n, 400), quota_bytes=used + 1000)
                                     for n in range(5)), return_exceptions=True)
    assert sum(isinstance(r, ft.TrainingFile) for r in results) == 2  # 2 x 400 fit in 1000, concurrently too
    assert all(isinstance(r, ft.QuotaExceeded) and "quota" in str(r) for r in results
               if not isinstance(r, ft.TrainingFile))


async def test_crash_points_lose_no_job_and_submit_none_twice(queue: asyncpg.Pool, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A dispatcher that dies after claiming, after submitting, or after Ray reported success (before recording
    it): a new one, with only the database to go on, finishes each job exactly once."""
    from cluster.store.adapters import AdapterStore

    ray = FakeRay()
    limit = {"max_concurrent_jobs": 3}
    claimed, submitted, succeeded = await _job(queue, 1), await _job(queue, 2), await _job(queue, 3)

    # 1. died right after the claim: running in the database, unknown to Ray
    assert (await ft.claim_next(queue, 3, 0.0)).id == claimed.id  # type: ignore[union-attr]
    # 2. died between Ray accepting the submission and recording it
    real_mark = ft.mark_submitted

    async def dies(pool: asyncpg.Pool, job_id: str) -> None:
        raise ConnectionError("dispatcher died")

    first = _dispatcher(queue, ray, tmp_path)
    first.spec = first.spec.model_copy(update=limit)
    monkeypatch.setattr(ft, "mark_submitted", dies)
    await first.tick()  # claims and submits 2 and 3; each record of it fails
    monkeypatch.setattr(ft, "mark_submitted", real_mark)
    assert {submitted.ray_submission_id, succeeded.ray_submission_id} <= set(ray.jobs)
    # 3. job 3's Ray job succeeded and published its adapter; nobody recorded it
    ray.jobs[succeeded.ray_submission_id] = "SUCCEEDED"
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text('{"r": 8}')
    (src / "adapter_model.safetensors").write_bytes(b"weights")
    AdapterStore.from_settings(first.settings).put(succeeded.adapter_name, src, {"job_id": succeeded.id})

    second = _dispatcher(queue, ray, tmp_path)  # a new leader: only the database to go on
    second.spec = second.spec.model_copy(update=limit)
    await second.tick()
    await second.tick()  # a replay adds nothing
    assert ray.submissions.count(claimed.ray_submission_id) == 1  # submitted now, once
    assert ray.submissions.count(submitted.ray_submission_id) == 1  # found in Ray, not submitted again
    assert (await ft.get_job(queue, submitted.id)).submitted_at is not None  # type: ignore[union-attr]
    done = await ft.get_job(queue, succeeded.id)
    assert done is not None and done.status == "succeeded" and done.fine_tuned_model == succeeded.adapter_name
    assert await queue.fetchval("SELECT count(*) FROM fine_tuning_events WHERE job_id = $1 AND dedupe_key = "
                                "'succeeded'", succeeded.id) == 1
    assert await queue.fetchval("SELECT count(*) FROM fine_tuning_jobs WHERE status = 'running'") == 2
