"""A recorded eval run's parts without a cluster: what a resumed run still asks, how transient failures and
cancellations stop it, the output-item format both ways, the run's counts, and the dispatcher's decisions when
an eval's Ray job ends."""

from __future__ import annotations

import asyncio
import json
import shlex
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from cluster.cli.client import ClientError
from cluster.evaluation import judge, records, testset
from cluster.evaluation.rules import Declared
from cluster.evaluation.runner import (
    CaseResult, IngressUnavailable, RunOptions, Work, pending, run_pending, verdict,
)
from cluster.settings import Settings
from cluster.store import evals
from cluster.store.evals import EvalRun, StoredResult, Tally
from cluster.training.datasets import DatasetError
from jobs.eval import parse_args
from serve.deployments import dispatcher as dispatching

NOW = datetime.now(timezone.utc)


def _cases(n: int) -> list[testset.Case]:
    return testset.parse("".join(json.dumps({"id": f"c{i}", "question": f"what is {i}?", "expected": f"{i}"}) + "\n"
                                 for i in range(n)).encode())


def _run(**changes: Any) -> EvalRun:
    run = EvalRun(id="evalrun-0123", name="set.jsonl", model="base", adapter="ft:base:x:1", routes=["rag", "hybrid",
                  "search"], options={}, data_source={}, cases=4, metadata=None, status="in_progress",
                  cancel_requested=False, attempt=1, ray_submission_id="ragtune-evalrun-0123-1", report=None,
                  error=None, created_at=NOW, started_at=NOW, finished_at=None)
    return replace(run, **changes)


# ---------------------------------------------------------------------------------------------- test sets

def test_a_case_stored_with_a_run_reads_back_as_the_same_case() -> None:
    rows = [{"id": "a", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
             "expected": {"k": 1}, "kind": "json", "tags": ["t"]},
            {"id": "b", "question": "Who?", "unanswerable": True},
            {"question": "Where?", "expected": "here", "expected_sources": ["pkg/a.md"]}]
    cases = testset.parse("".join(json.dumps(r) + "\n" for r in rows).encode())
    again = testset.parse_items([json.loads(json.dumps(testset.as_item(c))) for c in cases])
    assert [replace(c, line=0) for c in again] == [replace(c, line=0) for c in cases]


def test_api_items_are_checked_like_lines_and_named_by_position() -> None:
    with pytest.raises(DatasetError) as refused:
        testset.parse_items([{"question": "ok?"}, "not an object", {"question": "x", "kind": "json",
                                                                      "expected": "a string"}], name="content")
    message = str(refused.value)
    assert "line 2" in message and "JSON object" in message and "line 3" in message and "object 'expected'" in message


# ------------------------------------------------------------------------------------------------ resuming

def test_a_resumed_run_asks_only_what_is_not_recorded() -> None:
    cases = list(enumerate(_cases(3), start=1))
    work = pending(cases, ["rag", "search"], {(1, "rag"), (3, "search")})
    assert [(w.position, w.route) for w in work] == [(2, "rag"), (3, "rag"), (1, "search"), (2, "search")]
    assert pending(cases, ["rag"], {(1, "rag"), (2, "rag"), (3, "rag")}) == []


class FakeIngress:
    """Answers chat requests with the case's number; `failures` transient errors first, on every request."""

    def __init__(self, failures: int = 0, status: int | None = 503) -> None:
        self.failures, self.status, self.calls = failures, status, 0

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ClientError("overloaded", status=self.status)
        answer = body["messages"][-1]["content"].split()[-1].rstrip("?")
        return {"choices": [{"message": {"content": answer}}], "usage": {"prompt_tokens": 7, "completion_tokens": 1},
                "citations": [], "timings": {"total_ms": 12.5}}


