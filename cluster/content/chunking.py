"""Packing a parsed document's sections into chunks counted in the embedder's own tokens.

No chunk is longer than what the embedder sees. Boundaries follow the document: a chunk never spans two sections
unless both fit whole, and a section is cut at paragraph boundaries first and inside a paragraph only when one
paragraph alone is too long; a chunk that starts mid-section repeats the section's heading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cluster.content.parsing import DocumentError, ParsedDocument

if TYPE_CHECKING:
    from cluster.settings import Settings


COUNT_SLICE = 2048  # texts per tokenizer call


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    token_count: int


class Chunker:
    """Packs sections into chunks of at most `chunk_tokens` embedder tokens, with `overlap_tokens` carried over."""

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Chunker":
        """The profile's chunking, counted with its embedder's tokenizer (what the ingress and the job both use)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        from cluster.models.cache import resolve

        profile = settings.profile_spec
        tokenizer = AutoTokenizer.from_pretrained(resolve(profile.embedder.model, settings.models_dir))
        return cls(tokenizer, profile.chunking.chunk_tokens, profile.chunking.overlap_tokens)

    def __init__(self, tokenizer: Any, chunk_tokens: int, overlap_tokens: int) -> None:
        """`tokenizer`: a transformers fast tokenizer. Counting goes to its Rust backend directly: the Python
        wrapper converts every encoding to a dict (10 us each, holding the GIL), which was most of ingesting a
        2 MB document of short paragraphs; the backend's batch calls release the GIL."""
        from tokenizers import Tokenizer

        self.tokenizer: Tokenizer = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.tokenizer.no_truncation()  # we count long texts on purpose
        self.tokenizer.no_padding()
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count(self, texts: list[str]) -> list[int]:
        """Token counts, in slices: turning a batch's encodings into Python objects holds the GIL, and 666k of
        them at once (a 2 MB document of one-word paragraphs) stalled the replica's event loop for 1.2 s."""
        counts: list[int] = []
        for start in range(0, len(texts), COUNT_SLICE):
            encodings = self.tokenizer.encode_batch_fast(texts[start:start + COUNT_SLICE], add_special_tokens=False)
            counts.extend(len(e) for e in encodings)
        return counts

    def _windows(self, text: str, budget: int) -> list[tuple[str, int]]:
        """Cut one over-long paragraph at token boundaries, consecutive windows overlapping; (text, tokens)."""
        offsets = self.tokenizer.encode_batch([text], add_special_tokens=False)[0].offsets  # batch: frees the GIL
        step = max(1, budget - self.overlap_tokens)
        pieces = []
        for start in range(0, len(offsets), step):
            window = offsets[start:start + budget]
            pieces.append((text[window[0][0]:window[-1][1]].strip(), len(window)))
            if start + budget >= len(offsets):
                break
        return [(p, n) for p, n in pieces if p]

    def chunk(self, doc: ParsedDocument, max_chunks: int | None = None) -> list[Chunk]:
        """`max_chunks`: refuse (DocumentError) as soon as the token count shows the document cannot fit, before
        the packing work: a 2 MB document is checked in one batch call of the tokenizer."""
        counts = iter(self.count([s.heading for s in doc.sections] + [p for s in doc.sections for p in s.paragraphs]))
        head_counts = [next(counts) for _ in doc.sections]
        para_counts = [[next(counts) for _ in s.paragraphs] for s in doc.sections]
        total = sum(head_counts) + sum(map(sum, para_counts))
        if max_chunks is not None and total > max_chunks * self.chunk_tokens:
            raise DocumentError(f"document would make at least {-(-total // self.chunk_tokens)} chunks ({total} "
                                f"tokens), more than the limit of {max_chunks}")
        texts: list[str] = []
        current: list[str] = []
        current_tokens = 0

        def flush() -> None:
            nonlocal current, current_tokens
            if current:
                texts.append("\n\n".join(current))
            current, current_tokens = [], 0

        for section, head_count, para_tokens in zip(doc.sections, head_counts, para_counts):
            heading = section.heading
            head_tokens = head_count + 1 if heading else 0
            section_tokens = head_tokens + sum(para_tokens) + 2 * len(para_tokens)
            if current and current_tokens + section_tokens > self.chunk_tokens:
                flush()
            if current_tokens + section_tokens <= self.chunk_tokens:
                current.extend(([heading] if heading else []) + list(section.paragraphs))
                current_tokens += section_tokens
                continue
            # The section is too long for one chunk: paragraphs are packed, each chunk opens with the heading.
            budget = self.chunk_tokens - head_tokens
            prefix = [heading] if heading else []
            body: list[tuple[str, int]] = []
            body_tokens = 0
            for para, n in zip(section.paragraphs, para_tokens):
                for piece, n_piece in [(para, n)] if n <= budget else self._windows(para, budget):
                    if body and body_tokens + n_piece + 2 > budget:
                        texts.append("\n\n".join(prefix + [b for b, _ in body]))
                        tail, tail_tokens = body[-1]
                        body, body_tokens = ([body[-1]], tail_tokens + 2) if tail_tokens <= self.overlap_tokens \
                            else ([], 0)
                    body.append((piece, n_piece))
                    body_tokens += n_piece + 2
            if body:
                current, current_tokens = prefix + [b for b, _ in body], head_tokens + body_tokens
        flush()
        counts = self.count(texts)
        return [Chunk(ordinal=i, text=t, token_count=n) for i, (t, n) in enumerate(zip(texts, counts))]
