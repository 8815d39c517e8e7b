"""/v1/feedback: rate an answer by its response id; stats per route and adapter; rated answers as an eval test set
or a fine-tuning file (JSONL)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from serve.api.dependencies import ServicesDep, observe, tenant
from serve.schemas.common import ErrorResponse
from serve.schemas.feedback import FeedbackObject, FeedbackRequest, FeedbackStats, FeedbackStatsRow

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", response_model=FeedbackObject, responses={404: {"model": ErrorResponse}})
async def rate(body: FeedbackRequest, s: ServicesDep, request: Request) -> FeedbackObject:
    """Rate one answer; rating it again replaces the rating. A downvote removes the answer from the cache."""
    observe("feedback")
    f = await s.feedback.rate(body.response_id, tenant(request), body.rating, body.comment, body.correction)
    return FeedbackObject(id=f.id, response_id=f.response_id, rating=f.rating, comment=f.comment,
                          correction=f.correction, created_at=int(f.created_at.timestamp()),
                          updated_at=int(f.updated_at.timestamp()), route=f.route, model=f.model, adapter=f.adapter,
                          cache_invalidated=f.cache_invalidated)


@router.get("/v1/feedback/stats", response_model=FeedbackStats)
async def stats(s: ServicesDep, days: int = Query(30, ge=1, le=366)) -> FeedbackStats:
    """Answers served and rated up/down, per day, route and adapter."""
    observe("feedback")
    rows = await s.feedback.stats(days)
    return FeedbackStats(days=days, data=[FeedbackStatsRow(day=r["day"].date(), route=r["route"],
                                                           adapter=r["adapter"], responses=r["responses"],
                                                           up=r["up"], down=r["down"]) for r in rows])


@router.get("/v1/feedback/export", response_class=Response,
            responses={200: {"content": {"application/jsonl": {}}}})
async def export(s: ServicesDep, as_: Literal["eval", "train"] = Query(..., alias="as")) -> Response:
    """Rated answers as JSONL: `eval` an eval test set (POST /v1/files purpose=evals), `train` a fine-tuning file."""
    observe("feedback")
    data, lines = await s.feedback.export(as_)
    return Response(data, media_type="application/jsonl", headers={"X-Lines": str(lines)})