def _go(client: FakeIngress, work: list[Work], stop_after: int | None = None,
        retries: int = 2) -> list[tuple[Work, CaseResult]]:
    recorded: list[tuple[Work, CaseResult]] = []

    async def record(item: Work, result: CaseResult) -> bool:
        recorded.append((item, result))
        return stop_after is None or len(recorded) < stop_after

    asyncio.run(run_pending(client, work, RunOptions(routes=("plain",), concurrency=2), "base", record,  # type: ignore[arg-type]
                            retries=retries, backoff_s=0))
    return recorded


def test_every_pending_answer_is_recorded_once_and_scored() -> None:
    work = pending(list(enumerate(_cases(5), start=1)), ["plain"], set())
    recorded = _go(FakeIngress(), work)
    assert sorted(w.position for w, _ in recorded) == [1, 2, 3, 4, 5]
    assert all(r.metrics["exact_match"] == 1.0 and r.error is None for _, r in recorded)
    assert {verdict(w.case, r) for w, r in recorded} == {"pass"}


def test_a_transient_failure_is_retried_and_one_that_persists_stops_the_run_unrecorded() -> None:
    work = pending(list(enumerate(_cases(2), start=1)), ["plain"], set())
    client = FakeIngress(failures=2)
    assert len(_go(client, work, retries=2)) == 2  # two 503s, then answers
    with pytest.raises(IngressUnavailable, match="overloaded"):
        _go(FakeIngress(failures=100, status=None), work, retries=2)


def test_a_refused_request_is_recorded_as_that_case_s_error() -> None:
    work = pending(list(enumerate(_cases(1), start=1)), ["plain"], set())
    ((item, result),) = _go(FakeIngress(failures=1, status=400), work)
    assert result.error == "overloaded" and verdict(item.case, result) == "error"


def test_recording_false_stops_the_run_after_the_answers_in_flight() -> None:
    work = pending(list(enumerate(_cases(10), start=1)), ["plain"], set())
    assert len(_go(FakeIngress(), work, stop_after=3)) <= 4  # 3, plus at most the other worker's one in flight


def test_verdicts_follow_the_primary_score() -> None:
    (case,) = _cases(1)
    assert verdict(case, CaseResult("c0", "rag", metrics={"token_f1": 0.49})) == "fail"
    assert verdict(case, CaseResult("c0", "rag", metrics={"token_f1": 0.5})) == "pass"
    assert verdict(case, CaseResult("c0", "search", metrics={"recall_at_5": 0.0})) == "fail"
    assert verdict(case, CaseResult("c0", "rag", metrics={})) == "unscored"


# ------------------------------------------------------------------------------------------ records

def test_output_items_read_back_into_the_results_the_report_is_drawn_from() -> None:
    (case,) = _cases(1)
    result = CaseResult(case_id="c0", route="hybrid", answer="0 [Source 1]", metrics={"token_f1": 0.8, "x": None},
                        timings={"total_ms": 40.0, "client_ms": 45.0}, prompt_tokens=90, completion_tokens=6,
                        citations=1, reranked=True)
    stored = StoredResult(id=17, eval_id="evalrun-0123", position=1, route="hybrid", status="pass",
                          result=result.as_dict(), attempt=2, created_at=NOW)
    item = records.output_item(_run(), stored, testset.as_item(case))
    assert item["id"] == "outputitem-17" and item["datasource_item_id"] == 1 and item["status"] == "pass"
    assert item["sample"]["model"] == "ft:base:x:1" and item["sample"]["usage"]["total_tokens"] == 96
    assert {"name": "token_f1", "score": 0.8, "passed": True} in item["results"]
    assert item["sample"]["criterion"] == "hybrid:token_f1"
    assert records.case_result(json.loads(json.dumps(item))) == result
    failed = replace(stored, route="search", status="error", result=CaseResult("c0", "search", error="boom").as_dict())
    back = records.case_result(records.output_item(_run(), failed, testset.as_item(case)))
    assert back.error == "boom" and back.route == "search"


