"""Parsing and chunking take time linear in the document: hostile input at the 2 MB limit is parsed (or refused)
in bounded time. Parsing holds the GIL, so a super-linear path lets one request freeze an ingress replica."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cluster.content.chunking import Chunker
from cluster.content.ingest import build_document
from cluster.content.parsing import CONTENT_TYPES, DocumentError, parse_document
from cluster.settings import Settings
from tests.support.hostile import WORST_CASES


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker.from_settings(Settings())


@pytest.mark.parametrize("name", WORST_CASES)
def test_worst_case_at_the_size_limit_is_bounded(chunker: Chunker, name: str) -> None:
    kind, text = WORST_CASES[name]
    assert len(text.encode()) <= Settings().ingest.max_document_bytes
    started = time.perf_counter()
    try:
        build_document(chunker, text, content_type=kind, max_chunks=Settings().ingest.max_chunks_per_document)
    except DocumentError:
        pass  # refused with a reason is as good as parsed: what matters is that it ends
    assert time.perf_counter() - started < 5.0, name


def _parse_seconds(text: str, kind: str) -> float:
    started = time.perf_counter()
    try:
        parse_document(text, kind)
    except DocumentError:
        pass
    return time.perf_counter() - started


# Documents as lines, each a marker that a parser treats specially at the start of a line, then runs of pieces
# its patterns care about: long runs are where backtracking hides, so the scaled document lengthens the runs.
MARKERS = ["", "# ", "## ", "#", "```", "~~~", "<!--", "<p>", "<h1>", "<pre>", "===", "    ", "- ", "(", "Title"]
ATOMS = ["#", " ", "a", "b", "<!--", "-->", "<a", ">", "</", "```", "=", "-", "(", ")", "PAM", "\t", "&lt;", "\n"]
Runs = list[tuple[str, list[tuple[str, int]]]]
runs = st.lists(st.tuples(st.sampled_from(MARKERS),
                          st.lists(st.tuples(st.sampled_from(ATOMS), st.integers(1, 300)), min_size=1, max_size=6)),
                min_size=1, max_size=8)


def _document(lines: Runs, scale: int = 1) -> str:
    return "\n".join(marker + "".join(atom * (n * scale) for atom, n in pieces) for marker, pieces in lines)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(runs, st.sampled_from(CONTENT_TYPES))
def test_any_document_parses_or_is_refused_in_linear_time(runs: Runs, kind: str) -> None:
    """Parsed or refused with DocumentError, nothing else; and every run 8x longer takes about 8x the time (a
    quadratic path takes 64x, the old heading regex 512x). Times under 20 ms are noise, hence the floor."""
    small = _parse_seconds(_document(runs), kind)
    large = _parse_seconds(_document(runs, 8), kind)
    assert large <= 20 * max(small, 0.02), (small, large)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(runs, st.sampled_from(CONTENT_TYPES))
def test_parsed_text_comes_from_the_document(runs: Runs, kind: str) -> None:
    """Whatever the markup, parsing only drops text: the letters and digits of the sections, in order, are a
    subsequence of the input's (markup removed between two words may join them, so words are not compared)."""
    text = _document(runs)
    try:
        parsed = parse_document(text, kind)
    except DocumentError:
        return
    source = iter(c for c in text if c.isalnum())
    assert all(c in source for c in parsed.text if c.isalnum())  # `in` on an iterator consumes it: subsequence
