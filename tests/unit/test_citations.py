"""Citation markers and quotes for streamed answers (no cluster: the tracker is pure text)."""

from __future__ import annotations

import random

from serve.services.citations import CitationTracker, SourceText

SOURCES = [
    SourceText(1, "pgvector is an open-source extension for PostgreSQL that adds vector similarity search. "
                  "It supports exact and approximate nearest neighbor search with HNSW and IVFFlat indexes."),
    SourceText(2, "HTTPX is a fully featured HTTP client for Python 3, with sync and async APIs."),
]
ANSWER = ("pgvector adds vector similarity search to PostgreSQL. It supports HNSW and IVFFlat indexes.\n"
          "Cats are lovely animals. HTTPX is a fully featured HTTP client [Source 2] for Python.")


def _run(answer: str, pieces: list[str]) -> tuple[str, CitationTracker]:
    tracker = CitationTracker(SOURCES)
    out = "".join(tracker.feed(p) for p in pieces) + tracker.finish()
    return out, tracker


def test_sentences_from_a_source_get_its_marker_and_others_none() -> None:
    out, tracker = _run(ANSWER, [ANSWER])
    assert out == ("pgvector adds vector similarity search to PostgreSQL. [Source 1] It supports HNSW and IVFFlat "
                   "indexes. [Source 1]\nCats are lovely animals. HTTPX is a fully featured HTTP client [Source 2] "
                   "for Python.")
    assert sorted(tracker.cited) == [1, 2]
    for number, cited in tracker.cited.items():
        assert cited.quote and cited.quote in SOURCES[number - 1].text


def test_streaming_in_any_split_gives_the_same_text() -> None:
    whole, _ = _run(ANSWER, [ANSWER])
    rng = random.Random(7)
    for _ in range(20):
        pieces, i = [], 0
        while i < len(ANSWER):
            n = rng.randint(1, 6)
            pieces.append(ANSWER[i:i + n])
            i += n
        assert _run(ANSWER, pieces)[0] == whole


def test_sentences_with_inline_code_are_cited() -> None:
    sources = [SourceText(1, "``tqdm`` can easily support callbacks/hooks and manual updates."),
               SourceText(2, "Use `httpx.Client()` to reuse connections across many requests to one host.")]
    answer = ("``tqdm`` can easily support callbacks/hooks and manual updates [Source 1]. Use `httpx.Client()` to "
              "reuse connections across many requests.")
    tracker = CitationTracker(sources)
    out = tracker.feed(answer) + tracker.finish()
    assert set(tracker.cited) == {1, 2} and out.endswith("many requests. [Source 2]")


def test_markers_naming_no_source_and_code_are_not_cited() -> None:
    answer = ("Use it like this [Source 9].\n```python\nHTTPX is a fully featured HTTP client for Python 3\n```\n"
              "Done.")
    out, tracker = _run(answer, [answer])
    assert tracker.cited == {}
    assert out == answer
