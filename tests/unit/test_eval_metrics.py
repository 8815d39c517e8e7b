"""Every evaluation metric on hand-made answers, including the ones that must come out low."""

from __future__ import annotations

import pytest

from cluster.evaluation import metrics

CHUNK = ("pgvector adds vector similarity search to Postgres. It supports exact and approximate nearest neighbor "
         "search with HNSW and IVFFlat indexes, and L2, inner product and cosine distance.")


def _citation(n: int, quote: str, chunk: str = CHUNK) -> dict:
    return {"source_number": n, "quote": quote, "chunk_text": chunk}


def test_qa_metrics_reward_the_answer_and_not_its_surroundings() -> None:
    assert metrics.quality("qa", "The Postgres extension.", "postgres extension") == {
        "exact_match": 1.0, "token_f1": 1.0, "contains": 1.0}
    partial = metrics.quality("qa", "It is an extension for Postgres databases [Source 1].", "Postgres extension")
    assert partial["exact_match"] == 0.0 and partial["contains"] == 0.0 and 0.3 < partial["token_f1"] < 0.8
    assert metrics.quality("qa", "", "Postgres extension") == {"exact_match": 0.0, "token_f1": 0.0, "contains": 0.0}
    assert metrics.quality("qa", "anything", None) == {}


def test_an_answer_that_copies_the_whole_source_scores_low_on_f1() -> None:
    scores = metrics.quality("qa", CHUNK, "vector similarity search")
    assert scores["contains"] == 1.0 and scores["exact_match"] == 0.0 and scores["token_f1"] < 0.2


def test_json_metrics_separate_validity_schema_and_values() -> None:
    expected = {"name": "Ada Byrne", "age": 36, "city": "Cork"}
    assert metrics.quality("json", '```json\n{"name": "Ada Byrne", "age": 36, "city": "Cork"}\n```', expected) == {
        "valid_json": 1.0, "schema_valid": 1.0, "exact_fields": 1.0}
    wrong_type = metrics.json_scores('{"name": "Ada Byrne", "age": "36", "city": "Cork"}', expected)
    assert wrong_type["schema_valid"] == 0.0 and wrong_type["exact_fields"] == pytest.approx(2 / 3)
    extra_key = metrics.json_scores('{"name": "Ada Byrne", "age": 36, "city": "Cork", "job": "x"}', expected)
    assert extra_key["schema_valid"] == 0.0 and extra_key["exact_fields"] == 1.0
    assert metrics.json_scores("Name: Ada, age 36", expected) == {"valid_json": 0.0, "schema_valid": 0.0,
                                                                  "exact_fields": 0.0}
    assert metrics.json_scores("[1, 2]", expected)["valid_json"] == 0.0  # JSON, but not an object
    assert metrics.json_scores('{"flag": 1}', {"flag": True})["schema_valid"] == 0.0  # 1 is not a boolean


def test_exact_is_string_equality_after_trimming() -> None:
    assert metrics.quality("exact", "  42\n", "42") == {"exact": 1.0}
    assert metrics.quality("exact", "42.", "42") == {"exact": 0.0}


def test_retrieval_recall_and_mrr() -> None:
    assert metrics.retrieval(["a.md", "b.md"], ["x.md", "a.md", "y.md", "b.md"], k=3) == {
        "recall_at_3": 0.5, "mrr": 0.5}
    assert metrics.retrieval(["a.md"], ["x.md", "y.md"], k=5) == {"recall_at_5": 0.0, "mrr": 0.0}
    assert metrics.retrieval([], ["x.md"], k=5) == {}


@pytest.mark.parametrize("answer,terms,named", [
    ("Use re.findall to get every match [Source 1].", ["findall"], 1.0),
    ("findall() returns a list.", ["findall"], 1.0),
    ("The --no-warn option silences it.", ["--no-warn"], 1.0),
    ("The --no-warn-search option does something else.", ["--no-warn"], 0.0),  # another option
    ("It returns all matches in a list.", ["findall"], 0.0),
    ("refindall is not it", ["findall"], 0.0),
    ("LS lists files", ["ls"], 1.0),
])
def test_key_terms_must_be_named_as_words(answer: str, terms: list[str], named: float) -> None:
    assert metrics.names_key_term(answer, terms) == named


def test_abstention_is_right_only_on_unanswerable_cases() -> None:
    declined = "I could not find information about that in the knowledge base."
    assert metrics.abstention(declined, unanswerable=True) == {"correct_abstention": 1.0}
    assert metrics.abstention("It was Uruguay.", unanswerable=True) == {"correct_abstention": 0.0}
    assert metrics.abstention(declined, unanswerable=False) == {"false_abstention": 1.0}
    assert metrics.abstention("pgvector is an extension.", unanswerable=False) == {"false_abstention": 0.0}


def test_grounded_answers_score_high() -> None:
    answer = ("pgvector adds vector similarity search to Postgres [Source 1]. It supports HNSW and IVFFlat "
              "indexes [Source 1].")
    g = metrics.grounding(answer, [_citation(1, "vector similarity search to Postgres")])
    assert g == {"has_citation": 1.0, "citation_precision": 1.0, "attributable": 1.0}


@pytest.mark.parametrize(("answer", "citations", "expected"), [
    # a marker naming a source that was never sent (no citation resolves it)
    ("pgvector adds vector similarity search to Postgres [Source 3].", [],
     {"has_citation": 1.0, "citation_precision": 0.0, "attributable": 0.0}),
    # a quote that is not text of the cited chunk
    ("pgvector adds vector similarity search to Postgres [Source 1].", [_citation(1, "made-up quote")],
     {"has_citation": 1.0, "citation_precision": 0.0, "attributable": 1.0}),
    # a cited chunk that does not support the sentence citing it
    ("The Eiffel Tower is in Paris and opened in 1889 [Source 1].", [_citation(1, "pgvector adds")],
     {"has_citation": 1.0, "citation_precision": 0.0, "attributable": 0.0}),
    # no citation at all
    ("pgvector adds vector similarity search to Postgres.", [],
     {"has_citation": 0.0, "citation_precision": None, "attributable": 0.0}),
    # an empty answer is grounded in nothing
    ("", [], {"has_citation": 0.0, "citation_precision": None, "attributable": 0.0}),
])
def test_ungrounded_answers_score_low(answer: str, citations: list[dict], expected: dict) -> None:
    assert metrics.grounding(answer, citations) == expected


def test_half_grounded_answers_score_half() -> None:
    answer = ("pgvector adds vector similarity search to Postgres [Source 1]. The Eiffel Tower opened in Paris "
              "in 1889 [Source 2].")
    g = metrics.grounding(answer, [_citation(1, "vector similarity search"), _citation(2, "pgvector adds")])
    assert g == {"has_citation": 1.0, "citation_precision": 0.5, "attributable": 0.5}
