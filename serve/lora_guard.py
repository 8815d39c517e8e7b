"""ragtune's LoRA ops for vLLM's CPU path: correct for requests without an adapter, and grouped by adapter.

vLLM marks "no adapter" tokens with slot index -1, and its PyTorch LoRA ops (the CPU path) index the stacked
adapter weights with it, so those tokens pick up the adapter in the LAST slot whenever that slot is occupied
(every slot, once enough adapters have been used): a request without an adapter computed with an adapter's
weights. The same ops also copy one adapter's weight matrix per TOKEN (`weights[indices]`) before an einsum,
which makes prefill with an adapter several times slower than without.

The replacements compute, for each adapter present in the batch, one matmul over the rows that use it, and
leave rows without an adapter out entirely (zero LoRA contribution, as the GPU kernels do). Same signatures
and semantics otherwise.

vLLM runs its engine core in a separate process, so patching the ops in the caller is not enough: this module
is registered as a `vllm.general_plugins` entry point (pyproject.toml), which vLLM loads in every process
it starts. `RAGTUNE_LORA_GUARD=0` leaves vLLM's own ops in place (the test that proves the bug uses it).
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("ragtune.lora_guard")


def lora_rows(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Row i of the result is inputs[i] @ weights[indices[i]].T, or zeros where indices[i] < 0."""
    stacked = weights.squeeze(1) if weights.dim() == 4 else weights  # (slots, out, in)
    x = inputs.to(dtype)
    n = min(x.shape[0], indices.shape[0])
    x, indices = x[:n], indices[:n]
    slots = torch.unique(indices).tolist()
    if len(slots) == 1 and slots[0] >= 0:  # the common case: one adapter for the whole batch
        return x @ stacked[slots[0]].to(dtype).T
    out = torch.zeros((n, stacked.shape[1]), dtype=dtype, device=x.device)
    for slot in slots:
        if slot >= 0:
            rows = (indices == slot).nonzero().squeeze(1)
            out[rows] = x[rows] @ stacked[slot].to(dtype).T
    return out


def bgmv_shrink(inputs: torch.Tensor, lora_a_weights: torch.Tensor, output_tensor: torch.Tensor,
                lora_indices_tensor: torch.Tensor, scaling: float = 1.0) -> None:
    outputs = lora_rows(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[: outputs.shape[0], : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs: torch.Tensor, lora_b_weights: torch.Tensor, output_tensor: torch.Tensor,
                lora_indices_tensor: torch.Tensor, add_inputs: bool = True) -> None:
    outputs = lora_rows(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    limit = min(limit, outputs.shape[0])
    common = min(outputs.shape[1], output_tensor.shape[1])  # adapter and model may pad differently
    if add_inputs:
        output_tensor[:limit, :common] += outputs[:limit, :common]
    else:
        output_tensor[:limit, :common] = outputs[:limit, :common]


def bgmv_expand_slice(inputs: torch.Tensor, lora_b_weights: torch.Tensor, output_tensor: torch.Tensor,
                      lora_indices_tensor: torch.Tensor, slice_offset: int, slice_size: int,
                      add_inputs: bool = True) -> None:
    outputs = lora_rows(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    target = output_tensor[: outputs.shape[0], slice_offset: slice_offset + slice_size]
    if add_inputs:
        target += outputs
    else:
        target.copy_(outputs)


_OPS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice}


def install() -> None:
    """Swap the ops where vLLM's CPU punica wrapper and its sgmv helpers look them up. Idempotent."""
    if os.environ.get("RAGTUNE_LORA_GUARD", "1") == "0":
        log.warning("RAGTUNE_LORA_GUARD=0: vLLM's own CPU LoRA ops are in use (requests without an adapter can "
                    "be computed with one)")
        return
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for module in (lora_ops, punica_cpu):
        for name, op in _OPS.items():
            if hasattr(module, name):
                setattr(module, name, op)
    log.info("ragtune LoRA ops installed: grouped by adapter, no LoRA for tokens without an adapter")

