"""Runs a test set through the real ingress (the HTTP path users take), one request per case and route, and
scores each answer. The summary per route and the recommendation are built from these results (`report`).

Routes: `rag` and `plain` ask the base model, `finetuned` and `hybrid` the adapter; `search` retrieves only
(`POST /v1/search`) and is scored on the expected sources. A request the ingress refuses or fails is recorded
with its error and scores nothing; it never stops the run. An ingress that cannot be reached (or keeps answering
503) is no answer at all: the run stops without recording that case and resumes later (jobs/eval.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from cluster.cli.client import ClientError, RagtuneClient
from cluster.evaluation import metrics
from cluster.evaluation.judge import judge
from cluster.evaluation.testset import Case
from cluster.store.evals import Verdict

ROUTES = ("rag", "finetuned", "hybrid", "plain", "search")
ADAPTER_ROUTES = frozenset({"finetuned", "hybrid"})
RETRIEVING = frozenset({"rag", "hybrid"})
SEARCH_K = 5
# The metric a route's quality is compared on, by the case's kind (unanswerable cases: correct_abstention).
PRIMARY = {"qa": "token_f1", "json": "exact_fields", "exact": "exact"}
PASS = 0.5  # an answer passes when its primary score reaches this (OpenAI's output items are pass / fail)
STAGES = ("rewrite_ms", "embed_ms", "search_ms", "rerank_ms", "ttft_ms", "generate_ms", "total_ms")


@dataclass(frozen=True)
class RunOptions:
    routes: tuple[str, ...] = ("rag", "plain")
    adapter: str | None = None
    concurrency: int = 2
    max_tokens: int = 128
    rerank: bool | None = None  # the `search` route's; None: the endpoint's default (the profile's, as RAG's)
    judge_runs: int = 0  # grades per answer by the LLM judge (judge.py); 0: no judge
    judge_temperature: float = 0.7
    structured_output: bool = False  # json cases: send response_format with expected's schema (guided decoding)
    search_mode: str = "hybrid"  # the `search` route's: hybrid, or one side alone (vector, keyword)
    rewrite: bool | None = None  # query rewriting on the retrieving routes; None: the profile's
    grounded: bool | None = None  # rag through the profile's grounded-answering adapter; None: the profile's


def run_options(settings: Any, routes: Sequence[str], adapter: str | None, concurrency: int, max_tokens: int,
                judge: bool | None, structured_output: bool = False, search_mode: str = "hybrid",
                rewrite: bool | None = None, grounded: bool | None = None) -> RunOptions:
    """A run's options with the profile's defaults: the judge is on where the profile says so unless the run says
    otherwise (`search` sends no rerank: the endpoint reranks as the RAG route does)."""
    profile = settings.profile_spec
    judging = profile.evaluation.judge if judge is None else judge
    return RunOptions(routes=tuple(routes), adapter=adapter, concurrency=concurrency, max_tokens=max_tokens,
                      judge_runs=profile.evaluation.judge_runs if judging else 0,
                      judge_temperature=profile.evaluation.judge_temperature, structured_output=structured_output,
                      search_mode=search_mode, rewrite=rewrite, grounded=grounded)


@dataclass
class CaseResult:
    case_id: str
    route: str
    answer: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # the server's stage timings, and the client's latency
    prompt_tokens: int = 0
    completion_tokens: int = 0
    citations: int = 0
    reranked: bool = False
    error: str | None = None

    def primary(self, case: Case) -> float | None:
        key = "correct_abstention" if case.unanswerable else PRIMARY[case.kind]
        return self.metrics.get(key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_routes(routes: Sequence[str], adapter: str | None, available: set[str]) -> None:
    """Refuse (ValueError, naming the problem) an unknown route, or an adapter route without a known adapter."""
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        raise ValueError(f"unknown route(s) {', '.join(unknown)}; use {', '.join(ROUTES)}")
    if not routes:
        raise ValueError("no routes to run")
    needs = sorted(set(routes) & ADAPTER_ROUTES)
    if needs and adapter is None:
        raise ValueError(f"route(s) {', '.join(needs)} need an adapter (--adapter NAME; see GET /v1/models)")
    if needs and adapter not in available:
        raise ValueError(f"adapter {adapter!r} is not served (GET /v1/models lists the served models)")


def _score(case: Case, route: str, result: CaseResult, payload: dict[str, Any]) -> None:
    if route == "search":
        hits = payload["hits"]
        retrieved = [h["source"] for h in hits]
        ids = [str(h["document_id"]) for h in hits]
        # expected_sources name documents by source or by id
        by = ids if case.expected_sources and all(s in ids for s in case.expected_sources) else retrieved
        result.metrics.update(metrics.retrieval(case.expected_sources, by, SEARCH_K))
        result.timings.update({k: float(v) for k, v in payload["timings"].items()})
        result.reranked = any(h.get("rerank_score") is not None for h in hits)
        return
    answer = payload["choices"][0]["message"]["content"]
    citations = payload.get("citations") or []
    result.answer, result.citations = answer, len(citations)
    result.prompt_tokens = payload["usage"]["prompt_tokens"]
    result.completion_tokens = payload["usage"]["completion_tokens"]
    result.timings.update({k: float(v) for k, v in (payload.get("timings") or {}).items() if v is not None})
    result.reranked = bool(result.timings.get("rerank_ms"))
    result.metrics.update(metrics.quality(case.kind, answer, case.expected))
    result.metrics.update(metrics.abstention(answer, case.unanswerable))
    if case.key_terms:
        result.metrics["key_term"] = metrics.names_key_term(answer, case.key_terms)
    if route in ("rag", "hybrid"):
        result.metrics.update(metrics.grounding(answer, citations))
        if case.expected_sources:
            cited = {c["source"] for c in citations} | {str(c["document_id"]) for c in citations}
            result.metrics["source_recall"] = len(set(case.expected_sources) & cited) / len(case.expected_sources)
            if case.key_terms:  # the goal: names what was asked about AND cites where it is written
                result.metrics["grounded_answer"] = float(result.metrics["key_term"] == 1.0
                                                          and result.metrics["source_recall"] > 0)


def run_case(client: RagtuneClient, case: Case, route: str, options: RunOptions, base: str) -> CaseResult:
    """One answer, scored. A refused or failing request is the result's `error`; an unreachable or overloaded
    ingress raises (ClientError with `transient`): that is no answer, and the case must be asked again."""
    result = CaseResult(case_id=case.id, route=route)
    started = time.perf_counter()
    try:
        if route == "search":
            history = [m["content"] for m in case.messages[:-1] if m["role"] == "user"]
            body = {"query": case.question, "top_n": SEARCH_K, "mode": options.search_mode,
                    **({"history": history} if history else {}),
                    **({"rerank": options.rerank} if options.rerank is not None else {}),
                    **({"rewrite": options.rewrite} if options.rewrite is not None else {})}
            payload = client.request("POST", "/v1/search", json=body)
        else:
            model = options.adapter if route in ADAPTER_ROUTES else base
            body = {"model": model, "messages": list(case.messages), "route": route, "temperature": 0,
                    "max_tokens": options.max_tokens, "cache": False,  # the route is measured, not the cache
                    **({"rewrite": options.rewrite} if options.rewrite is not None and route in RETRIEVING else {}),
                    **({"grounded": options.grounded} if options.grounded is not None and route == "rag" else {})}
            if options.structured_output and case.kind == "json" and isinstance(case.expected, dict):
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "expected", "schema": metrics.schema_of(case.expected), "strict": True}}
            payload = client.chat(body)
        _score(case, route, result, payload)
        result.timings["client_ms"] = round((time.perf_counter() - started) * 1000, 2)  # the judge is not latency
        if options.judge_runs and route != "search" and case.expected is not None:
            def ask(messages: list[dict[str, str]], run: int) -> str:
                reply = client.chat({"model": base, "messages": messages, "route": "plain", "max_tokens": 4,
                                     "temperature": options.judge_temperature, "seed": run})
                return reply["choices"][0]["message"]["content"]
            result.metrics.update(judge(ask, case.question, case.expected, result.answer, options.judge_runs))
    except ClientError as exc:
        if exc.transient:
            raise
        result.error = str(exc)
    result.timings.setdefault("client_ms", round((time.perf_counter() - started) * 1000, 2))
    return result


def verdict(case: Case, result: CaseResult) -> Verdict:
    """pass / fail on the route's primary score (recall@5 for `search`) against PASS; unscored without one."""
    if result.error is not None:
        return "error"
    score = result.metrics.get(f"recall_at_{SEARCH_K}") if result.route == "search" else result.primary(case)
    if score is None:
        return "unscored"
    return "pass" if score >= PASS else "fail"


