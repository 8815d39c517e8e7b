"""Builds the Serve application from settings: `serve run serve.app:build` or `ragtune up`.

Each deployment's resources and autoscaling come from the active profile; nothing here branches on it.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from cluster.models import grounded_adapter
from cluster.profiles import Autoscaling, Placement
from cluster.settings import Settings
from serve.api.ingress import Ingress
from serve.deployments.dispatcher import JobDispatcher
from serve.deployments.embedder import Embedder
from serve.deployments.llm import LLMServer
from serve.deployments.reranker import Reranker


# JSON lines with Serve's request id, deployment and replica on every record (and ragtune's request fields).
LOGGING = {"encoding": "JSON", "log_level": "INFO"}


def autoscaling_config(autoscaling: Autoscaling) -> dict[str, Any]:
    config = autoscaling.model_dump(exclude_none=True, exclude={"policy", "max_waiting_per_replica"})
    if autoscaling.policy == "engine_queue":
        config["policy"] = {"policy_function": "serve.autoscaling:EngineQueuePolicy",
                            "policy_kwargs": {"max_waiting_per_replica": autoscaling.max_waiting_per_replica}}
    return config


def deployment_options(name: str, placement: Placement) -> dict[str, Any]:
    return {
        "name": name,
        "ray_actor_options": {"num_cpus": placement.num_cpus, "num_gpus": placement.num_gpus},
        "max_ongoing_requests": placement.max_ongoing_requests,
        "max_queued_requests": placement.max_queued_requests,
        "autoscaling_config": autoscaling_config(placement.autoscaling),
        "health_check_period_s": 10,
        "graceful_shutdown_timeout_s": 20,
        "logging_config": LOGGING,
    }


def build(args: dict[str, Any] | None = None) -> Application:
    """The application graph: Ingress -> (Embedder, Reranker, LLMServer, JobDispatcher). `args` override
    settings fields."""
    settings = Settings(**(args or {}))
    profile = settings.profile_spec
    grounded_adapter.publish(settings)  # the RAG route's answer adapter, where the profile has one
    embedder = serve.deployment(Embedder).options(**deployment_options("Embedder", profile.embedder.placement))
    reranker = serve.deployment(Reranker).options(**deployment_options("Reranker", profile.reranker.placement))
    llm = serve.deployment(LLMServer).options(**deployment_options("LLMServer", settings.llm_spec.placement))
    # Exactly one dispatcher, on the head node (where the Ray Jobs API is); Serve restarts it if it dies.
    dispatcher = serve.deployment(JobDispatcher).options(
        name="JobDispatcher", num_replicas=1, max_ongoing_requests=64, health_check_period_s=10,
        graceful_shutdown_timeout_s=10, logging_config=LOGGING,
        ray_actor_options={"num_cpus": 0.05, "resources": {"node:__internal_head__": 0.001}})
    ingress = serve.deployment(Ingress).options(**deployment_options("Ingress", profile.ingress))
    return ingress.bind(settings, embedder.bind(settings), reranker.bind(settings), llm.bind(settings),
                        dispatcher.bind(settings))