def test_run_counts_add_up_per_verdict_model_and_criterion() -> None:
    tallies = [Tally("rag", "qa", False, "pass", 3, 300, 30), Tally("rag", "qa", False, "fail", 1, 100, 10),
               Tally("hybrid", "json", False, "error", 2, 0, 0), Tally("rag", "qa", True, "fail", 1, 50, 5),
               Tally("search", "qa", False, "pass", 4, 0, 0)]
    counts = records.run_counts(_run(), tallies)
    assert counts["result_counts"] == {"total": 11, "passed": 7, "failed": 2, "errored": 2}
    assert counts["progress"] == {"completed": 11, "total": 12}
    usage = {u["model_name"]: u for u in counts["per_model_usage"]}
    assert set(usage) == {"base", "ft:base:x:1"}  # search asks no model
    assert usage["base"]["invocation_count"] == 5 and usage["base"]["total_tokens"] == 495
    criteria = {c["testing_criteria"]: (c["passed"], c["failed"]) for c in counts["per_testing_criteria_results"]}
    assert criteria == {"rag:token_f1": (3, 1), "rag:correct_abstention": (0, 1), "hybrid:exact_fields": (0, 0),
                        "search:recall_at_5": (4, 0)}
    assert records.run_counts(_run(), [])["result_counts"]["total"] == 0


def test_a_runs_options_are_stored_and_read_back() -> None:
    options = RunOptions(routes=("rag", "search"), adapter=None, concurrency=3, max_tokens=64, rerank=False)
    declared = Declared(knowledge_changes="daily", citations_required=True, labelled_examples=10)
    run = _run(options=json.loads(json.dumps(records.stored_options(options, declared, None))))
    assert records.options_of(run) == (options, declared, records.DEFAULT_QUERIES_PER_DAY)


# ------------------------------------------------------------------------------------------- the dispatcher

class FakeRay:
    def __init__(self, status: str | None, exit_code: int | None = None) -> None:
        self.info = None if status is None else SimpleNamespace(status=status, driver_exit_code=exit_code)
        self.submitted: list[dict[str, Any]] = []
        self.stopped: list[str] = []

    def get_job_info(self, job_id: str) -> Any:
        if self.info is None:
            raise RuntimeError("Job ragtune-x does not exist")
        return self.info

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted.append(kwargs)
        return kwargs["submission_id"]

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        return True

    def get_job_logs(self, job_id: str) -> str:
        return ""


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """What the dispatcher decided about a run, instead of writing it to Postgres."""
    seen: list[tuple[str, ...]] = []

    async def finish(pool: Any, eval_id: str, status: str, message: str, **kw: Any) -> None:
        seen.append(("finish", status, (kw.get("error") or {}).get("code", "")))

    async def next_attempt(pool: Any, eval_id: str, reason: str) -> EvalRun:
        seen.append(("retry", reason))
        return _run(attempt=2, ray_submission_id="ragtune-evalrun-0123-2")

    monkeypatch.setattr(evals, "finish", finish)
    monkeypatch.setattr(evals, "next_attempt", next_attempt)
    return seen


def _follow(ray: FakeRay, run: EvalRun) -> None:
    d = dispatching.Dispatcher(Settings(), client=ray)
    d.pool = object()  # type: ignore[assignment]
    d.eval_key = "rt-test"  # registering the cluster's key needs the database
    asyncio.run(d.follow_eval(run))


