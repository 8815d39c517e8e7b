"""Shapes of /v1/documents: one document or a batch in, stored documents (with chunks) out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator

from cluster.content.parsing import CONTENT_TYPES
from cluster.store.knowledge import StoredDocument
from serve.schemas.common import StrictRequest


class DocumentIn(StrictRequest):
    content: str = Field(..., description="The document's text: plain text, Markdown, reStructuredText or HTML.")
    source: str | None = Field(None, min_length=1, max_length=1000,
                               description="Stable identity (path, URL...). Re-posting a source replaces that "
                                           "document. Default: derived from the content hash.")
    title: str | None = Field(None, max_length=300)
    content_type: str | None = Field(None, description=f"One of {', '.join(CONTENT_TYPES)}; guessed when absent.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON, filterable in search.")

    @field_validator("content_type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in CONTENT_TYPES:
            raise ValueError(f"unsupported content_type {value!r}; use one of {', '.join(CONTENT_TYPES)}")
        return value


class DocumentsIn(StrictRequest):
    documents: list[DocumentIn] = Field(..., min_length=1)


# One document or {"documents": [...]}: the discriminator picks the shape, so a validation error speaks of
# that shape only. The tags appear in error locations; errors.py strips them.
UNION_TAGS = frozenset({"single", "batch"})
DocumentsBody = Annotated[
    Union[Annotated[DocumentIn, Tag("single")], Annotated[DocumentsIn, Tag("batch")]],
    Discriminator(lambda v: "batch" if isinstance(v, dict) and "documents" in v else "single"),
]


class DocumentOut(BaseModel):
    id: uuid.UUID
    object: Literal["document"] = "document"
    source: str
    title: str
    content_type: str
    content_hash: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class ChunkOut(BaseModel):
    ordinal: int
    text: str
    token_count: int


class DocumentDetail(DocumentOut):
    chunks: list[ChunkOut] | None = None


class IngestResult(BaseModel):
    status: Literal["created", "updated", "unchanged"]
    document: DocumentOut


class IngestResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[IngestResult]
    created: int
    updated: int
    unchanged: int


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentOut]
    total: int
    limit: int
    offset: int


class Deleted(BaseModel):
    id: uuid.UUID
    object: Literal["document"] = "document"
    deleted: bool = True


def document_out(doc: StoredDocument) -> DocumentOut:
    return DocumentOut(id=doc.id, source=doc.source, title=doc.title, content_type=doc.content_type,
                       content_hash=doc.content_hash, metadata=doc.metadata, chunk_count=doc.chunk_count,
                       created_at=doc.created_at, updated_at=doc.updated_at)
