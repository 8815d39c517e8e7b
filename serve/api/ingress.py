"""The Ingress deployment: the FastAPI app (one router per area, OpenAI's error shape, the request observer)
and, per replica, the services the routers call. It holds no model: it owns the database pool and handles to
the model deployments."""

from __future__ import annotations

import os
import time

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.content.ingest import Ingester
from cluster.guardrails.classifier import load_prepared
from cluster.ops.handles import EmbedderClient, RerankerClient
from cluster.settings import Settings
from cluster.store.adapters import AdapterStore
from cluster.store.db import LazyPool
from serve.api import dependencies, documents, errors, evals, feedback, fine_tuning, generation, operations, retrieval
from serve.api.auth import ApiKeyAuth
from serve.api.body_guard import BodyGuard
from serve.api.dependencies import Services
from serve.observability.metrics import IngressMetrics
from serve.observability.request_log import RequestObserver
from serve.schemas.common import ErrorResponse
from serve.services.cache import CacheService
from serve.services.evals import EvalService
from serve.services.feedback import FeedbackService
from serve.services.fine_tuning import FineTuningService
from serve.services.generation import GenerationService
from serve.services.guardrails import GuardrailService
from serve.services.health import HealthService
from serve.services.knowledge import KnowledgeService

app = FastAPI(
    title="ragtune",
    description="Retrieval-augmented, fine-tuned and hybrid generation over one Ray cluster. OpenAI-compatible "
                "where a convention exists; errors use OpenAI's shape.",
    version="0.1.0",
    responses={400: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
errors.install(app)
app.add_middleware(BodyGuard, limits=dependencies.body_limits)
app.add_middleware(ApiKeyAuth, pool=dependencies.database_pool)  # outside the guard: no body read before the key
# Outermost: it sees every response, errors included, and measures streams to their last byte.
app.add_middleware(RequestObserver, metrics=dependencies.current_metrics)
for area in (operations, documents, retrieval, generation, fine_tuning, evals, feedback):
    app.include_router(area.router)


@serve.ingress(app)
class Ingress:
    def __init__(self, settings: Settings, embedder: DeploymentHandle, reranker: DeploymentHandle,
                 llm: DeploymentHandle, dispatcher: DeploymentHandle) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        from cluster.models.cache import resolve
        from cluster.store.local_secrets import state_secret

        profile = settings.profile_spec
        db = LazyPool(settings)
        embedder_client = EmbedderClient(embedder, profile.embedder.max_batch_size)
        knowledge = KnowledgeService(settings, db, embedder_client,
                                     RerankerClient(reranker, profile.reranker.max_batch_size),
                                     Ingester.from_settings(settings, embedder_client.embed))
        llm_tokenizer = AutoTokenizer.from_pretrained(resolve(settings.llm_spec.model, settings.models_dir))
        metrics = IngressMetrics()
        cache = CacheService(profile.cache, db.get, embedder_client.embed_queries, metrics.cache_result)
        guardrails = GuardrailService(profile.guardrails, metrics.guardrail, classifier=(
            load_prepared(resolve(profile.guardrails.model, settings.models_dir))
            if profile.guardrails.enabled and profile.guardrails.classifier else None),
            canary_key=state_secret(settings.state_dir / "guardrails-canary-key").encode())
        generation = GenerationService(settings, knowledge, llm, AdapterStore.from_settings(settings), llm_tokenizer,
                                       cache, guardrails)
        dependencies.install(Services(
            settings=settings, knowledge=knowledge, generation=generation,
            fine_tuning=FineTuningService(settings, db, llm_tokenizer, dispatcher),
            evals=EvalService(settings, db, generation, dispatcher),
            feedback=FeedbackService(profile.feedback, db.get),
            health=HealthService(db, knowledge, llm), db=db, metrics=metrics, started=int(time.time())))
