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
from typing import Any, AsyncIterator

from ray import serve

from cluster.adapters import AdapterError, AdapterStore, parse_model_id
from cluster.models import resolve
from cluster.profiles import LLMSpec
from cluster.settings import Settings
from serve.generation_types import (
    Delta, Finished, GenerationEvent, GenerationRequest, Rejected, SamplingOptions, Started,
)

log = logging.getLogger("ragtune.llm")


def engine_args(spec: LLMSpec, model_path: str, on_gpu: bool) -> Any:
    """vLLM engine arguments from the profile: the one place the two profiles' engines differ."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    args: dict[str, Any] = dict(
        model=model_path, dtype=spec.dtype, max_model_len=spec.max_model_len, max_num_seqs=spec.max_num_seqs,
        enable_prefix_caching=spec.enable_prefix_caching, enable_lora=spec.enable_lora,
        # Room for adapters that were evicted from Serve's LRU but still finish requests in flight.
        max_loras=spec.max_loras, max_lora_rank=spec.max_lora_rank, max_cpu_loras=spec.max_cpu_loras + spec.max_loras,
        stream_interval=spec.stream_interval, seed=0,
    )
    if on_gpu:
        args["gpu_memory_utilization"] = spec.gpu_memory_utilization
    return AsyncEngineArgs(**args)


def build_engine(spec: LLMSpec, model_path: str, on_gpu: bool) -> Any:
    """An `AsyncLLM` for the profile (the LLM deployment and the benchmark's raw baseline build it alike)."""
    from vllm.v1.engine.async_llm import AsyncLLM

    if not on_gpu:
        # Without it the CPU worker sizes its KV cache from NUMA node 0's memory and refuses to start.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.cpu_kvcache_gib))
    return AsyncLLM.from_engine_args(engine_args(spec, model_path, on_gpu))


class LoadedAdapter:
    """One adapter version registered in this replica's engine, with a count of requests using it."""

    def __init__(self, engine: Any, lora: Any) -> None:
        self.engine, self.lora = engine, lora
        self.in_flight = 0
        self.retired = False
        self._loop = asyncio.get_running_loop()

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self._loop.create_task(self._remove())

    async def _remove(self) -> None:
        await self.engine.remove_lora(self.lora.lora_int_id)
        log.info("adapter %s unloaded", self.lora.lora_name)

    def __del__(self) -> None:
        # Serve's multiplexer calls this (in a worker thread) when it evicts the adapter from its LRU; the
        # garbage collector may call it again later.
        if self.retired:
            return
        self.retired = True
        if self.in_flight == 0:
            try:
                self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._remove()))
            except RuntimeError:
                pass  # the loop is gone: the replica is shutting down with its engine


class LLMServer:
    """Requests arrive rendered-ready: chat messages or a raw prompt, sampling options, an adapter id."""

    async def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoTokenizer

        spec = self.spec = settings.llm_spec
        on_gpu = spec.placement.num_gpus > 0 and torch.cuda.is_available()
        path = resolve(spec.model, settings.models_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.engine = build_engine(spec, path, on_gpu)
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
        adapter = LoadedAdapter(self.engine, lora)
        self._loaded = {i: a for i, a in self._loaded.items() if not (a.retired and a.in_flight == 0)}
        self._loaded[lora.lora_int_id] = adapter
        log.info("adapter %s loaded as LoRA %d", model_id, lora.lora_int_id)
        return adapter

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