class IngressUnavailable(RuntimeError):
    """The ingress stayed unreachable (or overloaded) through every retry: the run must resume later."""


@dataclass(frozen=True)
class Work:
    position: int  # the case's place in the test set (1-based)
    case: Case
    route: str


def pending(cases: Sequence[tuple[int, Case]], routes: Sequence[str], done: set[tuple[int, str]]) -> list[Work]:
    """What a run still has to ask: every case on every route, route by route, less what is recorded."""
    return [Work(position, case, route) for route in routes for position, case in cases
            if (position, route) not in done]


def served_models(client: RagtuneClient) -> set[str]:
    return {m["id"] for m in client.request("GET", "/v1/models")["data"]}


async def run_pending(client: RagtuneClient, work: Sequence[Work], options: RunOptions, base: str,
                      record: Callable[[Work, CaseResult], Awaitable[bool]], retries: int = 3,
                      backoff_s: float = 1.0) -> None:
    """Ask every item, `options.concurrency` at a time; `record` is awaited with each result as it ends and
    returns False to stop the run (a cancellation). A transient failure is retried with exponential backoff; one
    that outlasts the retries stops the run with IngressUnavailable, recording nothing for that item."""
    items = iter(work)
    failure: list[ClientError] = []
    stopped = False

    async def ask(item: Work) -> CaseResult:
        for attempt in range(retries):
            try:
                return await asyncio.to_thread(run_case, client, item.case, item.route, options, base)
            except ClientError:
                await asyncio.sleep(backoff_s * 2 ** attempt)
        return await asyncio.to_thread(run_case, client, item.case, item.route, options, base)

    async def worker() -> None:
        nonlocal stopped
        for item in items:  # one shared iterator: each item goes to exactly one worker
            if failure or stopped:
                return
            try:
                result = await ask(item)
            except ClientError as exc:
                failure.append(exc)
                return
            if not await record(item, result):
                stopped = True

    await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
    if failure:
        raise IngressUnavailable(str(failure[0]))