@pytest.mark.parametrize(("status", "exit_code", "cancel", "expected", "submits"), [
    ("RUNNING", None, False, [], 0),
    ("STOPPED", None, False, [("retry", "stopped")], 1),  # a lost worker: resume as the next attempt
    ("FAILED", 75, False, [("retry", "exit code 75")], 1),  # the ingress was unreachable
    ("FAILED", 1, False, [("finish", "failed", "eval_failed")], 0),  # the job failed the run itself
    ("SUCCEEDED", 0, False, [("finish", "failed", "eval_failed")], 0),  # no-op in SQL when it had completed
    ("STOPPED", None, True, [("finish", "canceled", "")], 0),
    (None, None, False, [], 1),  # Ray never got it (or forgot it): the same submission id again
])
def test_the_dispatcher_decides_what_an_ended_eval_job_means(decisions: list, status: str | None,  # noqa: ANN001
                                                             exit_code: int | None, cancel: bool, expected: list,
                                                             submits: int) -> None:
    ray = FakeRay(status, exit_code)
    _follow(ray, _run(cancel_requested=cancel))
    assert decisions == expected and len(ray.submitted) == submits


def test_a_run_out_of_attempts_fails_and_keeps_its_results(decisions: list) -> None:  # noqa: ANN001
    _follow(FakeRay("FAILED", 75), _run(attempt=Settings().evals.max_attempts))
    assert decisions == [("finish", "failed", "ingress_unavailable")]


def test_a_canceled_running_eval_is_stopped() -> None:
    ray = FakeRay("RUNNING")
    _follow(ray, _run(cancel_requested=True))
    assert ray.stopped == ["ragtune-evalrun-0123-1"]


def test_the_eval_entrypoint_parses_back_into_the_jobs_config() -> None:
    args = dispatching.eval_entrypoint(_run(attempt=3))
    config = parse_args(shlex.split(shlex.join(args))[3:])
    assert args[:3] == ["python", "-m", "jobs.eval"] and config.eval_id == "evalrun-0123" and config.attempt == 3


# ----------------------------------------------------------------------------------------------- the judge

def test_judge_grades_are_read_only_when_they_stand_alone() -> None:
    assert [judge.grade(r) for r in ("4", "Grade: 5.", " 3 - partly", "10", "none", "")] == [4, 5, 3, None, None,
                                                                                              None]


def test_judge_scores_average_the_parsed_grades_and_say_how_many_parsed() -> None:
    replies = iter(["5", "4", "no idea"])
    scored = judge.judge(lambda messages, run: next(replies), "q?", "expected", "answer", runs=3)
    assert scored["judge_score"] == pytest.approx(0.875) and scored["judge_parsed"] == pytest.approx(2 / 3)
    assert judge.judge(lambda m, r: "1", "q?", {"k": 1}, "", runs=2) == {"judge_score": 0.0, "judge_parsed": 1.0}
    assert judge.judge(lambda m, r: "?", "q?", "e", "a", runs=2) == {"judge_score": None, "judge_parsed": 0.0}


class JudgedIngress(FakeIngress):
    """Answers questions like FakeIngress; grades (requests with the rubric) with a fixed reply, per seed."""

    def __init__(self) -> None:
        super().__init__()
        self.grades: list[dict[str, Any]] = []

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][0]["content"] == judge.RUBRIC:
            self.grades.append(body)
            return {"choices": [{"message": {"content": "2"}}]}
        return super().chat(body)


def test_the_judge_runs_with_its_own_seeds_and_only_where_asked() -> None:
    work = pending(list(enumerate(_cases(1), start=1)), ["plain"], set())
    client = JudgedIngress()
    recorded: list[CaseResult] = []

    async def record(item: Work, result: CaseResult) -> bool:
        recorded.append(result)
        return True

    options = RunOptions(routes=("plain",), judge_runs=3, judge_temperature=0.5)
    asyncio.run(run_pending(client, work, options, "base", record, backoff_s=0))  # type: ignore[arg-type]
    (result,) = recorded
    assert result.metrics["judge_score"] == pytest.approx(0.25) and result.metrics["exact_match"] == 1.0
    assert [g["seed"] for g in client.grades] == [0, 1, 2] and {g["temperature"] for g in client.grades} == {0.5}
    assert verdict(work[0].case, result) == "pass"  # the judge never decides pass / fail
    assert "judge_score" not in _go(FakeIngress(), work)[0][1].metrics  # off by default


