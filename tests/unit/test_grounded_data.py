"""The grounded-answering adapter's training data: the RAG route's own prompt, the answer in the cited source's
words, a marker that points at that source, and not-found answers where no source answers."""

from __future__ import annotations

import json
import re

import pytest

from cluster.content.overlap import content_words
from cluster.training import datasets
from cluster.training.grounded import Passage, synthesize
from serve.services import prompts

DOCS = {
    "cache.md": ["The lru_cache decorator keeps the results of recent calls. It is bounded by maxsize, which "
                 "defaults to 128 entries in the standard library.",
                 "Kubernetes operators deploy the cache as a sidecar container next to every application pod."],
    "http.md": ["HTTPX is a fully featured HTTP client for Python that supports both synchronous and "
                "asynchronous requests.", "Connection pooling keeps sockets open between requests to the same "
                "host, which lowers the latency of every request after the first one."],
    "vector.md": ["Pgvector adds vector similarity search to Postgres with exact and approximate nearest "
                  "neighbour indexes.", "An HNSW index builds a multilayer graph; its build parameters trade "
                  "recall against index build time and memory use."],
    "train.md": ["Parameter efficient fine tuning trains small adapter matrices while the base model stays "
                 "frozen, so each checkpoint is only a few megabytes.", "Gradient checkpointing recomputes "
                 "activations during the backward pass and saves a large share of the training memory."],
    "cli.md": ["Typer builds command line applications from Python functions and their type hints, with help "
               "text and shell completion generated for free.", "Subcommands are plain functions registered "
               "on an application object, each one with its own options and arguments."],
}
POOL = [Passage(name.removesuffix(".md"), text, name) for name, texts in DOCS.items() for text in texts]
SOURCE = re.compile(r"\[Source (\d+): [^\]]*\]\n(.*?)(?=\n\n\[Source |\n\nQuestion: )", re.S)


def _sources(user: str) -> dict[int, str]:
    return {int(n): text for n, text in SOURCE.findall(user)}


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    return synthesize(POOL, 200, seed=3)


def test_examples_are_the_rag_routes_prompt_and_pass_dataset_validation(examples: list[dict]) -> None:
    assert len(examples) >= 10
    for e in examples:
        system, user, answer = e["messages"]
        assert system == {"role": "system", "content": prompts.RAG_SYSTEM}
        assert user["role"] == "user" and user["content"].startswith("Sources:\n\n[Source 1: ")
        assert answer["role"] == "assistant" and len(_sources(user["content"])) == 3
    parsed = datasets.parse("".join(json.dumps(e) + "\n" for e in examples).encode(), None, name="grounded")
    assert len(parsed) == len(examples)


def test_answers_quote_the_source_they_cite(examples: list[dict]) -> None:
    answered = [e for e in examples if e["messages"][2]["content"] != prompts.NOT_FOUND]
    assert answered
    for e in answered:
        user, answer = e["messages"][1]["content"], e["messages"][2]["content"]
        m = re.fullmatch(r"(.+) \[Source (\d)\]", answer)
        assert m, answer
        sentence, number = m.group(1), int(m.group(2))
        sources = _sources(user)
        assert " ".join(sentence.split()) in " ".join(sources[number].split())
        # the distractors come from other documents: none of them holds the answer
        assert all(" ".join(sentence.split()) not in " ".join(t.split()) for n, t in sources.items() if n != number)
    # the right source is not always first
    assert len({re.search(r"\[Source (\d)\]$", e["messages"][2]["content"]).group(1) for e in answered}) == 3


def test_about_a_fifth_say_not_found_and_then_no_source_shares_the_questions_words(examples: list[dict]) -> None:
    missing = [e for e in examples if e["messages"][2]["content"] == prompts.NOT_FOUND]
    assert 0.08 <= len(missing) / len(examples) <= 0.35
    for e in missing:
        user = e["messages"][1]["content"]
        question = user.rsplit("Question: ", 1)[1]
        assert not any(content_words(question) & content_words(t) for t in _sources(user).values())


def test_questions_name_what_the_answer_is_about(examples: list[dict]) -> None:
    questions = [e["messages"][1]["content"].rsplit("Question: ", 1)[1] for e in examples]
    assert any(q.startswith(("What is HTTPX", "What does HTTPX", "Describe HTTPX")) for q in questions)
    assert any("lru_cache" in q for q in questions)  # an identifier asks what it does
    for e, q in zip(examples, questions):
        if e["messages"][2]["content"] != prompts.NOT_FOUND:
            assert content_words(q) - {"docs", "tell", "said", "know", "describe"} & \
                content_words(e["messages"][2]["content"]), q


def test_synthesis_is_deterministic() -> None:
    assert synthesize(POOL, 50, seed=3) == synthesize(POOL, 50, seed=3)
    assert synthesize(POOL, 50, seed=3) != synthesize(POOL, 50, seed=4)
