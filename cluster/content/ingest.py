"""The one ingest pipeline: parse and chunk (CPU), embed through a callable, write in one transaction.

`POST /v1/documents` runs it once per request (the whole request lands or none of it does); the ingestion job
(`python -m jobs.ingest`) once per file. What differs between them is only how text is embedded: the ingress
and the job both pass a function that calls the Embedder deployment.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, NamedTuple, Sequence

import asyncpg
import numpy as np

from cluster.content.chunking import Chunk, Chunker
from cluster.content.glossary import acronyms
from cluster.content.parsing import (
    DocumentError, DocumentTooLarge, NewDocument, content_hash, decode_text, guess_content_type, parse_document,
)
from cluster.store import knowledge
from cluster.store.knowledge import PreparedDocument, UpsertResult

if TYPE_CHECKING:
    from cluster.settings import IngestLimits, Settings

Embed = Callable[[Sequence[str]], Awaitable[np.ndarray]]


class ChunkedDocument(NamedTuple):
    """A validated, parsed and chunked document, with the acronyms it defines: ready to be embedded and written."""

    document: NewDocument
    chunks: list[Chunk]
    glossary: list[tuple[str, str]] = []


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document is parsed and chunked. Parsing allocates up to a few
    hundred thousand small objects and makes no cycles, and each collection they trigger rescans the whole heap
    of the process (a replica holds millions of objects): measured, 80% of parsing a 2 MB document of headings.
    Counted, so that concurrent parses re-enable it only when the last one ends."""
    global _gc_pausers
    with _gc_lock:
        if _gc_pausers == 0 and not gc.isenabled():
            yield  # somebody else manages the collector
            return
        _gc_pausers += 1
        gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0:
                gc.enable()


def build_document(chunker: Chunker, content: str, *, source: str | None = None, title: str | None = None,
                   content_type: str | None = None, metadata: dict[str, Any] | None = None,
                   max_chunks: int = 2000) -> ChunkedDocument:
    """Validate, parse and chunk one document. Raises DocumentError with what is wrong."""
    if not content or not content.strip():
        raise DocumentError("document is empty")
    kind = content_type or guess_content_type(source or "", content)
    with _gc_paused():
        parsed = parse_document(content, kind, title)
        chunks = chunker.chunk(parsed, max_chunks)
    if len(chunks) > max_chunks:
        raise DocumentError(f"document would make {len(chunks)} chunks, more than the limit of {max_chunks}")
    digest = content_hash(content, kind, title, metadata)
    doc = NewDocument(source=source or f"inline:{digest[:16]}", title=parsed.title, content_type=kind,
                      content=content, content_hash=digest, metadata=metadata or {})
    return ChunkedDocument(doc, chunks, acronyms(content))


class Ingester:
    def __init__(self, chunker: Chunker, limits: "IngestLimits", embed: Embed) -> None:
        self.chunker, self.limits, self.embed = chunker, limits, embed

    @classmethod
    def from_settings(cls, settings: "Settings", embed: Embed) -> "Ingester":
        return cls(Chunker.from_settings(settings), settings.ingest, embed)

    def check_size(self, n_bytes: int, name: str) -> None:
        if n_bytes > self.limits.max_document_bytes:
            raise DocumentTooLarge(f"{name}: {n_bytes} bytes exceeds the limit of {self.limits.max_document_bytes} "
                                   "bytes")

    def prepare(self, content: str, *, source: str | None = None, title: str | None = None,
                content_type: str | None = None, metadata: dict[str, Any] | None = None,
                name: str | None = None) -> ChunkedDocument:
        """Size-check, parse and chunk one document (CPU work: async callers run it in a thread). `name` is how
        errors call it (default: its source)."""
        self.check_size(len(content.encode("utf-8")), name or source or "document")
        return build_document(self.chunker, content, source=source, title=title, content_type=content_type,
                              metadata=metadata, max_chunks=self.limits.max_chunks_per_document)

    def prepare_file(self, raw: bytes, source: str, content_type: str | None = None,
                     metadata: dict[str, Any] | None = None) -> ChunkedDocument:
        """A file's bytes: refused if too large or not text, then prepared like any document."""
        self.check_size(len(raw), source)
        return self.prepare(decode_text(raw, source), source=source, content_type=content_type, metadata=metadata)

    async def write(self, pool: asyncpg.Pool, documents: Sequence[ChunkedDocument]) -> list[UpsertResult]:
        """Embed what changed (unchanged documents cost no embedding), then write all of it in ONE transaction."""
        sources = [d.document.source for d in documents]
        if len(set(sources)) != len(sources):
            dup = next(s for s in sources if sources.count(s) > 1)
            raise ValueError(f"source {dup!r} appears more than once in this request")
        stored = await knowledge.content_hashes(pool, sources)
        changed = [d for d in documents if stored.get(d.document.source) != d.document.content_hash]
        unchanged = [d.document.source for d in documents if stored.get(d.document.source) == d.document.content_hash]
        texts = [chunk.text for d in changed for chunk in d.chunks]
        vectors = await self.embed(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        prepared, start = [], 0
        for d in changed:
            prepared.append(PreparedDocument(d.document, d.chunks, vectors[start:start + len(d.chunks)], d.glossary))
            start += len(d.chunks)
        return await knowledge.write_documents(pool, prepared, unchanged)
