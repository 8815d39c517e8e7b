"""Every endpoint's defaults come from the profile: a request that leaves sampling or rerank out gets the
route's values, and says which ones it got."""

from __future__ import annotations

import pytest

from cluster.profiles import PROFILES
from cluster.settings import Settings
from serve.schemas.generation import ChatCompletionRequest, CompletionRequest
from cluster.models.rerank_gate import RerankDecision, decide
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


def test_rerank_defaults_to_the_profiles_decision_with_its_reason() -> None:
    def choice(profile: str, requested: bool | None) -> tuple[bool, str]:
        service = KnowledgeService(Settings(profile=profile), None, None, None, None)  # type: ignore[arg-type]
        return service.rerank_choice(requested)

    rerank, reason = choice("cpu-dev", None)  # the prepared cross-encoder measured below the embedder
    assert rerank is False and reason.startswith("off: at models prepare the reranker's held-out MRR@10")
    assert choice("gpu", None)[0] is True
    assert choice("cpu-dev", True) == (True, "requested") and choice("gpu", False) == (False, "requested")


def test_the_rerank_gate_enables_a_reranker_only_when_it_measured_better() -> None:
    cpu = PROFILES["cpu-dev"].retrieval
    assert cpu.rerank == "if_better"
    better = decide(cpu, {"reranker_mrr_at_10": 0.41, "embedder_mrr_at_10": 0.32, "heldout_queries": 100})
    assert better.rerank is True and "0.41 beat the embedder's 0.32 (100 queries)" in better.reason
    worse = decide(cpu, {"reranker_mrr_at_10": 0.136, "embedder_mrr_at_10": 0.322, "heldout_queries": 100})
    assert worse.rerank is False and "0.136 did not beat the embedder's 0.322" in worse.reason
    tied = decide(cpu, {"reranker_mrr_at_10": 0.3, "embedder_mrr_at_10": 0.3})
    assert tied.rerank is False  # it must win, not tie, to earn its latency
    assert decide(cpu, None).rerank is False and "no held-out measurement" in decide(cpu, {}).reason
    gpu = PROFILES["gpu"].retrieval  # a profile that decides outright ignores measurements
    assert decide(gpu, {"reranker_mrr_at_10": 0.0, "embedder_mrr_at_10": 1.0}) == RerankDecision(
        True, gpu.rerank_reason)



def test_the_repetition_stop_reaches_vllm_and_ends_a_loop_but_not_an_answer() -> None:
    from vllm.v1.core.sched.utils import check_sequence_repetition

    stop = PROFILES["cpu-dev"].sampling.repetition_stop
    assert stop is not None and PROFILES["gpu"].sampling.repetition_stop is None  # the 7B model does not loop
    bare = ChatCompletionRequest(model="m", messages=QUESTION)
    params = bare.to_sampling_options(16, PROFILES["cpu-dev"].sampling.rag, stop).to_sampling_params(16)
    detection = params.repetition_detection
    loop = [11, 12, 13, 14, 15, 16, 17] * 2  # a 7-token span said twice in a row
    assert check_sequence_repetition([1, 2, 3] + loop, detection)
    assert not check_sequence_repetition(list(range(40)), detection)  # an answer that does not repeat
    assert not check_sequence_repetition([1, 2, 3, 1, 2, 3], detection)  # short stutters are left alone
    structured = ChatCompletionRequest(model="m", messages=QUESTION, response_format={"type": "json_object"})
    assert structured.to_sampling_options(16, PROFILES["cpu-dev"].sampling.rag, stop).repetition_stop is None
    assert bare.to_sampling_options(16, PROFILES["cpu-dev"].sampling.rag, None).to_sampling_params(
        16).repetition_detection is None
