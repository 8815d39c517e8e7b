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

from cluster.models.cache import resolve
from cluster.settings import Settings
from cluster.store.adapters import AdapterError, AdapterStore, parse_model_id
from serve.autoscaling import RUNNING, WAITING
from serve.deployments.llm_engine import EngineLoad, build_engine, log_vllm_through_serve
from serve.deployments.llm_protocol import (
    engine_dead,
    Delta, Finished, GenerationEvent, GenerationRequest, Rejected, SamplingOptions, Started,
)

log = logging.getLogger("ray.serve.ragtune.llm")


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
        self.store = AdapterStore.from_settings(settings)
        self._lora_ids = itertools.count(1)  # never reused: an id names one adapter version in the engine
        self._loaded: dict[int, LoadedAdapter] = {}

        # Serve's multiplexing, sized from the profile (as Ray Serve LLM wires it): an LRU of adapters per replica,
        # and requests for an adapter routed to replicas that hold it. A plain function, not the bound method:
        # Serve keeps its LRU as an attribute of the function it wraps.
        async def load(model_id: str) -> LoadedAdapter:
            return await self._load_adapter(model_id)

        self._adapter = serve.multiplexed(max_num_models_per_replica=spec.max_cpu_loras)(load)
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

    # ---------------------------------------------------------------------------------------- generation

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            ids = self.tokenizer.apply_chat_template(list(request.messages), tokenize=True,
                                                     add_generation_prompt=True, return_dict=False)
        else:
            ids = self.tokenizer(request.prompt or "", add_special_tokens=True)["input_ids"]
        if request.continuation:  # a cut answer: the model goes on from the text the client already has
            ids = list(ids) + self.tokenizer(request.continuation, add_special_tokens=False)["input_ids"]
        return ids

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
        from vllm.inputs import TokensPrompt

        adapter: LoadedAdapter | None = None
        if request.adapter:
            hit = request.adapter in self._live_adapters()
            self.metrics.lookups.inc(tags={"result": "hit" if hit else "miss"})
            try:
                adapter = await self._adapter(request.adapter)
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
            params = request.sampling.to_sampling_params(budget)
            refused = _unsupported_format(params)
            if refused is not None:
                yield refused
                return
            yield Started(prompt_tokens=len(ids), max_tokens=budget)
            completion_tokens = 0
            async for out in self._engine_outputs(TokensPrompt(prompt_token_ids=ids), params, request.request_id,
                                                  adapter.lora if adapter else None):
                choice = out.outputs[0]
                completion_tokens += len(choice.token_ids)
                if choice.text or choice.token_ids:
                    yield Delta(choice.text, len(choice.token_ids))
                if out.finished:
                    log.info("generated", extra={"ragtune": {
                        "engine_request_id": request.request_id, "adapter": request.adapter,
                        "prompt_tokens": len(ids), "completion_tokens": completion_tokens,
                        "finish_reason": choice.finish_reason}})
                    # vLLM's "repetition" (its repetition detection ended it) is OpenAI's "stop"; the log keeps it.
                    reason = choice.finish_reason or "stop"
                    yield Finished("stop" if reason == "repetition" else reason, len(ids), completion_tokens)
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

    async def _engine_outputs(self, prompt: Any, params: Any, request_id: str, lora: Any) -> AsyncIterator[Any]:
        try:
            async for out in self.engine.generate(prompt, params, request_id, lora_request=lora):
                yield out
        except Exception as exc:
            if engine_dead(exc):
                self._die(exc)
            raise

    def _die(self, exc: BaseException) -> None:
        """The engine process is gone (killed, OOM): this replica can never answer again. Exiting lets Serve
        replace it at once; waiting for failed health checks kept a dead replica taking requests for ~30 s, each
        failing in milliseconds. In-flight requests end with an error event at the ingress."""
        log.error("the vLLM engine died (%r); exiting so that Serve replaces this replica", exc)
        asyncio.get_running_loop().call_later(0.2, os._exit, 1)

    async def check_health(self) -> None:
        try:
            await self.engine.check_health()
        except Exception as exc:
            if engine_dead(exc):
                self._die(exc)
            raise

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            self.engine = None
            engine.shutdown()


def _unsupported_format(params: Any) -> Rejected | None:
    """A schema the grammar compiler (xgrammar, vLLM's default backend here) cannot build is a 400 before the
    response starts; vLLM would only refuse it inside the engine's stream."""
    if params.structured_outputs is None:
        return None
    from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

    try:
        validate_xgrammar_grammar(params)
    except ValueError as exc:  # VLLMValidationError is a ValueError
        return Rejected(400, f"response_format: this JSON schema cannot be enforced ({exc})",
                        code="invalid_json_schema", param="response_format")
    return None
