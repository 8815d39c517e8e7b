"""Eval runs over HTTP on the live cluster: refusals that write nothing, a run from an uploaded test set through
the dispatcher and a real Ray Job, cancellation, and a run whose Ray job is lost mid-run resuming with the
results it had."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from cluster.settings import Settings
from tests.support.helpers import api_error, wait_for

QUESTIONS = ["What does pgvector add to Postgres?", "What is httpx?", "What is Typer used for?",
             "What is Ray Serve?", "What does FastAPI build?", "What is pydantic for?"]


def _items(n: int, questions: list[str] = QUESTIONS) -> list[dict[str, Any]]:
    return [{"item": {"id": f"q{i}", "question": questions[i % len(questions)] + f" ({i})",
                      "expected": "a Python library", "expected_sources": ["pkg/httpx.md"]}} for i in range(n)]


def _body(n: int, **extra: Any) -> dict[str, Any]:
    return {"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": _items(n)}},
            "max_tokens": 16, **extra}


def _runs(api: httpx.Client) -> int:
    return len(api.get("/v1/evals", params={"limit": 100}).json()["data"])


def _ended(api: httpx.Client, eval_id: str, timeout_s: float = 300) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        run = api.get(f"/v1/evals/{eval_id}").json()
        return run if run["status"] in ("completed", "failed", "canceled") else None
    return wait_for(check, timeout_s, f"eval run {eval_id} to end")


def _results(api: httpx.Client, eval_id: str) -> list[dict[str, Any]]:
    page = api.get(f"/v1/evals/{eval_id}/results", params={"limit": 1000}).json()
    assert not page["has_more"]
    return page["data"]


def test_bad_runs_are_refused_naming_the_problem_and_nothing_is_stored(live: Settings, api: httpx.Client,  # noqa: ANN001
                                                                         seeded: dict[str, str]) -> None:
    before = _runs(api)
    bad_item = _body(2)
    bad_item["data_source"]["source"]["content"][1] = {"item": {"question": "x?", "kind": "json", "expected": "no"}}
    error = api_error(api.post("/v1/evals", json=bad_item), 400)
    assert "line 2" in error["message"] and "object 'expected'" in error["message"]
    assert error["param"] == "data_source"
    error = api_error(api.post("/v1/evals", json=_body(2, routes=["rag", "telepathy"])), 400)
    assert "telepathy" in error["message"] and error["param"] == "routes"
    error = api_error(api.post("/v1/evals", json=_body(2, routes=["hybrid"])), 400)
    assert "need an adapter" in error["message"] and error["param"] == "adapter"
    error = api_error(api.post("/v1/evals", json=_body(2, routes=["hybrid"], adapter="no-such-adapter")), 400)
    assert "'no-such-adapter' is not served" in error["message"]
    error = api_error(api.post("/v1/evals", json=_body(2, concurrency=live.evals.max_concurrency + 1)), 400)
    assert error["param"] == "concurrency"
    api_error(api.post("/v1/evals", json=_body(2, temperature=0)), 400)  # unknown fields are refused
    upload = api.post("/v1/files", files={"file": ("t.jsonl", b'{"instruction": "q", "output": "a"}\n')},
                      data={"purpose": "fine-tune"})
    wrong_purpose = {"data_source": {"type": "jsonl", "source": {"type": "file_id", "id": upload.json()["id"]}}}
    error = api_error(api.post("/v1/evals", json=wrong_purpose), 400)
    assert "purpose 'evals'" in error["message"]
    bad_file = api.post("/v1/files", files={"file": ("e.jsonl", b'{"question": "q?"}\n{"expected": "a"}\n')},
                        data={"purpose": "evals"})
    assert "line 2" in api_error(bad_file, 400)["message"]
    assert _runs(api) == before
    api_error(api.get("/v1/evals/evalrun-nope"), 404)
    api_error(api.post("/v1/evals/evalrun-nope/cancel"), 404)


def test_a_run_from_an_uploaded_test_set_completes_with_its_report(api: httpx.Client,  # noqa: ANN001
                                                                  seeded: dict[str, str]) -> None:
    httpx_questions = ["What is httpx?", "Which HTTP client supports HTTP/2 and async?", "What is HTTPX for?"]
    content = "".join(json.dumps(i["item"]) + "\n" for i in _items(3, httpx_questions)).encode()
    upload = api.post("/v1/files", files={"file": ("set.jsonl", content)}, data={"purpose": "evals"})
    assert upload.status_code == 200 and upload.json()["examples"] == 3, upload.text
    created = api.post("/v1/evals", json={
        "name": "smoke", "data_source": {"type": "jsonl", "source": {"type": "file_id", "id": upload.json()["id"]}},
        "routes": ["plain", "search"], "max_tokens": 16, "metadata": {"team": "tests"},
        "declared": {"citations_required": True}, "judge": True})
    assert created.status_code == 200, created.text
    run = created.json()
    assert run["object"] == "eval.run" and run["status"] in ("queued", "in_progress")
    assert run["progress"] == {"completed": 0, "total": 6} and run["metadata"] == {"team": "tests"}
    done = _ended(api, run["id"])
    assert done["status"] == "completed" and done["attempt"] == 1 and done["error"] is None
    assert done["result_counts"]["total"] == 6 and done["progress"] == {"completed": 6, "total": 6}
    assert done["result_counts"]["passed"] + done["result_counts"]["failed"] <= 6
    (usage,) = done["per_model_usage"]  # the plain route asks the base model; search asks none
    assert usage["model_name"] == done["model"] and usage["invocation_count"] == 3 and usage["prompt_tokens"] > 0
    assert {c["testing_criteria"] for c in done["per_testing_criteria_results"]} == {"plain:token_f1",
                                                                                     "search:recall_at_5"}
    report = done["report"]
    assert set(report["routes"]) == {"plain", "search"} and report["declared"]["citations_required"] is True
    assert report["routes"]["search"]["metrics"]["recall_at_5"] > 0.5  # questions about httpx find pkg/httpx.md
    assert report["recommendation"]["reasons"]
    plain = report["routes"]["plain"]["metrics"]  # the judge ran (asked for), as one more metric
    assert 0 <= plain["judge_parsed"] <= 1 and (plain["judge_score"] is None or 0 <= plain["judge_score"] <= 1)
    assert report["primary_metric"] == "token_f1"
    items = _results(api, run["id"])
    assert len(items) == 6 and {(i["datasource_item_id"], i["sample"]["route"]) for i in items} == {
        (p, r) for p in (1, 2, 3) for r in ("plain", "search")}
    assert all(i["object"] == "eval.run.output_item" and i["datasource_item"]["id"].startswith("q") for i in items)
    only_passed = api.get(f"/v1/evals/{run['id']}/results", params={"status": "pass"}).json()["data"]
    assert all(i["status"] == "pass" for i in only_passed)
    messages = [e["message"] for e in reversed(api.get(f"/v1/evals/{run['id']}/events").json()["data"])]
    assert messages[0].startswith("Eval run created") and messages[-1].startswith("Eval run completed")
    assert any(m.startswith("Attempt 1 started") for m in messages)
    assert api.post(f"/v1/evals/{run['id']}/cancel").status_code == 409
    assert run["id"] in [r["id"] for r in api.get("/v1/evals").json()["data"]]


def test_canceling_stops_a_running_run_and_a_queued_one_at_once(api: httpx.Client,  # noqa: ANN001
                                                               seeded: dict[str, str]) -> None:
    running = api.post("/v1/evals", json=_body(30, routes=["plain"], max_tokens=32)).json()
    queued = api.post("/v1/evals", json=_body(2, routes=["search"])).json()  # one run at a time: it waits
    wait_for(lambda: api.get(f"/v1/evals/{running['id']}").json()["progress"]["completed"] >= 1, 120,
             "the first answer of the running run")
    canceled = api.post(f"/v1/evals/{queued['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["progress"]["completed"] == 0
    assert api.post(f"/v1/evals/{running['id']}/cancel").json()["status"] == "in_progress"
    done = _ended(api, running["id"], 120)
    assert done["status"] == "canceled" and 1 <= done["progress"]["completed"] < 30
    assert len(_results(api, running["id"])) == done["progress"]["completed"]  # what it recorded is kept


def test_a_run_whose_ray_job_is_lost_resumes_with_what_it_had(live: Settings, api: httpx.Client,  # noqa: ANN001
                                                             seeded: dict[str, str]) -> None:
    from ray.job_submission import JobSubmissionClient

    run = api.post("/v1/evals", json=_body(24, routes=["plain"], max_tokens=32)).json()
    wait_for(lambda: api.get(f"/v1/evals/{run['id']}").json()["progress"]["completed"] >= 2, 120,
             "two answers before the job is lost")
    JobSubmissionClient(live.dashboard_url).stop_job(f"ragtune-{run['id']}-1")  # behind the dispatcher's back
    before = {i["id"]: i for i in _results(api, run["id"])}
    done = _ended(api, run["id"])
    assert done["status"] == "completed" and done["attempt"] == 2, done
    items = _results(api, run["id"])
    assert len(items) == 24 and len({i["datasource_item_id"] for i in items}) == 24  # nothing twice, nothing lost
    after = {i["id"]: i for i in items}
    assert all(after[k] == v for k, v in before.items())  # the first attempt's results are kept as they were
    assert {i["sample"]["attempt"] for i in items} == {1, 2}
    messages = [e["message"] for e in api.get(f"/v1/evals/{run['id']}/events", params={"limit": 100}).json()["data"]]
    assert any("Attempt 1 ended early (stopped); resuming as attempt 2" in m for m in messages)
    assert any(m.startswith("Attempt 2 started") and "already recorded" in m for m in messages)


def test_a_run_submitted_by_hand_with_ray_jobs_is_recorded_like_the_others(live: Settings, api: httpx.Client,  # noqa: ANN001
                                                                          seeded: dict[str, str],
                                                                          tmp_path: Path) -> None:
    from cluster.ops.ray_jobs import submit_and_follow

    path = tmp_path / "by-hand.jsonl"
    path.write_text("".join(json.dumps(i["item"]) + "\n" for i in _items(2)))
    lines: list[str] = []
    entrypoint = ["python", "-m", "jobs.eval", "--testset", str(path), "--routes", "search", "--name", "by-hand"]
    assert submit_and_follow(live, entrypoint, echo=lines.append) == 0, "\n".join(lines[-30:])
    assert any(line.startswith("created eval run") for line in lines)
    run = next(r for r in api.get("/v1/evals").json()["data"] if r["name"] == "by-hand")
    assert run["status"] == "completed" and run["progress"] == {"completed": 2, "total": 2}
    assert run["data_source"]["source"] == {"type": "file", "name": "by-hand.jsonl"}
    before = _runs(api)
    path.write_text('{"question": "q?", "kind": "nope"}\n')
    lines.clear()
    assert submit_and_follow(live, entrypoint, echo=lines.append) == 1
    assert any("'kind' must be one of" in line for line in lines) and _runs(api) == before
