"""The semantic cache's meaning guard: each class of difference refuses, phrasings of one question pass, and the
verdict does not depend on which question came first."""

from __future__ import annotations

import pytest

from serve.services.cache_guard import compare

DIFFERENT = [
    ("What is a LoRA adapter?", "What is not a LoRA adapter?", "negation"),
    ("Why does the job fail?", "Why doesn't the job fail?", "negation"),
    ("Can I run the eval with the judge?", "Can I run the eval without the judge?", "antonym"),
    ("How do I copy files from the head?", "How do I copy files into the head?", "relation"),
    ("What happens after 3 failed attempts?", "What happens after 5 failed attempts?", "number"),
    ("Can I run two jobs at once?", "Can I run 4 jobs at once?", "number"),
    ("Is port 8000 the API?", "Is port 8265 the API?", "number"),
    ("Are all replicas busy?", "Are some replicas busy?", "quantifier"),
    ("Is vLLM faster than llama.cpp?", "Is vLLM slower than llama.cpp?", "comparison"),
    ("What is the maximum batch size?", "What is the minimum batch size?", "comparison"),
    ("How do I enable caching?", "How do I disable caching?", "antonym"),
    ("How do I install ragtune?", "How do I uninstall ragtune?", "antonym"),
    ("How do I upload a model?", "How do I download a model?", "antonym"),
    ("How does Ray schedule replicas?", "How does Kubernetes schedule replicas?", "entity"),
    ("What does top_k do?", "What does top_n do?", "identifier"),
    ("What does `ragtune up` do?", "What does `ragtune down` do?", "identifier"),
    ("What does RAGTUNE_PORT change?", "What does RAGTUNE_HOST change?", "identifier"),
    ("When was the adapter trained?", "Where was the adapter trained?", "question"),
    ("How do I migrate from Postgres to MySQL?", "How do I migrate from MySQL to Postgres?", "order"),
    ("How do I convert a list to a dict?", "How do I convert a dict to a list?", "order"),
    ("Is a square a rectangle?", "Is a rectangle a square?", "order"),
    ("How do I install numpy?", "How do I install pandas?", "wording"),
    ("What is the chunk overlap?", "What is the chunk size?", "wording"),
]

SAME = [
    ("How do I reset my password?", "What is the way to reset my password?"),
    ("What port does the dashboard use?", "Which port does the dashboard use?"),
    ("Can I run ragtune on a CPU?", "Is it possible to run ragtune on a CPU?"),
    ("How do I delete a document?", "How can I remove a document?"),
    ("How do I enable the semantic cache?", "How do I turn on the semantic cache?"),
    ("What is vLLM?", "what is vllm?"),
    ("How do I merge two dictionaries?", "How can I merge 2 dictionaries?"),
    ("How do I list all documents?", "How can I list every document?"),
    ("How do I check the vLLM version?", "How do I check the version of vLLM?"),
    ("How do I read a CSV file with pandas?", "How can I read a CSV file using pandas?"),
    ("Explain how chunking works", "How does chunking work?"),
]


@pytest.mark.parametrize(("a", "b", "kind"), DIFFERENT)
def test_each_class_of_difference_is_refused_and_named(a: str, b: str, kind: str) -> None:
    for first, second in ((a, b), (b, a)):
        verdict = compare(first, second)
        assert not verdict.same and verdict.reason == kind, (first, second, verdict)


@pytest.mark.parametrize(("a", "b"), SAME)
def test_phrasings_of_one_question_agree_either_way(a: str, b: str) -> None:
    assert compare(a, b).same and compare(b, a).same, (compare(a, b), compare(b, a))


def test_a_question_agrees_with_itself() -> None:
    for a, b, _ in DIFFERENT:
        assert compare(a, a).same and compare(b, b).same
