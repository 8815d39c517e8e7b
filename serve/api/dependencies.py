"""How a router reaches this replica's services: the Ingress builds them once per replica process and installs
them here. (Not on `app.state`: `serve.ingress` serves a frozen copy of the app, so the module's `app` is not the
one `request.app` names.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends

from cluster.settings import Settings
from cluster.store.db import LazyPool
from serve.observability.metrics import IngressMetrics
from serve.observability.request_log import current
from serve.services.evals import EvalService
from serve.services.feedback import FeedbackService
from serve.services.fine_tuning import FineTuningService
from serve.services.generation import GenerationService
from serve.services.health import HealthService
from serve.services.knowledge import KnowledgeService


@dataclass(frozen=True)
class Services:
    settings: Settings
    knowledge: KnowledgeService
    generation: GenerationService
    fine_tuning: FineTuningService
    evals: EvalService
    feedback: FeedbackService
    health: HealthService
    db: LazyPool  # the error handlers expire its connections after a database failure
    metrics: IngressMetrics  # the request observer records every request into them
    started: int  # when this replica started (the base model's `created`)


_installed: Services | None = None


def install(services: Services) -> None:
    global _installed
    _installed = services


def current_services() -> Services | None:
    return _installed


def current_metrics() -> IngressMetrics | None:
    return _installed.metrics if _installed is not None else None


def body_limits() -> tuple[int, int]:
    """(JSON, multipart) body limits of this replica's settings; the defaults before the services exist."""
    limits = (_installed.settings if _installed is not None else Settings()).http
    return limits.max_json_bytes, limits.max_upload_bytes


async def database_pool() -> Any:
    """This replica's pool (opened on first use)."""
    return await _services().db.get()


def _services() -> Services:
    if _installed is None:
        raise RuntimeError("the ingress's services are not installed (the Ingress deployment installs them)")
    return _installed


ServicesDep = Annotated[Services, Depends(_services)]


def observe(route: str, **fields: Any) -> None:
    """Name this request's route (and model, timings...) in its metrics and log line."""
    record = current()
    if record is not None:
        record.route = route
        for key, value in fields.items():
            setattr(record, key, value)


def tenant(request: Any) -> str:
    """Whose request this is: the API key's id (serve.api.auth puts it in the request's state), `local` while the
    cluster has no keys. Cache entries and recorded answers belong to it."""
    return request.scope.get("state", {}).get("api_key_id") or "local"
