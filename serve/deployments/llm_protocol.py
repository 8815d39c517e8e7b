"""The protocol between the ingress and the LLM deployment: what a request carries and the events that stream back.

Expected failures (prompt too long, adapter that will not load) come back as a `Rejected` event instead of
an exception, so the ingress can answer 4xx before it starts a streaming response.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int | None = None  # None: the profile's default, capped by what the context leaves
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    # Structured output (vLLM's guided decoding): a JSON schema (serialised), or any JSON object.
    json_schema: str | None = None
    json_object: bool = False
    # vLLM's repetition detection (min_pattern_size, max_pattern_size, min_count); None: off.
    repetition_stop: tuple[int, int, int] | None = None

    @property
    def structured(self) -> bool:
        """A JSON answer was asked for (response_format): guided decoding constrains it."""
        return self.json_schema is not None or self.json_object

    def to_sampling_params(self, max_tokens: int) -> Any:
        """vLLM's SamplingParams (field names are vLLM's), streaming deltas; `max_tokens` is the replica's budget.
        Structured output allows no free whitespace between tokens: a small model can otherwise loop on it."""
        from vllm import SamplingParams
        from vllm.sampling_params import RepetitionDetectionParams, RequestOutputKind, StructuredOutputsParams

        fields = {k: v for k, v in asdict(self).items() if k not in ("json_schema", "json_object", "repetition_stop")}
        if self.repetition_stop is not None:
            low, high, count = self.repetition_stop
            fields["repetition_detection"] = RepetitionDetectionParams(min_pattern_size=low, max_pattern_size=high,
                                                                       min_count=count)
        structured = None
        if self.json_schema is not None:
            structured = StructuredOutputsParams(json=self.json_schema, disable_any_whitespace=True)
        elif self.json_object:
            structured = StructuredOutputsParams(json_object=True, disable_any_whitespace=True)
        return SamplingParams(**{**fields, "max_tokens": max_tokens, "stop": list(self.stop) or None},
                              structured_outputs=structured, output_kind=RequestOutputKind.DELTA)


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    # Exactly one of: chat messages (rendered with the model's chat template) or a raw prompt.
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    adapter: str | None = None  # an adapter model id, `name@version`
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    # The answer so far, streamed by a replica that died: this replica generates what follows it (the ingress
    # resumes a cut answer; `sampling.max_tokens` is then what is left of the original budget).
    continuation: str = ""


@dataclass(frozen=True)
class Started:
    prompt_tokens: int
    max_tokens: int


@dataclass(frozen=True)
class Rejected:
    status: int
    message: str
    code: str
    param: str | None = None


@dataclass(frozen=True)
class Delta:
    text: str
    tokens: int = 0  # completion tokens this piece of text took (the ingress counts them to resume a cut answer)


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


GenerationEvent = Union[Started, Rejected, Delta, Finished]


def replica_lost(exc: BaseException) -> bool:
    """The replica generating a request is gone (actor killed, node lost, its vLLM engine dead): another replica
    can take the request over. Overload (Serve's BackPressureError) is not this: retrying it only adds load."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import ReplicaUnavailableError

    return isinstance(exc, (RayActorError, ReplicaUnavailableError)) or engine_dead(exc)


def engine_dead(exc: BaseException) -> bool:
    """vLLM's EngineDeadError, by name (also when Ray re-raises it in the caller): the LLM replica and the
    ingress both ask, and the ingress must not import vLLM to do so."""
    return any(cls.__name__ == "EngineDeadError" for cls in type(exc).__mro__)
