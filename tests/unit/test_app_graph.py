"""The Serve application graph is built from the profile alone (no cluster needed to check it)."""

from __future__ import annotations

import pytest

from cluster.profiles import PROFILES
from serve.app import build, deployment_options


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_deployment_has_fractional_resources_and_autoscaling(profile: str) -> None:
    spec = PROFILES[profile]
    for name, placement in (("Embedder", spec.embedder.placement), ("Reranker", spec.reranker.placement),
                            ("Ingress", spec.ingress)):
        options = deployment_options(name, placement)
        assert options["autoscaling_config"]["max_replicas"] >= options["autoscaling_config"]["min_replicas"]
        assert 0 < options["ray_actor_options"]["num_cpus"] <= 1
    if profile == "gpu":
        assert 0 < spec.embedder.placement.num_gpus < 1 and 0 < spec.reranker.placement.num_gpus < 1


def test_build_binds_ingress_to_model_deployments() -> None:
    app = build({"profile": "cpu-dev"})
    assert app is not None
