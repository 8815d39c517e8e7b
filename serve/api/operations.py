"""Liveness, readiness, the cluster's Prometheus metrics, one LLM replica's engine state, the semantic cache."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from serve.api.dependencies import ServicesDep
from serve.observability.prometheus import cluster_exposition
from serve.schemas.operations import CacheStats, Health
from serve.services.errors import ApiError

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
async def readyz(s: ServicesDep) -> JSONResponse:
    checks = await s.health.readiness()
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())


@router.get("/metrics", response_class=PlainTextResponse, tags=["health"])
async def metrics(s: ServicesDep) -> PlainTextResponse:
    """Prometheus exposition of the whole cluster: ragtune's metrics, Ray's (Serve included) and vLLM's."""
    try:
        text = await cluster_exposition()
    except RuntimeError:
        raise ApiError(503, "no Ray metrics agent answered", type="service_unavailable",
                       code="metrics_unavailable") from None
    return PlainTextResponse(text + await _cache_exposition(s),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


async def _cache_exposition(s: ServicesDep) -> str:
    """The cache's cluster-wide figures, from Postgres (the triggers count invalidations, whoever writes documents:
    no replica's counter sees them all); nothing when the database cannot be read."""
    if s.generation.cache is None:
        return ""
    try:
        stats = await s.generation.cache.stats()
    except Exception:  # noqa: BLE001 - the rest of the scrape is still worth having
        return ""
    return ("# HELP ragtune_cache_invalidations_total Cache entries removed because a document in their prompt "
            "changed.\n# TYPE ragtune_cache_invalidations_total counter\n"
            f"ragtune_cache_invalidations_total {stats['invalidations']}\n"
            "# HELP ragtune_cache_entries Answers in the semantic cache.\n# TYPE ragtune_cache_entries gauge\n"
            f"ragtune_cache_entries {stats['entries']}\n")


@router.get("/v1/engine/stats", tags=["operator"])
async def engine_stats(s: ServicesDep) -> dict[str, Any]:
    """One LLM replica's engine: unfinished requests and the adapters it holds (with requests in flight)."""
    return await s.generation.engine_stats()


@router.get("/v1/cache", response_model=CacheStats, tags=["operator"])
async def cache_stats(s: ServicesDep) -> CacheStats:
    """The semantic cache: entries, hits served, the knowledge base's version, entries invalidated by changes."""
    return CacheStats(enabled=s.generation.cache is not None and s.settings.profile_spec.cache.enabled,
                      **await _cache(s).stats())


@router.delete("/v1/cache", tags=["operator"])
async def cache_clear(s: ServicesDep) -> dict[str, Any]:
    """Drop every cached answer."""
    return {"object": "cache.cleared", "deleted": await _cache(s).clear()}


def _cache(s: ServicesDep) -> Any:
    if s.generation.cache is None:
        raise ApiError(404, "this deployment has no semantic cache", code="cache_disabled")
    return s.generation.cache
