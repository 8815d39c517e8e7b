"""LLM deployment: one vLLM `AsyncLLM` engine per replica, LoRA adapters loaded on demand.

Adapters are Serve-multiplexed models: requests for `name@version` are routed to replicas that already hold
it, each replica keeps an LRU of them, and an evicted adapter leaves the engine only once no request in
flight uses it. The engine core runs in a child process; `serve.lora_guard` (a vLLM plugin) keeps requests
without an adapter free of adapter weights there.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any, AsyncIterator, Callable

from ray import serve

from cluster.store.adapters import AdapterError, AdapterStore, parse_model_id
from cluster.models.cache import resolve
from cluster.profiles import LLMSpec
from cluster.settings import Settings
from serve.autoscaling import RUNNING, WAITING
from serve.deployments.llm_protocol import (
    Delta, Finished, GenerationEvent, GenerationRequest, Rejected, SamplingOptions, Started,
)

log = logging.getLogger("ray.serve.ragtune.llm")


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


class LoadedAdapter:
    """One adapter version registered in this replica's engine, with a count of requests using it."""

    def __init__(self, engine: Any, lora: Any, on_evicted: Callable[[str], None]) -> None:
        self.engine, self.lora = engine, lora
        self.on_evicted = on_evicted
        self.in_flight = 0
        self.retired = False
        self._removed = False
        self._loop = asyncio.get_running_loop()

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self._loop.create_task(self._remove())

    async def _remove(self) -> None:
        if self._removed:  # a release and the retirement can both see the last request go
            return
        self._removed = True
        await self.engine.remove_lora(self.lora.lora_int_id)
        log.info("adapter %s unloaded", self.lora.lora_name)

    def _retire(self) -> None:
        self.on_evicted(self.lora.lora_name)
        if self.in_flight == 0:
            self._loop.create_task(self._remove())

    def __del__(self) -> None:
        # Serve's multiplexer calls this (in a worker thread) when it evicts the adapter from its LRU; the
        # garbage collector may call it again later.
        if self.retired:
            return
        self.retired = True
        try:
            self._loop.call_soon_threadsafe(self._retire)
        except RuntimeError:
            pass  # the loop is gone: the replica is shutting down with its engine