def test_the_profile_decides_whether_the_judge_runs() -> None:
    from cluster.evaluation.runner import run_options

    cpu, gpu = Settings(profile="cpu-dev"), Settings(profile="gpu")
    assert run_options(cpu, ["rag"], None, 2, 64, None).judge_runs == 0
    assert run_options(cpu, ["rag"], None, 2, 64, True).judge_runs == cpu.profile_spec.evaluation.judge_runs
    assert run_options(gpu, ["rag"], None, 2, 64, None).judge_runs == 3
    assert run_options(gpu, ["rag"], None, 2, 64, False).judge_runs == 0


# -------------------------------------------------------------------------------------- structured output

def test_structured_output_sends_expecteds_schema_for_json_cases_only() -> None:
    from jsonschema import ValidationError, validate

    from cluster.evaluation.metrics import schema_of

    expected = {"name": "Ada Byrne", "age": 36, "member": True}
    schema = schema_of(expected)
    validate(expected, schema)
    for wrong in ({"name": "Ada", "age": "36", "member": True}, {"name": "Ada", "age": 36},
                  {**expected, "extra": 1}):
        with pytest.raises(ValidationError):
            validate(wrong, schema)

    class Recording(FakeIngress):
        def __init__(self) -> None:
            super().__init__()
            self.bodies: list[dict[str, Any]] = []

        def chat(self, body: dict[str, Any]) -> dict[str, Any]:
            self.bodies.append(body)
            return super().chat(body)

    rows = [{"id": "j", "question": "Extract: Ada Byrne, 36, member?", "kind": "json", "expected": expected},
            {"id": "q", "question": "what is 1?", "expected": "1"}]
    cases = list(enumerate(testset.parse("".join(json.dumps(r) + "\n" for r in rows).encode()), start=1))

    def bodies(structured: bool) -> dict[str, dict[str, Any]]:
        client = Recording()

        async def record(item: Work, result: CaseResult) -> bool:
            return True

        options = RunOptions(routes=("plain",), concurrency=1, structured_output=structured)
        asyncio.run(run_pending(client, pending(cases, ["plain"], set()), options, "base", record,  # type: ignore[arg-type]
                                backoff_s=0))
        return {b["messages"][-1]["content"][:7]: b for b in client.bodies}

    on = bodies(True)
    assert on["Extract"]["response_format"]["json_schema"]["schema"] == schema
    assert "response_format" not in on["what is"]  # qa cases are never constrained
    assert all("response_format" not in b for b in bodies(False).values())


@pytest.mark.parametrize("answer,cited,grounded", [
    ("findall returns every match [Source 1].", "re.txt", 1.0),
    ("findall returns every match [Source 1].", "glob.txt", 0.0),  # names it, cites the wrong document
    ("It returns every match [Source 1].", "re.txt", 0.0),  # cites the right one, names nothing
])
def test_a_grounded_answer_names_the_key_term_and_cites_an_expected_source(answer: str, cited: str,
                                                                          grounded: float) -> None:
    from cluster.evaluation.runner import _score

    case = testset.parse_items([{"question": "What does re.findall do?", "expected": "every match",
                                 "expected_sources": ["re.txt"], "key_terms": ["findall"]}])[0]
    payload = {"choices": [{"message": {"content": answer}}], "usage": {"prompt_tokens": 9, "completion_tokens": 5},
               "citations": [{"source": cited, "document_id": "d", "source_number": 1, "quote": "q",
                              "chunk_text": "findall returns every match"}], "timings": {"total_ms": 3.0}}
    result = CaseResult(case_id=case.id, route="rag")
    _score(case, "rag", result, payload)
    assert result.metrics["grounded_answer"] == grounded
    plain = CaseResult(case_id=case.id, route="plain")
    _score(case, "plain", plain, payload)
    assert "grounded_answer" not in plain.metrics and plain.metrics["key_term"] == (0.0 if "It" in answer else 1.0)
