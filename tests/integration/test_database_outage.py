"""A database that goes away answers 503 (never a 500 trace) and the ingress recovers when it is back.
Marked `disruptive`: it stops the session's database for a moment, so the collection hook runs it last."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from cluster.store import db
from tests.support.helpers import api_error, wait_for


@pytest.mark.disruptive
def test_database_outage_is_a_503_and_recovers(api: httpx.Client, live) -> None:  # noqa: ANN001
    assert api.post("/v1/search", json={"query": "vector index"}).status_code == 200
    before = api.get("/v1/documents").json()["total"]
    assert db.stop_embedded(live.pgdata)
    try:
        error = api_error(api.post("/v1/search", json={"query": "vector index"}), 503)
        assert error["code"] == "database_unavailable"
        api_error(api.post("/v1/documents", json={"content": "written during the outage"}), 503)
        api_error(api.get("/v1/documents"), 503)
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable")
    finally:
        db.start_embedded(live.pgdata)
    # The failures expired the pool's dead connections: the very next requests succeed, and nothing was written.
    assert api.get("/readyz").status_code == 200
    assert api.post("/v1/search", json={"query": "vector index"}).status_code == 200
    assert api.get("/v1/documents").json()["total"] == before


@pytest.mark.disruptive
def test_an_eval_run_resumes_after_the_database_goes_away(api: httpx.Client, live) -> None:  # noqa: ANN001
    """The job loses the database mid-run and stops (exit 75) with what it recorded; once the database is back,
    the dispatcher resumes the run as attempt 2, which asks only the cases that are missing."""
    from ray.job_submission import JobSubmissionClient

    items = [{"item": {"id": f"c{i}", "question": f"Name one use of a vector index ({i}).", "expected": "search"}}
             for i in range(30)]
    run = api.post("/v1/evals", json={"data_source": {"type": "jsonl", "source": {"type": "file_content",
                                                                                  "content": items}},
                                      "routes": ["plain"], "max_tokens": 32}).json()
    wait_for(lambda: api.get(f"/v1/evals/{run['id']}").json()["progress"]["completed"] >= 2, 120,
             "two answers recorded")
    jobs = JobSubmissionClient(live.dashboard_url)
    assert db.stop_embedded(live.pgdata)
    try:
        ended = wait_for(lambda: jobs.get_job_info(f"ragtune-{run['id']}-1").status in ("FAILED", "SUCCEEDED"),
                         120, "the first attempt to stop without its database")
        assert ended
        assert jobs.get_job_info(f"ragtune-{run['id']}-1").driver_exit_code == 75
    finally:
        db.start_embedded(live.pgdata)
    done = wait_for(lambda: (r := api.get(f"/v1/evals/{run['id']}").json())["status"] in ("completed", "failed")
                    and r, 300, "the resumed run to end")
    assert done["status"] == "completed" and done["attempt"] == 2, done
    items_out = api.get(f"/v1/evals/{run['id']}/results", params={"limit": 1000}).json()["data"]
    assert len(items_out) == 30 and len({i["datasource_item_id"] for i in items_out}) == 30
    assert {i["sample"]["attempt"] for i in items_out} == {1, 2}


def _follow_output(process: subprocess.Popen) -> list[str]:
    """The process's output lines as they come (read on a thread; the test polls the list)."""
    lines: list[str] = []
    stdout = process.stdout
    assert stdout is not None
    threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True).start()
    return lines


@pytest.mark.disruptive
def test_ingestion_survives_a_database_restart(api: httpx.Client, live, tmp_path: Path) -> None:  # noqa: ANN001
    """The database restarts while the ingestion job writes: each document's write waits it out, and the stored
    chunks are exactly a clean run's (0 lost, 0 duplicated)."""
    from cluster.content.chunking import Chunker
    from cluster.content.ingest import build_document
    from cluster.ops.local import PROJECT_ROOT

    corpus = tmp_path / "restart"
    corpus.mkdir()
    for i in range(300):
        (corpus / f"restart-{i:03d}.md").write_text(f"# Note {i}\n\n" + f"Walrus fact {i}: tusks grow. " * 40)
    chunker = Chunker.from_settings(live)
    expected = sum(len(build_document(chunker, p.read_text(), source=p.name).chunks) for p in corpus.iterdir())
    ray = str(Path(sys.executable).parent / "ray")
    job = subprocess.Popen([ray, "job", "submit", "--address", live.dashboard_url, "--working-dir",
                            str(PROJECT_ROOT), "--", "python", "-m", "jobs.ingest", str(corpus)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT)
    output = _follow_output(job)
    stored = lambda: [d for d in api.get("/v1/documents", params={"limit": 500}).json()["data"]  # noqa: E731
                      if d["source"].startswith("restart-")]
    try:
        wait_for(lambda: len(stored()) >= 20, 300, "the job to have written some documents")
        assert db.stop_embedded(live.pgdata)
        try:
            wait_for(lambda: any("database unavailable" in line for line in output), 120,
                     "the job to meet the stopped database")
        finally:
            db.start_embedded(live.pgdata)
        assert job.wait(timeout=600) == 0, "".join(output[-40:])
    finally:
        job.kill()
    docs = stored()
    assert len(docs) == 300 and sum(d["chunk_count"] for d in docs) == expected
    for d in docs:
        api.delete(f"/v1/documents/{d['id']}")


@pytest.mark.disruptive
def test_a_fine_tuning_job_survives_a_database_restart(client, live) -> None:  # noqa: ANN001
    """The database is down while the training job finishes: the dispatcher loses its lock and its ticks fail,
    then recovers and records the job succeeded exactly once, with its adapter."""
    from ray.job_submission import JobSubmissionClient

    from cluster.store.adapters import AdapterStore
    from tests.integration.test_api_fine_tuning import code_word_jsonl

    base = next(m.id for m in client.models.list().data if not getattr(m, "parent", None))
    data = client.files.create(file=("restart.jsonl", code_word_jsonl()), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=base, training_file=data, suffix="dbrestart",
                                         hyperparameters={"batch_size": 4, "max_steps": 4})
    jobs = JobSubmissionClient(live.dashboard_url)
    sid = f"ragtune-{job.id}"
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "running" and
             sid in {j.submission_id for j in jobs.list_jobs()}, 300, "the job to be submitted")
    assert db.stop_embedded(live.pgdata)
    try:
        status = wait_for(lambda: (s := str(jobs.get_job_info(sid).status)) in ("JobStatus.SUCCEEDED", "SUCCEEDED",
                                                                                 "JobStatus.FAILED", "FAILED") and s,
                          600, "the training job to end while the database is down")
        assert "SUCCEEDED" in status
    finally:
        db.start_embedded(live.pgdata)
    done = wait_for(lambda: (r := client.fine_tuning.jobs.retrieve(job.id)).finished_at and r, 300,
                    "the dispatcher to record the job")
    assert done.status == "succeeded" and AdapterStore.from_settings(live).get(done.fine_tuned_model) is not None
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert sum(m.startswith("New fine-tuned model created") for m in messages) == 1
    assert len(messages) == len(set(messages))  # no event twice
    assert sum(j.submission_id == sid for j in jobs.list_jobs()) == 1
