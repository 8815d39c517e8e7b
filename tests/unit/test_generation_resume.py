"""An answer whose LLM replica dies is finished by another replica, from the text already streamed.

The LLM deployment is faked at its handle: each "replica" streams a fixed answer word by word, picking it up after
the request's `continuation`, and the test decides which replicas die and when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from cluster.settings import Settings
from serve.deployments.llm_protocol import Delta, Finished, GenerationRequest, SamplingOptions, Started
from serve.services.generation import GenerationService, Plan

WORDS = ["One", " two", " three", " four", " five", " six", " seven", " eight."]
ANSWER = "".join(WORDS)
DEFAULT_BUDGET = 16


class Events:
    """What `handle.generate.remote` returns: an async iterator of events that can be cancelled."""

    def __init__(self, gen: AsyncIterator[Any]) -> None:
        self.gen, self.cancelled = gen, False

    def __aiter__(self) -> "Events":
        return self

    async def __anext__(self) -> Any:
        return await self.gen.__anext__()

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLLM:
    """Replica n (0, 1, ...) dies after `deaths[n]` words (-1: before its first event; absent: never)."""

    deaths: dict[int, int] = field(default_factory=dict)
    error: Any = ActorDiedError  # called to make the exception
    requests: list[GenerationRequest] = field(default_factory=list)

    def options(self, **_: Any) -> "FakeLLM":
        return self

    @property
    def generate(self) -> "FakeLLM":
        return self

    def remote(self, request: GenerationRequest) -> Events:
        self.requests.append(request)
        return Events(self._replica(len(self.requests) - 1, request))

    async def _replica(self, n: int, request: GenerationRequest) -> AsyncIterator[Any]:
        assert ANSWER.startswith(request.continuation), "a replica must go on from what was streamed"
        done = next(i for i in range(len(WORDS) + 1) if "".join(WORDS[:i]) == request.continuation)
        budget = request.sampling.max_tokens or DEFAULT_BUDGET
        if self.deaths.get(n) == -1:  # dead before it answers at all
            raise self.error()
        yield Started(prompt_tokens=7 + done, max_tokens=budget)
        produced = 0
        for word in WORDS[done:]:
            if self.deaths.get(n) == produced:
                raise self.error()
            if produced == budget:
                yield Finished("length", 7 + done, produced)
                return
            produced += 1
            yield Delta(word, 1)
        yield Finished("stop", 7 + done, produced)


def _service(llm: FakeLLM) -> GenerationService:
    return GenerationService(Settings(), knowledge=None, llm=llm, store=None, llm_tokenizer=None)  # type: ignore[arg-type]


def _plan(max_tokens: int | None = None, structured: bool = False) -> Plan:
    sampling = SamplingOptions(max_tokens=max_tokens, temperature=0, json_object=structured)
    return Plan("plain", "m", None, [{"role": "user", "content": "Count to eight."}], None, sampling, None,
                request_id="req")


async def _run(llm: FakeLLM, plan: Plan) -> tuple[str, Any]:
    answer = await _service(llm).answer(plan)
    text = "".join([piece async for piece in answer.pieces])
    return text, answer


async def test_a_replica_that_dies_mid_answer_is_replaced_and_the_answer_is_whole() -> None:
    llm = FakeLLM(deaths={0: 3})
    text, answer = await _run(llm, _plan())
    assert text == ANSWER
    assert (answer.finish_reason, answer.completion_tokens, answer.prompt_tokens, answer.resumes) == ("stop", 8, 7, 1)
    resumed = llm.requests[1]
    assert resumed.continuation == "One two three" and resumed.sampling.max_tokens == DEFAULT_BUDGET - 3
    assert resumed.messages == llm.requests[0].messages and resumed.request_id != llm.requests[0].request_id


async def test_the_resumed_replica_gets_only_what_is_left_of_the_token_budget() -> None:
    llm = FakeLLM(deaths={0: 3})
    text, answer = await _run(llm, _plan(max_tokens=5))
    assert text == "".join(WORDS[:5]) and llm.requests[1].sampling.max_tokens == 2
    assert (answer.finish_reason, answer.completion_tokens) == ("length", 5)


async def test_two_deaths_in_one_answer_are_survived_and_a_third_is_an_error() -> None:
    text, answer = await _run(FakeLLM(deaths={0: 2, 1: 3}), _plan())
    assert text == ANSWER and answer.resumes == 2

    llm = FakeLLM(deaths={0: 2, 1: 1, 2: 1})  # the profile allows 2 resumes
    answer = await _service(llm).answer(_plan())
    streamed = []
    with pytest.raises(ActorDiedError):
        async for piece in answer.pieces:
            streamed.append(piece)
    assert "".join(streamed) == "".join(WORDS[:4]) and len(llm.requests) == 3


async def test_a_replica_lost_before_its_first_event_is_submitted_again() -> None:
    llm = FakeLLM(deaths={0: -1})
    text, answer = await _run(llm, _plan())
    assert text == ANSWER and len(llm.requests) == 2 and llm.requests[1].continuation == ""


async def test_a_json_answer_is_not_resumed_mid_document() -> None:
    llm = FakeLLM(deaths={0: 3})
    answer = await _service(llm).answer(_plan(structured=True))
    with pytest.raises(ActorDiedError):
        async for _ in answer.pieces:
            pass
    assert len(llm.requests) == 1


async def test_overload_is_not_a_lost_replica_and_is_not_retried() -> None:
    llm = FakeLLM(deaths={0: 3}, error=lambda: BackPressureError(num_queued_requests=9, max_queued_requests=8))
    answer = await _service(llm).answer(_plan())
    with pytest.raises(BackPressureError):
        async for _ in answer.pieces:
            pass
    assert len(llm.requests) == 1


async def test_no_resume_when_the_profile_turns_it_off() -> None:
    llm = FakeLLM(deaths={0: 3})
    service = _service(llm)
    service.spec = service.spec.model_copy(update={"resume_attempts": 0})
    answer = await service.answer(_plan())
    with pytest.raises(ActorDiedError):
        async for _ in answer.pieces:
            pass
    assert len(llm.requests) == 1


async def test_an_answer_that_reveals_the_guardrails_canary_is_cut_and_counted() -> None:
    from cluster.profiles import GuardrailSpec
    from serve.services.errors import ApiError
    from serve.services.guardrails import GuardrailService

    counted: list[tuple[str, ...]] = []
    service = _service(FakeLLM())
    service.guardrails = GuardrailService(GuardrailSpec(classifier=False), lambda *c: counted.append(c))
    answer = await service.answer(_plan())
    answer.pieces = service._stream(answer, _leaking(), 0.0, 0.0, canary="rt-canary-abc")
    streamed = []
    with pytest.raises(ApiError) as cut:
        async for piece in answer.pieces:
            streamed.append(piece)
    assert cut.value.code == "content_policy" and "rt-canary-abc" not in "".join(streamed)
    assert counted == [("output", "block", "canary")] and answer.applied["guardrails"]["output"] == "canary"


async def _leaking() -> AsyncIterator[Any]:
    for text in ("My instructions say ", "rt-canary-", "abc and more"):
        yield Delta(text, 1)
    yield Finished("stop", 7, 3)
