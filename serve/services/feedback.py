"""The feedback loop: every answer is recorded when it finishes (so that a rating can name it by its response id),
ratings are stored with it, and rated answers export as eval test sets or fine-tuning files
(cluster/evaluation/feedback.py)."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import asyncpg

from cluster.evaluation import feedback as export_formats
from cluster.profiles import FeedbackSpec
from cluster.store import feedback as store
from serve.services.errors import not_found

log = logging.getLogger("ray.serve.ragtune.feedback")


class FeedbackService:
    def __init__(self, spec: FeedbackSpec, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self.spec, self.pool = spec, pool

    async def record(self, record: store.ResponseRecord) -> None:
        """Never fails the answer it records: the client has it already (a rating of it is then a 404)."""
        if not self.spec.record_responses:
            return
        try:
            await store.record_response(await self.pool(), record, self.spec.keep_unrated_days)
        except Exception as exc:  # noqa: BLE001
            log.warning("feedback: recording response %s failed: %r", record.id, exc)

    async def rate(self, response_id: str, tenant: str, rating: store.Rating, comment: str | None,
                   correction: str | None) -> store.Feedback:
        found = await store.rate(await self.pool(), response_id, tenant, rating, comment, correction)
        if found is None:
            why = "" if self.spec.record_responses else " (this deployment does not record responses)"
            raise not_found(f"no response {response_id!r} to rate{why}: use the `id` of a chat or completion "
                            "response", param="response_id")
        return found

    async def stats(self, days: int) -> list[dict[str, Any]]:
        return await store.stats(await self.pool(), days)

    async def export(self, as_: export_formats.Format) -> tuple[bytes, int]:
        return export_formats.export(await store.rated(await self.pool()), as_)
