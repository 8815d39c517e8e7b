"""Replica counts per deployment, read from the Ray dashboard's Serve REST API (no Ray connection needed).

The load test samples it once a second to plot scaling; `ragtune status` and the autoscaling test read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class DeploymentReplicas:
    running: int  # serving requests
    target: int  # what the autoscaler wants now
    starting: int  # being placed or initialising
    stopping: int  # draining


def replica_counts(dashboard_url: str, app_name: str, timeout_s: float = 5.0) -> dict[str, DeploymentReplicas]:
    response = httpx.get(f"{dashboard_url}/api/serve/applications/", timeout=timeout_s)
    response.raise_for_status()
    app = response.json().get("applications", {}).get(app_name)
    if app is None:
        return {}
    counts = {}
    for name, deployment in app["deployments"].items():
        states = [r["state"] for r in deployment.get("replicas", [])]
        counts[name] = DeploymentReplicas(
            running=states.count("RUNNING"), target=int(deployment.get("target_num_replicas") or 0),
            starting=sum(s in ("STARTING", "UPDATING", "RECOVERING", "PENDING_MIGRATION") for s in states),
            stopping=states.count("STOPPING"))
    return counts
