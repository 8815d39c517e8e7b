"""The semantic cache's threshold + meaning guard on the labelled question pairs, with the real embedder (MiniLM,
as the cpu-dev profile serves it): no near miss may be served, and paraphrases must be.

`cache_pairs.jsonl` was written with the guard (its development set); `cache_pairs_heldout.jsonl` was written
without seeing the guard and then used once to find general defects; `cache_pairs_heldout2.jsonl` was written
after the guard was frozen and never used to change it. Figures: docs/cache.md (`python -m bench.cache`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cluster.models.cache import resolve
from cluster.settings import Settings
from serve.services.cache_guard import score_pairs

SETS = Path(__file__).resolve().parents[2] / "cluster" / "evaluation" / "sets"
# The paraphrase rates each set must keep (a floor under the measured figure, so that a change to the guard that
# costs hit rate is seen); false hits must be 0 everywhere.
FLOORS = {"cache_pairs.jsonl": 0.85, "cache_pairs_heldout.jsonl": 0.6, "cache_pairs_heldout2.jsonl": 0.4}


@pytest.fixture(scope="module")
def embedder():  # noqa: ANN201
    from sentence_transformers import SentenceTransformer

    settings = Settings()
    return SentenceTransformer(resolve(settings.profile_spec.embedder.model, settings.models_dir), device="cpu")


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_no_near_miss_is_served_and_paraphrases_are(embedder, name: str) -> None:  # noqa: ANN001
    pairs = [json.loads(line) for line in (SETS / name).read_text().splitlines() if line.strip()]
    a = embedder.encode([p["a"] for p in pairs], normalize_embeddings=True)
    b = embedder.encode([p["b"] for p in pairs], normalize_embeddings=True)
    rates = score_pairs(pairs, list(np.sum(a * b, axis=1)), Settings().profile_spec.cache.min_similarity)
    assert rates.false_hits == 0, rates.false_hit_pairs
    assert rates.near_misses_above_threshold > rates.near_misses / 3  # the guard, not the threshold, refuses them
    assert rates.hit_rate >= FLOORS[name], rates
