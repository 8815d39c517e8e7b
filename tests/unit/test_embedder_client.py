"""The embedder client: lists are cut into batch-size slices in order, and `embed_queries` embeds a question once
while it is remembered (the semantic cache and retrieval both embed it), bounded, and returns what `embed` would."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from cluster.ops.handles import EmbedderClient


class _Remote:
    def __init__(self, calls: list[list[str]]) -> None:
        self.calls = calls

    def remote(self, texts: list[str]) -> Any:
        self.calls.append(list(texts))

        async def vectors() -> list[np.ndarray]:  # a deterministic vector per text, as a real embedder gives
            return [np.array([len(t), sum(map(ord, t)) % 97, 1.0], dtype=np.float32) for t in texts]
        return vectors()


class _Handle:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.embed = _Remote(self.calls)


def test_queries_are_embedded_once_while_remembered_and_the_memory_is_bounded() -> None:
    handle = _Handle()
    client = EmbedderClient(handle, max_batch_size=2, remembered_queries=3)

    async def run() -> None:
        first = await client.embed_queries(["what is ray?", "what is vllm?"])
        again = await client.embed_queries(["what is vllm?", "what is ray?", "what is vllm?"])
        assert handle.calls == [["what is ray?", "what is vllm?"]]  # the second call embedded nothing
        assert np.array_equal(again[0], first[1]) and np.array_equal(again[1], first[0])
        plain = await client.embed(["what is vllm?", "what is ray?"])
        assert np.array_equal(plain, again[:2])  # the same vectors as the deployment's
        await client.embed_queries(["a", "b", "c"])  # pushes the oldest out: only 3 are kept
        assert len(client._queries) == 3
        handle.calls.clear()
        await client.embed_queries(["what is ray?"])
        assert handle.calls == [["what is ray?"]]  # forgotten, so embedded again

    asyncio.run(run())


def test_long_lists_are_sliced_in_order() -> None:
    handle = _Handle()
    client = EmbedderClient(handle, max_batch_size=2)
    texts = ["t1", "t22", "t333", "t4444", "t55555"]
    vectors = asyncio.run(client.embed(texts))
    assert [len(c) for c in handle.calls] == [2, 2, 1] and [int(v[0]) for v in vectors] == [2, 3, 4, 5, 6]
