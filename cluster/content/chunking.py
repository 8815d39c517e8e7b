"""Packing a parsed document's sections into chunks counted in the embedder's own tokens.

No chunk is longer than what the embedder sees. Boundaries follow the document: a chunk never spans two sections
unless both fit whole, and a section is cut at paragraph boundaries first and inside a paragraph only when one
paragraph alone is too long; a chunk that starts mid-section repeats the section's heading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cluster.content.parsing import ParsedDocument

if TYPE_CHECKING:
    from cluster.settings import Settings


class Tokenizer(Protocol):
    def __call__(self, text: list[str], *, add_special_tokens: bool = ..., return_offsets_mapping: bool = ...
                 ) -> dict: ...


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

    def __init__(self, tokenizer: Tokenizer, chunk_tokens: int, overlap_tokens: int) -> None:
        self.tokenizer = tokenizer
        if hasattr(tokenizer, "model_max_length"):
            tokenizer.model_max_length = 1 << 30  # we count long texts on purpose; no truncation warnings
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _windows(self, text: str, budget: int) -> list[str]:
        """Cut one over-long paragraph at token boundaries, consecutive windows overlapping."""
        offsets = self.tokenizer([text], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][0]
        step = max(1, budget - self.overlap_tokens)
        pieces = []
        for start in range(0, len(offsets), step):
            window = offsets[start:start + budget]
            pieces.append(text[window[0][0]:window[-1][1]].strip())
            if start + budget >= len(offsets):
                break
        return [p for p in pieces if p]

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        texts: list[str] = []
        current: list[str] = []
        current_tokens = 0

        def flush() -> None:
            nonlocal current, current_tokens
            if current:
                texts.append("\n\n".join(current))
            current, current_tokens = [], 0

        for section in doc.sections:
            heading = section.heading
            head_tokens = self.count([heading])[0] + 1 if heading else 0
            para_tokens = self.count(list(section.paragraphs))
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
            body: list[str] = []
            body_tokens = 0
            for para, n in zip(section.paragraphs, para_tokens):
                pieces = [para] if n <= budget else self._windows(para, budget)
                for piece in pieces:
                    n_piece = n if len(pieces) == 1 else self.count([piece])[0]
                    if body and body_tokens + n_piece + 2 > budget:
                        texts.append("\n\n".join(prefix + body))
                        tail = body[-1]
                        tail_tokens = self.count([tail])[0]
                        body, body_tokens = ([tail], tail_tokens + 2) if tail_tokens <= self.overlap_tokens else ([], 0)
                    body.append(piece)
                    body_tokens += n_piece + 2
            if body:
                current, current_tokens = prefix + body, head_tokens + body_tokens
        flush()
        counts = self.count(texts)
        return [Chunk(ordinal=i, text=t, token_count=n) for i, (t, n) in enumerate(zip(texts, counts))]
