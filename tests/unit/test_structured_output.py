"""`response_format` (OpenAI's json_object and json_schema) becomes vLLM's guided decoding: checked in the
schema layer, carried to the engine's SamplingParams, and compiled by xgrammar before a response starts."""

from __future__ import annotations

import json

import pytest

from cluster.profiles import PROFILES
from serve.schemas.generation import ChatCompletionRequest

QUESTION = [{"role": "user", "content": "Where is the Louvre?"}]


def test_response_format_becomes_guided_decoding_and_bad_schemas_are_refused() -> None:
    from pydantic import ValidationError

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = ChatCompletionRequest(model="m", messages=QUESTION, response_format={
        "type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}})
    options = body.to_sampling_options(16, PROFILES["cpu-dev"].sampling.plain)
    assert options.json_schema is not None and json.loads(options.json_schema) == schema
    assert ChatCompletionRequest(model="m", messages=QUESTION, response_format={"type": "json_object"}) \
        .to_sampling_options(16, PROFILES["cpu-dev"].sampling.plain).json_object is True
    plain = ChatCompletionRequest(model="m", messages=QUESTION, response_format={"type": "text"})
    assert plain.to_sampling_options(16, PROFILES["cpu-dev"].sampling.plain).json_schema is None
    for bad in ({"type": "json_schema"}, {"type": "json_object", "json_schema": {"name": "x"}},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}},
                {"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}}):
        with pytest.raises(ValidationError):
            ChatCompletionRequest(model="m", messages=QUESTION, response_format=bad)


def test_guided_decoding_reaches_vllm_and_compiles() -> None:
    from serve.deployments.llm import _unsupported_format
    from serve.deployments.llm_protocol import SamplingOptions

    params = SamplingOptions(json_schema=json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}}))
    built = params.to_sampling_params(16)
    assert built.structured_outputs.json is not None and built.structured_outputs.disable_any_whitespace
    assert _unsupported_format(built) is None
    assert SamplingOptions().to_sampling_params(16).structured_outputs is None