class LLMServer:
    """Requests arrive rendered-ready: chat messages or a raw prompt, sampling options, an adapter id."""

    async def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoTokenizer
        from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

        from serve.observability.metrics import AdapterMetrics

        log_vllm_through_serve()
        spec = self.spec = settings.llm_spec
        on_gpu = spec.placement.num_gpus > 0 and torch.cuda.is_available()
        path = resolve(spec.model, settings.models_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # vLLM's own metrics (vllm:*) go to Ray's metrics agent with ours; EngineLoad feeds the autoscaler.
        self.load = EngineLoad()
        self.engine = build_engine(spec, path, on_gpu, stat_loggers=[RayPrometheusStatLogger, self.load.stat_logger()],
                                   configure_logging=False)
        self.metrics = AdapterMetrics()
        self.store = AdapterStore(settings.adapter_store_uri, settings.adapter_cache_dir)
        self._lora_ids = itertools.count(1)  # never reused: an id names one adapter version in the engine
        self._loaded: dict[int, LoadedAdapter] = {}
        await self._warm()

    async def _warm(self) -> None:
        """One short generation before the replica reports ready (the first forward pass is the slow one)."""
        request = GenerationRequest(request_id="warm-up", prompt="Hello",
                                    sampling=SamplingOptions(max_tokens=4, temperature=0))
        async for _ in self.generate(request):
            pass

    # ------------------------------------------------------------------------------------------ adapters

    async def _load_adapter(self, model_id: str) -> LoadedAdapter:
        from vllm.lora.request import LoRARequest

        name, version = parse_model_id(model_id)
        path = await asyncio.to_thread(self.store.local_copy, name, version)
        lora = LoRARequest(lora_name=model_id, lora_int_id=next(self._lora_ids), lora_path=str(path))
        await self.engine.add_lora(lora)  # fails here, not mid-batch, on an incompatible adapter
        adapter = LoadedAdapter(self.engine, lora, lambda name: self._count_adapter(name, evicted=True))
        self._loaded = {i: a for i, a in self._loaded.items() if not (a.retired and a.in_flight == 0)}
        self._loaded[lora.lora_int_id] = adapter
        self._count_adapter(model_id, evicted=False)
        log.info("adapter %s loaded as LoRA %d", model_id, lora.lora_int_id)
        return adapter

    def _live_adapters(self) -> set[str]:
        return {a.lora.lora_name for a in self._loaded.values() if not a.retired}

    def _count_adapter(self, model_id: str, evicted: bool) -> None:
        name = parse_model_id(model_id)[0]
        (self.metrics.evictions if evicted else self.metrics.loads).inc(tags={"adapter": name})
        self.metrics.loaded.set(len(self._live_adapters()))

    async def adapter(self, model_id: str) -> LoadedAdapter:  # replaced by a multiplexed method in `llm_server`
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------- generation

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            return self.tokenizer.apply_chat_template(list(request.messages), tokenize=True,
                                                      add_generation_prompt=True, return_dict=False)
        return self.tokenizer(request.prompt or "", add_special_tokens=True)["input_ids"]

    def _budget(self, prompt_tokens: int, wanted: int | None) -> int | Rejected:
        room = self.spec.max_model_len - prompt_tokens
        if wanted is None and room >= 1:
            return min(self.spec.default_max_tokens, room)
        if wanted is None or wanted > room:
            wanted = wanted or 1
            return Rejected(400, f"This model's maximum context length is {self.spec.max_model_len} tokens. "
                                 f"However, you requested {prompt_tokens + wanted} tokens ({prompt_tokens} in the "
                                 f"messages, {wanted} in the completion). Please reduce the length of the messages "
                                 f"or completion.", code="context_length_exceeded", param="messages")
        return wanted

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Started (or Rejected), then text deltas as the engine produces them, then Finished."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        adapter: LoadedAdapter | None = None
        if request.adapter:
            hit = request.adapter in self._live_adapters()
            self.metrics.lookups.inc(tags={"result": "hit" if hit else "miss"})
            try:
                adapter = await self.adapter(request.adapter)
            except AdapterError as exc:
                yield Rejected(409, str(exc), code="adapter_changed", param="model")
                return
            except Exception as exc:  # noqa: BLE001 - vLLM refuses adapters with ValueError/RuntimeError
                yield Rejected(400, f"adapter {request.adapter} cannot be served by this model: {exc}",
                               code="invalid_adapter", param="model")
                return
            adapter.acquire()
        try:
            ids = await asyncio.to_thread(self._prompt_ids, request)
            budget = self._budget(len(ids), request.sampling.max_tokens)
            if isinstance(budget, Rejected):
                yield budget
                return
            yield Started(prompt_tokens=len(ids), max_tokens=budget)
            s = request.sampling
            params = SamplingParams(max_tokens=budget, temperature=s.temperature, top_p=s.top_p,
                                    stop=list(s.stop) or None, seed=s.seed, presence_penalty=s.presence_penalty,
                                    frequency_penalty=s.frequency_penalty, ignore_eos=s.ignore_eos,
                                    output_kind=RequestOutputKind.DELTA)
            completion_tokens = 0
            async for out in self.engine.generate(TokensPrompt(prompt_token_ids=ids), params, request.request_id,
                                                  lora_request=adapter.lora if adapter else None):
                choice = out.outputs[0]
                completion_tokens += len(choice.token_ids)
                if choice.text:
                    yield Delta(choice.text)
                if out.finished:
                    log.info("generated", extra={"ragtune": {
                        "engine_request_id": request.request_id, "adapter": request.adapter,
                        "prompt_tokens": len(ids), "completion_tokens": completion_tokens,
                        "finish_reason": choice.finish_reason}})
                    yield Finished(choice.finish_reason or "stop", len(ids), completion_tokens)
        finally:
            # A cancelled stream (client gone) lands here too; vLLM's generate has already aborted the request.
            if adapter is not None:
                adapter.release()

    # ------------------------------------------------------------------------------------------ operator

    def stats(self) -> dict[str, Any]:
        live = {a.lora.lora_name: a.in_flight for a in self._loaded.values() if not a.retired}
        return {"model": self.spec.served_name, "unfinished_requests": self.engine.get_num_unfinished_requests(),
                "adapters_loaded": live}

    def record_autoscaling_stats(self) -> dict[str, float]:
        """What the engine queue policy (`serve.autoscaling`) scales on."""
        running, waiting = self.load.now(self.engine.get_num_unfinished_requests())
        return {RUNNING: running, WAITING: waiting}

    async def check_health(self) -> None:
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            self.engine = None
            engine.shutdown()


def llm_server(max_adapters: int) -> type[LLMServer]:
    """LLMServer with Serve multiplexing sized from the profile (the decorator takes a constant)."""

    class MultiplexedLLMServer(LLMServer):
        @serve.multiplexed(max_num_models_per_replica=max_adapters)
        async def adapter(self, model_id: str) -> LoadedAdapter:
            return await self._load_adapter(model_id)

    MultiplexedLLMServer.__name__ = MultiplexedLLMServer.__qualname__ = "LLMServer"
    return MultiplexedLLMServer
