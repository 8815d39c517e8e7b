"""The LLM's engine-queue autoscaling policy, and every deployment's policy as Serve will read it."""

from __future__ import annotations

import pytest
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from cluster.profiles import PROFILES
from serve.app import autoscaling_config
from serve.autoscaling import RUNNING, WAITING, EngineQueuePolicy


def context(replicas: int, running: list[float], waiting: list[float], serve_requests: float = 0,
            target: float = 16) -> AutoscalingContext:
    config = AutoscalingConfig(min_replicas=1, max_replicas=8, target_ongoing_requests=target)
    ids = [f"replica-{i}" for i in range(replicas)]
    return AutoscalingContext(
        deployment_id=None, deployment_name="LLMServer", app_name="ragtune", current_num_replicas=replicas,
        target_num_replicas=replicas, running_replicas=ids, total_num_requests=serve_requests,
        total_queued_requests=0, aggregated_metrics={RUNNING: dict(zip(ids, running)), WAITING: dict(zip(ids, waiting))},
        raw_metrics=None, capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=8, policy_state={},
        last_scale_up_time=None, last_scale_down_time=None, current_time=0.0, config=config)


def test_a_persistent_engine_queue_adds_a_replica_below_the_request_target() -> None:
    # 12 sequences in flight is under the target of 16, but 4 of them wait: the engine's batch is full.
    desired, state = EngineQueuePolicy(max_waiting_per_replica=1)(context(1, running=[8], waiting=[4]))
    assert desired >= 2
    assert state["engine_waiting"] == 4


def test_no_queue_sizes_from_running_sequences() -> None:
    policy = EngineQueuePolicy(max_waiting_per_replica=1)
    assert policy(context(2, running=[4, 4], waiting=[0, 0]))[0] == pytest.approx(0.5)  # scale in
    assert policy(context(2, running=[16, 16], waiting=[0, 0]))[0] == pytest.approx(2)  # steady
    # Requests held by Serve before the engine sees them count too.
    assert policy(context(1, running=[0], waiting=[0], serve_requests=40))[0] == pytest.approx(2.5)


def test_a_queue_within_tolerance_does_not_scale_out() -> None:
    desired, _ = EngineQueuePolicy(max_waiting_per_replica=4)(context(2, running=[4, 4], waiting=[2, 2]))
    assert desired < 2


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_policy_is_one_serve_accepts(profile: str) -> None:
    spec = PROFILES[profile]
    for placement in (spec.llm.placement, spec.embedder.placement, spec.reranker.placement, spec.ingress):
        config = AutoscalingConfig(**autoscaling_config(placement.autoscaling))
        assert config.min_replicas <= config.max_replicas
    llm = AutoscalingConfig(**autoscaling_config(spec.llm.placement.autoscaling))
    assert llm.policy.policy_function == "serve.autoscaling:EngineQueuePolicy"
    assert callable(llm.policy.get_policy())
    embedder = AutoscalingConfig(**autoscaling_config(spec.embedder.placement.autoscaling))
    assert embedder.policy.policy_function != llm.policy.policy_function
