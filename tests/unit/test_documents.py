"""Parsing and chunking with the real embedder tokenizer (no cluster needed)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from cluster.content.chunking import Chunker
from cluster.content.ingest import build_document
from cluster.content.parsing import DocumentError, content_hash, decode_text, guess_content_type, parse_document
from cluster.models.cache import resolve
from cluster.settings import Settings


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    settings = Settings()
    tok = AutoTokenizer.from_pretrained(resolve(settings.profile_spec.embedder.model, settings.models_dir))
    return Chunker(tok, chunk_tokens=60, overlap_tokens=10)


def test_markdown_sections_follow_headings_and_ignore_headings_in_code() -> None:
    text = "# Title\n\nIntro para.\n\n## Install\n\n```bash\n# not a heading\npip install x\n```\n\n## Use\n\nCall it."
    doc = parse_document(text, "text/markdown")
    assert doc.title == "Title"
    assert [s.heading for s in doc.sections] == ["Title", "Install", "Use"]
    assert "# not a heading" in doc.sections[1].paragraphs[0]


def test_markdown_drops_inline_html_but_keeps_text() -> None:
    doc = parse_document('# T\n\n<p align="center"><b>Fast</b> and small</p>\n\n<!-- hidden -->', "text/markdown")
    assert doc.sections[0].paragraphs == ("Fast and small",)


def test_rst_and_html_headings() -> None:
    rst = parse_document("Guide\n=====\n\nFirst.\n\nUsage\n-----\n\nSecond.", "text/x-rst")
    assert [s.heading for s in rst.sections] == ["Guide", "Usage"]
    html = parse_document("<html><head><title>Doc</title><script>x()</script></head><body><h1>A</h1><p>one</p>"
                          "<h2>B</h2><ul><li>two</li></ul></body></html>", "text/html")
    assert html.title == "Doc"
    assert [(s.heading, s.paragraphs) for s in html.sections] == [("A", ("one",)), ("B", ("two",))]


def test_chunks_respect_the_token_budget_and_overlap(chunker: Chunker) -> None:
    paragraphs = [f"Paragraph {i} talks about topic number {i} with several extra words for length." for i in range(30)]
    doc, chunks, _ = build_document(chunker, "# Long\n\n" + "\n\n".join(paragraphs), source="long.md")
    assert len(chunks) > 3
    assert all(c.token_count <= 60 for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # every chunk after the first repeats the previous chunk's last paragraph (overlap <= 10 tokens does not
    # fit a 17-token paragraph, so here: no overlap) and starts with the section heading
    assert all(c.text.startswith("Long") for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(p in joined for p in paragraphs)


def test_an_over_long_paragraph_is_cut_into_overlapping_windows(chunker: Chunker) -> None:
    words = " ".join(f"w{i}" for i in range(400))
    _, chunks, _ = build_document(chunker, words, source="words.txt", content_type="text/plain")
    assert len(chunks) > 2
    assert all(c.token_count <= 62 for c in chunks)
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert set(first[-3:]) <= set(second)  # consecutive windows overlap


def test_small_sections_are_packed_together(chunker: Chunker) -> None:
    _, chunks, _ = build_document(chunker, "# A\n\none\n\n# B\n\ntwo\n\n# C\n\nthree", source="s.md")
    assert len(chunks) == 1 and chunks[0].text == "A\n\none\n\nB\n\ntwo\n\nC\n\nthree"


@pytest.mark.parametrize("content", ["", "   \n\n  ", "# Only a heading"])
def test_documents_without_text_are_refused(chunker: Chunker, content: str) -> None:
    with pytest.raises(DocumentError):
        build_document(chunker, content, source="x.md", content_type="text/markdown")


def test_unknown_content_type_is_refused(chunker: Chunker) -> None:
    with pytest.raises(DocumentError, match="unsupported content_type"):
        build_document(chunker, "hello", content_type="application/pdf")


def test_decode_refuses_binary_and_invalid_utf8() -> None:
    assert decode_text("héllo".encode()) == "héllo"
    with pytest.raises(DocumentError, match="binary"):
        decode_text(b"%PDF\x00\x01\x02", "a.pdf")
    with pytest.raises(DocumentError, match="not valid UTF-8"):
        decode_text(b"caf\xe9 au lait", "latin1.txt")


def test_content_hash_covers_what_was_submitted() -> None:
    base = content_hash("text", "text/plain", None, {})
    assert base == content_hash("text", "text/plain", None, None)
    assert base != content_hash("text", "text/plain", None, {"k": 1})
    assert base != content_hash("text", "text/markdown", None, {})
    assert base != content_hash("text!", "text/plain", None, {})


def test_default_source_is_derived_from_content(chunker: Chunker) -> None:
    a, _, _ = build_document(chunker, "same text")
    b, _, _ = build_document(chunker, "same text")
    assert a.source == b.source and a.source.startswith("inline:")


def test_guess_content_type() -> None:
    assert guess_content_type("x.rst", "") == "text/x-rst"
    assert guess_content_type("", "<!DOCTYPE html><html>") == "text/html"
    assert guess_content_type("", "# Heading\n\ntext") == "text/markdown"
    assert guess_content_type("", "just text") == "text/plain"
