"""The semantic cache through the HTTP API of the live cluster: miss then hit (streamed too, with citations), a
paraphrase hits and a negation misses, bypass by header and flag, sampled answers, invalidation when a source
document changes, and a new adapter version never served an old version's answer."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.settings import Settings
from cluster.store.adapters import AdapterStore
from tests.support.helpers import wait_for

QUESTION = "What does the Quillfeather relay do?"
DOC = ("The Quillfeather relay forwards telemetry from edge sensors to the central archive every ninety seconds. "
       "It compresses each batch and retries a failed upload three times.")


def _ask(api: httpx.Client, content: str, headers: dict[str, str] | None = None, **extra: Any) -> dict:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": content}],
            "max_tokens": 48, "temperature": 0, **extra}
    response = api.post("/v1/chat/completions", json=body, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


def _entries(api: httpx.Client) -> int:
    return api.get("/v1/cache").json()["entries"]


def _stored(api: httpx.Client, before: int) -> None:
    """Misses are stored in the background once answered: wait until this one is."""
    wait_for(lambda: _entries(api) > before, 30, "the answer to be stored in the cache")


@pytest.fixture(scope="module")
def relay_doc(api: httpx.Client) -> str:
    source = f"cache-{uuid.uuid4().hex[:6]}.md"
    response = api.post("/v1/documents", json={"content": DOC, "source": source, "title": "Quillfeather relay"})
    assert response.status_code == 200 and response.json()["data"][0]["status"] == "created", response.text
    return source


def test_a_repeated_question_is_a_hit_with_the_same_answer_and_citations(api: httpx.Client, relay_doc: str) -> None:
    before = _entries(api)
    first = _ask(api, QUESTION)
    assert first["cache"]["status"] == "miss"
    _stored(api, before)
    again = _ask(api, QUESTION)
    assert again["cache"]["status"] == "hit" and again["cache"]["similarity"] > 0.999
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    assert again["citations"] == first["citations"] and again["usage"] == first["usage"]
    assert again["timings"]["generate_ms"] == 0 and again["timings"]["cache_ms"] > 0

    paraphrase = _ask(api, "What does the Quillfeather relay do exactly?")
    assert paraphrase["cache"]["status"] == "hit"
    negated = _ask(api, "What does the Quillfeather relay not do?")
    assert negated["cache"]["status"] == "miss" and negated["cache"]["reason"] == "guard: negation"

    # a hit streams like any answer, and its final event carries the citations and the cache's verdict
    with api.stream("POST", "/v1/chat/completions", json={
            "model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 48,
            "temperature": 0, "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert len([e for e in events if e["choices"]]) > 2  # in pieces, not one blob
    assert text == first["choices"][0]["message"]["content"]
    assert events[-1]["cache"]["status"] == "hit" and events[-1]["citations"] == first["citations"]


def test_the_cache_is_bypassed_by_header_flag_and_sampling(api: httpx.Client, relay_doc: str) -> None:
    bypass = _ask(api, QUESTION, headers={"Cache-Control": "no-cache"})
    assert bypass["cache"] == {"status": "bypass", "similarity": None, "reason": "requested"}
    assert _ask(api, QUESTION, cache=False)["cache"]["status"] == "bypass"
    sampled = _ask(api, QUESTION, temperature=0.8)
    assert sampled["cache"] == {"status": "bypass", "similarity": None, "reason": "sampled"}
    before = _entries(api)
    asked = _ask(api, "How often does the Quillfeather relay upload?", temperature=0.8, cache=True)
    assert asked["cache"]["status"] == "miss"
    _stored(api, before)
    assert _ask(api, "How often does the Quillfeather relay upload?", temperature=0.8, cache=True)["cache"][
        "status"] == "hit"
    # other sampling is another scope
    assert _ask(api, "How often does the Quillfeather relay upload?", temperature=0.9, cache=True)["cache"][
        "status"] == "miss"


def test_changing_a_source_document_invalidates_its_answers(api: httpx.Client, relay_doc: str) -> None:
    question = "How many times does the Quillfeather relay retry a failed upload?"
    before = _entries(api)
    assert _ask(api, question)["cache"]["status"] == "miss"
    _stored(api, before)
    assert _ask(api, question)["cache"]["status"] == "hit"
    invalidations = api.get("/v1/cache").json()["invalidations"]
    response = api.post("/v1/documents", json={"content": DOC.replace("three times", "five times"),
                                               "source": relay_doc, "title": "Quillfeather relay"})
    assert response.status_code == 200 and response.json()["updated"] == 1, response.text
    now = api.get("/v1/cache").json()["invalidations"]
    assert now > invalidations  # at once: the write's own transaction
    assert _ask(api, question)["cache"]["status"] == "miss"
    assert f"ragtune_cache_invalidations_total {now}" in api.get("/metrics").text


def test_a_new_adapter_version_never_gets_the_old_versions_answer(api: httpx.Client, live: Settings,
                                                                  store: AdapterStore) -> None:
    from cluster.models.cache import resolve
    from cluster.models.random_adapters import random_adapters

    def publish(seed: int) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            [path] = random_adapters(resolve(live.llm_spec.model, live.models_dir), Path(tmp), seeds=[seed])
            return store.put("cachetest", path, {"base_model": live.llm_spec.served_name}).model_id

    first = publish(21)
    ask = {"model": "cachetest", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8,
           "temperature": 0}
    before = _entries(api)
    assert api.post("/v1/chat/completions", json=ask).json()["cache"]["status"] == "miss"
    _stored(api, before)
    assert api.post("/v1/chat/completions", json=ask).json()["cache"]["status"] == "hit"
    second = publish(22)
    assert second != first
    assert api.post("/v1/chat/completions", json=ask).json()["cache"]["status"] == "miss"
    assert api.delete("/v1/models/cachetest").status_code == 200
