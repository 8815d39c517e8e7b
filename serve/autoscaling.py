"""The LLM deployment's autoscaling policy: scale on the engines' own queues, not only on Serve's request count.

Serve's stock policy counts requests a replica holds. For an LLM that says little: a replica holding 30 requests
may decode all of them in one batch or be queueing most of them, depending on `max_num_seqs` and the KV cache.
The engine knows: every replica reports its scheduler's running and waiting sequences
(`LLMServer.record_autoscaling_stats`), and this policy asks for a replica more while the engines queue more than
`max_waiting_per_replica` each, and sizes down from running + waiting when they do not.

Serve wraps the policy with the deployment's min/max replicas and up/down delays, so it only says what it would
like. It runs in the Serve controller (cloudpickled by value): it imports nothing from ragtune.
"""

from __future__ import annotations

import math
from typing import Any

from ray.serve.config import AutoscalingContext

RUNNING = "engine_running"
WAITING = "engine_waiting"


class EngineQueuePolicy:
    def __init__(self, max_waiting_per_replica: float = 1.0) -> None:
        self.max_waiting_per_replica = max_waiting_per_replica

    def __call__(self, ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
        current = ctx.current_num_replicas
        if current == 0:
            return ctx.target_num_replicas, {}
        metrics = ctx.aggregated_metrics or {}
        running = sum(metrics.get(RUNNING, {}).values())
        waiting = sum(metrics.get(WAITING, {}).values())
        target = ctx.config.get_target_ongoing_requests()
        # Demand per target: the engines' sequences, or Serve's count when requests wait before an engine sees them.
        desired = max(running + waiting, ctx.total_num_requests) / target
        if waiting > self.max_waiting_per_replica * current:
            # The batches are full and requests wait for a slot: add capacity even below the request target.
            desired = max(desired, current + math.ceil(waiting / max(target, 1.0)))
        state = {"engine_running": running, "engine_waiting": waiting, "desired": round(desired, 2)}
        return desired, state
