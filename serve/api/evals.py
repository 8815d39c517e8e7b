"""Eval runs: /v1/evals (create and queue, list, read), their output items, events and cancellation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from serve.api.dependencies import ServicesDep
from serve.schemas.evals import EvalCreate, EvalEventList, EvalRunList, EvalRunOut, OutputItemList, event_out

router = APIRouter(tags=["evals"])


@router.post("/v1/evals", response_model=EvalRunOut)
async def create_eval(body: EvalCreate, s: ServicesDep) -> EvalRunOut:
    """Validate a test set and its routes, record the run with its cases and queue it; a Ray Job runs it."""
    return await s.evals.create(body)


@router.get("/v1/evals", response_model=EvalRunList)
async def list_evals(s: ServicesDep, after: Annotated[str | None, Query()] = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> EvalRunList:
    runs, more = await s.evals.list(after, limit)
    return EvalRunList(data=runs, first_id=runs[0].id if runs else None, last_id=runs[-1].id if runs else None,
                       has_more=more)


@router.get("/v1/evals/{eval_id}", response_model=EvalRunOut)
async def get_eval(eval_id: str, s: ServicesDep) -> EvalRunOut:
    """Status, counts so far and, once completed, the report with the recommendation."""
    return await s.evals.get(eval_id)


@router.get("/v1/evals/{eval_id}/results", response_model=OutputItemList)
async def list_eval_results(eval_id: str, s: ServicesDep, after: Annotated[str | None, Query()] = None,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                            status: Annotated[str | None, Query(description="pass, fail, error or unscored")]
                            = None) -> OutputItemList:
    """One output item per case and route, in the order they were answered."""
    items, more = await s.evals.results(eval_id, after, limit, status)
    return OutputItemList(data=items, first_id=items[0].id if items else None,
                          last_id=items[-1].id if items else None, has_more=more)


@router.get("/v1/evals/{eval_id}/events", response_model=EvalEventList)
async def list_eval_events(eval_id: str, s: ServicesDep, after: Annotated[str | None, Query()] = None,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> EvalEventList:
    """Newest first: created, started (per attempt), progress, completed / failed / canceled."""
    events, more = await s.evals.events(eval_id, after, limit)
    return EvalEventList(data=[event_out(e) for e in events], has_more=more)


@router.post("/v1/evals/{eval_id}/cancel", response_model=EvalRunOut)
async def cancel_eval(eval_id: str, s: ServicesDep) -> EvalRunOut:
    """A queued run is canceled at once; a running one stops after the answers in flight (409 if finished)."""
    return await s.evals.cancel(eval_id)
