"""Shapes of the health and operator endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class CacheStats(BaseModel):
    enabled: bool
    entries: int
    hits: int = Field(description="Answers served from the entries now in the cache.")
    knowledge_version: int = Field(description="Moves with every document created, changed or deleted.")
    invalidations: int = Field(description="Entries removed because a document in their prompt changed.")
