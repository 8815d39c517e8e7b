"""Shapes of /v1/feedback: a rating of one served answer, stats per route and adapter, exports."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from serve.schemas.common import StrictRequest


class FeedbackRequest(StrictRequest):
    response_id: str = Field(..., min_length=1, max_length=100, description="The `id` of a chat/completion response.")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=4000)
    correction: str | None = Field(None, min_length=1, max_length=32000, description=(
        "What the answer should have been: the expected answer of an eval case, the completion of a training "
        "example (`ragtune feedback export`)."))


class FeedbackObject(BaseModel):
    id: str
    object: Literal["feedback"] = "feedback"
    response_id: str
    rating: Literal["up", "down"]
    comment: str | None
    correction: str | None
    created_at: int
    updated_at: int
    route: str
    model: str
    adapter: str | None = Field(description="The adapter name@version that answered, if one did.")
    cache_invalidated: int = Field(description="Cache entries a downvote removed (the answer's own).")


class FeedbackStatsRow(BaseModel):
    day: date
    route: str
    adapter: str | None
    responses: int
    up: int
    down: int


class FeedbackStats(BaseModel):
    object: Literal["feedback.stats"] = "feedback.stats"
    days: int
    data: list[FeedbackStatsRow]
