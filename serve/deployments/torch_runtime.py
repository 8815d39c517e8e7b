"""What the torch model deployments (Embedder, Reranker) set up alike: threads, dtype and device."""

from __future__ import annotations

from typing import Any

from cluster.profiles import Dtype, Placement


def use_threads(threads: int | None) -> None:
    """Ray caps a fractional-CPU replica at one thread; a CPU model replica wants all its cores per forward pass."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def torch_dtype(name: Dtype) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def device_for(placement: Placement) -> str:
    """cuda where the profile gives the replica a GPU and one is there, else cpu."""
    import torch

    return "cuda" if placement.num_gpus > 0 and torch.cuda.is_available() else "cpu"
