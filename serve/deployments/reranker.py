"""Reranker deployment: a cross-encoder scoring (query, passage) pairs, with Ray Serve dynamic batching."""

from __future__ import annotations

import asyncio
import os

import numpy as np
from ray import serve

from cluster.models.cache import resolve
from cluster.settings import Settings
from serve.deployments.torch_runtime import device_for, torch_dtype, use_threads

Pair = tuple[str, str]


class Reranker:
    """Scores lists of pairs; concurrent calls share one forward pass. At most `max_batch_size` pairs a call."""

    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers.cross_encoder import CrossEncoder

        spec = settings.profile_spec.reranker
        use_threads(spec.placement.torch_threads)
        device = device_for(spec.placement)
        self.model = CrossEncoder(resolve(spec.model, settings.models_dir), max_length=spec.max_length,
                                  device=device, model_kwargs={"dtype": torch_dtype(spec.dtype)})
        self.score.set_max_batch_size(spec.max_batch_size)
        self.score.set_batch_wait_timeout_s(spec.batch_wait_timeout_s)
        self.model.predict([("warm-up", "warm-up")])

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=lambda calls: sum(map(len, calls)))
    async def score(self, calls: list[list[Pair]]) -> list[np.ndarray]:
        """Relevance in [0, 1] (sigmoid of the cross-encoder's logit) for each pair."""
        pairs = [p for call in calls for p in call]
        scores = await asyncio.to_thread(self.model.predict, pairs, batch_size=len(pairs), convert_to_numpy=True,
                                         show_progress_bar=False)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        out, start = [], 0
        for call in calls:
            out.append(scores[start:start + len(call)])
            start += len(call)
        return out

    def check_health(self) -> None:
        if self.model is None:
            raise RuntimeError("reranker model not loaded")
