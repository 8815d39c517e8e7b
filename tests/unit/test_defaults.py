"""Every endpoint's defaults come from the profile: a request that leaves sampling or rerank out gets the
route's values, and says which ones it got."""

from __future__ import annotations

import pytest

from cluster.profiles import PROFILES
from cluster.settings import Settings
from serve.schemas.generation import ChatCompletionRequest, CompletionRequest
from serve.services.knowledge import KnowledgeService

QUESTION = [{"role": "user", "content": "What is pgvector?"}]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_route_samples_with_its_profile_defaults_unless_the_request_says(profile: str) -> None:
    sampling = PROFILES[profile].sampling
    bare = ChatCompletionRequest(model="m", messages=QUESTION)
    assert bare.temperature is None and bare.top_p is None  # no second default in the schema
    for route in ("rag", "hybrid", "finetuned", "plain"):
        options = bare.to_sampling_options(16, getattr(sampling, route))
        assert (options.temperature, options.top_p) == (getattr(sampling, route).temperature,
                                                        getattr(sampling, route).top_p)
    assert (sampling.rag.temperature, sampling.hybrid.temperature) == (0.1, 0.0)
    chosen = ChatCompletionRequest(model="m", messages=QUESTION, temperature=0.9, top_p=0.5)
    options = chosen.to_sampling_options(16, sampling.rag)
    assert (options.temperature, options.top_p, options.max_tokens) == (0.9, 0.5, 16)
    assert CompletionRequest(model="m", prompt="x", temperature=0).to_sampling_options(
        None, sampling.plain).temperature == 0


def test_rerank_defaults_to_the_profile_with_its_reason() -> None:
    def choice(profile: str, requested: bool | None) -> tuple[bool, str]:
        service = KnowledgeService(Settings(profile=profile), None, None, None, None)  # type: ignore[arg-type]
        return service.rerank_choice(requested)

    rerank, reason = choice("cpu-dev", None)
    assert rerank is False and reason.startswith("off in the cpu-dev profile")
    assert choice("gpu", None)[0] is True
    assert choice("cpu-dev", True) == (True, "requested") and choice("gpu", False) == (False, "requested")

