"""Readiness: can this ingress replica answer, with the database and every model deployment behind it?"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ray.serve.handle import DeploymentHandle

from cluster.store.db import LazyPool
from serve.services.knowledge import KnowledgeService

log = logging.getLogger("ray.serve.ragtune.ingress")


async def _check(name: str, probe: Callable[[], Awaitable[object]], timeout_s: float) -> str:
    try:
        await asyncio.wait_for(probe(), timeout_s)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is reported as a check result
        log.warning("readiness: %s unavailable: %r", name, exc)
        return f"unavailable: {type(exc).__name__}"  # the kind of failure, never its text (paths, addresses)


class HealthService:
    def __init__(self, db: LazyPool, knowledge: KnowledgeService, llm: DeploymentHandle) -> None:
        self.db, self.knowledge, self.llm = db, knowledge, llm

    async def readiness(self) -> dict[str, str]:
        """One result per dependency: "ok" or "unavailable: <kind>"."""
        database = await _check("database", self.db.ping, 5)
        models = await _check("embedder and reranker", self.knowledge.warm, 30)
        return {
            "database": database,
            "embedder": models,
            "reranker": models,
            # LLM replicas warm their engine before they report ready, so this answers once one is.
            "llm": await _check("llm", self.llm.check_health.remote, 30),
        }
