"""Helpers shared by the batched model deployments."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Sequence, TypeVar

T = TypeVar("T")


def use_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


async def in_slices(items: Sequence[T], size: int, call: Callable[[list[T]], Awaitable[list[Any]]]) -> list[Any]:
    """Call `call` on consecutive slices of at most `size` items, concurrently, and concatenate in order.

    Concurrent slices let the deployment's dynamic batcher fill its batches across replicas.
    """
    parts = await asyncio.gather(*(call(list(items[i:i + size])) for i in range(0, len(items), size)))
    return [x for part in parts for x in part]
