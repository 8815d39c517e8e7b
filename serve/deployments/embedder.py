"""Embedder deployment: a sentence-transformers bi-encoder behind Ray Serve dynamic batching."""

from __future__ import annotations

import asyncio
import os

import numpy as np
from ray import serve

from cluster.models.cache import resolve
from cluster.settings import Settings
from serve.deployments.torch_runtime import device_for, torch_dtype, use_threads


class Embedder:
    """Encodes lists of texts; concurrent calls are merged into one forward pass by `@serve.batch`.

    A call may carry at most `max_batch_size` texts (callers slice bigger lists: `cluster.ops.handles`).
    """

    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        spec = settings.profile_spec.embedder
        self.spec = spec
        use_threads(spec.placement.torch_threads)
        device = device_for(spec.placement)
        self.model = SentenceTransformer(resolve(spec.model, settings.models_dir), device=device,
                                         model_kwargs={"dtype": torch_dtype(spec.dtype)})
        self.model.max_seq_length = spec.max_seq_length
        self.embed.set_max_batch_size(spec.max_batch_size)
        self.embed.set_batch_wait_timeout_s(spec.batch_wait_timeout_s)
        self.model.encode(["warm-up"], normalize_embeddings=True)  # the first call is slow: pay it before ready

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=lambda calls: sum(map(len, calls)))
    async def embed(self, calls: list[list[str]]) -> list[np.ndarray]:
        texts = [t for call in calls for t in call]
        vectors = await asyncio.to_thread(self.model.encode, texts, batch_size=len(texts),
                                          normalize_embeddings=True, convert_to_numpy=True)
        vectors = vectors.astype(np.float32, copy=False)
        out, start = [], 0
        for call in calls:
            out.append(vectors[start:start + len(call)])
            start += len(call)
        return out

    def tokenize_counts(self, texts: list[str]) -> list[int]:
        """Token counts as the embedder sees them (no special tokens): what OpenAI's `usage` reports."""
        return [len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def check_health(self) -> None:
        if self.model is None:
            raise RuntimeError("embedder model not loaded")
