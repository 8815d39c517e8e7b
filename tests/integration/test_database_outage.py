"""A database that goes away answers 503 (never a 500 trace) and the ingress recovers when it is back.
Marked `disruptive`: it stops the session's database for a moment, so the collection hook runs it last."""

from __future__ import annotations

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
