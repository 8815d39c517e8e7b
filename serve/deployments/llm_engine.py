"""The vLLM engine of one LLM replica: arguments from the profile, the `AsyncLLM`, the load it reports to the
autoscaler, and vLLM's logs routed through Serve's handlers."""

from __future__ import annotations

import logging
import os
from typing import Any

from cluster.profiles import LLMSpec


def engine_args(spec: LLMSpec, model_path: str, on_gpu: bool, configure_logging: bool = True) -> Any:
    """vLLM engine arguments from the profile: the one place the two profiles' engines differ."""
    from vllm.config import LoggingConfig
    from vllm.engine.arg_utils import AsyncEngineArgs

    args: dict[str, Any] = dict(
        model=model_path, dtype=spec.dtype, max_model_len=spec.max_model_len, max_num_seqs=spec.max_num_seqs,
        enable_prefix_caching=spec.enable_prefix_caching, enable_lora=spec.enable_lora,
        # Room for adapters that were evicted from Serve's LRU but still finish requests in flight.
        max_loras=spec.max_loras, max_lora_rank=spec.max_lora_rank, max_cpu_loras=spec.max_cpu_loras + spec.max_loras,
        stream_interval=spec.stream_interval, seed=0,
        logging_config=LoggingConfig(configure_logging=configure_logging),
    )
    if on_gpu:
        args["gpu_memory_utilization"] = spec.gpu_memory_utilization
    return AsyncEngineArgs(**args)


def build_engine(spec: LLMSpec, model_path: str, on_gpu: bool, stat_loggers: list[Any] | None = None,
                 configure_logging: bool = True) -> Any:
    """An `AsyncLLM` for the profile (the LLM deployment and the benchmark's raw baseline build it alike)."""
    from vllm.v1.engine.async_llm import AsyncLLM

    if not on_gpu:
        # Without it the CPU worker sizes its KV cache from NUMA node 0's memory and refuses to start.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.cpu_kvcache_gib))
    return AsyncLLM.from_engine_args(engine_args(spec, model_path, on_gpu, configure_logging),
                                     stat_loggers=stat_loggers)


class EngineLoad:
    """The scheduler's latest running and waiting counts, fed by a vLLM stat logger on every engine step."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0

    def stat_logger(self) -> type:
        from vllm.v1.metrics.loggers import StatLoggerBase

        load = self

        class LoadLogger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
                       engine_idx: int = 0) -> None:
                if scheduler_stats is not None:
                    load.running = scheduler_stats.num_running_reqs
                    load.waiting = scheduler_stats.num_waiting_reqs + scheduler_stats.num_skipped_waiting_reqs

            def log_engine_initialized(self) -> None:
                pass

        return LoadLogger

    def now(self, unfinished: int) -> tuple[int, int]:
        """(running, waiting), bounded by the requests the engine still has: an idle engine takes no steps, so
        its last step's counts would otherwise outlive the requests."""
        waiting = min(self.waiting, unfinished)
        return unfinished - waiting, waiting


def log_vllm_through_serve() -> None:
    """vLLM's loggers in this replica write through Serve's handlers (its JSON replica log, with request ids).

    The replica's engine is built with `configure_logging=False`: vLLM's own setup is a `dictConfig`, which
    closes every handler already in the process, Serve's replica log file among them. (The engine-core child
    process then logs vLLM's warnings and errors only, to the replica's stderr.)
    """
    vllm_log = logging.getLogger("vllm")
    vllm_log.setLevel(logging.INFO)
    vllm_log.propagate = False
    for handler in logging.getLogger("ray.serve").handlers:
        if handler not in vllm_log.handlers:
            vllm_log.addHandler(handler)
