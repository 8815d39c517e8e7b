"""/v1/documents: add or replace documents (JSON or file upload), list, read and delete them."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, File, Form, Query, UploadFile

from cluster.store.knowledge import UpsertResult
from serve.api.body_guard import body_problem
from serve.api.dependencies import ServicesDep
from serve.schemas.documents import (
    ChunkOut, Deleted, DocumentDetail, DocumentList, DocumentsBody, DocumentsIn, IngestResponse, IngestResult,
    document_out,
)
from serve.services.errors import invalid
from serve.services.knowledge import UploadedFile

router = APIRouter(tags=["documents"])


def _ingested(results: list[UpsertResult]) -> IngestResponse:
    data = [IngestResult(status=r.status, document=document_out(r.document)) for r in results]
    return IngestResponse(data=data, **{s: sum(r.status == s for r in results)
                                        for s in ("created", "updated", "unchanged")})


@router.post("/v1/documents", response_model=IngestResponse)
async def create_documents(body: Annotated[DocumentsBody, Body()], s: ServicesDep) -> IngestResponse:
    """Add or replace one document or many (all or nothing: one transaction for the whole request)."""
    return _ingested(await s.knowledge.ingest(body.documents if isinstance(body, DocumentsIn) else [body]))


@router.post("/v1/documents/upload", response_model=IngestResponse)
async def upload_documents(files: Annotated[list[UploadFile], File()], s: ServicesDep,
                           metadata: Annotated[str | None, Form()] = None) -> IngestResponse:
    """Add or replace files (text, Markdown, reST, HTML); the source of each is its file name."""
    s.knowledge.check_count(len(files))  # before reading any of them
    meta = {}
    if metadata:
        if (problem := body_problem(metadata.encode())) is not None:  # the JSON body guard's checks, for a form
            raise invalid(f"metadata.{problem[0]}: {problem[1]}" if problem[0] != "body" else
                          f"metadata: {problem[1]}", param="metadata")
        try:
            meta = json.loads(metadata)
        except ValueError:
            raise invalid("metadata must be a JSON object", param="metadata") from None
        if not isinstance(meta, dict):
            raise invalid("metadata must be a JSON object", param="metadata")
    limit = s.settings.ingest.max_document_bytes
    uploads = [UploadedFile(u.filename or "upload", await u.read(limit + 1), u.content_type) for u in files]
    return _ingested(await s.knowledge.ingest_files(uploads, meta))


@router.get("/v1/documents", response_model=DocumentList)
async def list_documents(s: ServicesDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                         offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> DocumentList:
    total, docs = await s.knowledge.list_documents(limit, offset)
    return DocumentList(data=[document_out(d) for d in docs], total=total, limit=limit, offset=offset)


@router.get("/v1/documents/{document_id}", response_model=DocumentDetail)
async def get_document(document_id: uuid.UUID, s: ServicesDep,
                       include_chunks: Annotated[bool, Query()] = False) -> DocumentDetail:
    doc, chunks = await s.knowledge.get_document(document_id, include_chunks)
    out = [ChunkOut(ordinal=c.ordinal, text=c.text, token_count=c.token_count) for c in chunks]
    return DocumentDetail(**document_out(doc).model_dump(), chunks=out if include_chunks else None)


@router.delete("/v1/documents/{document_id}", response_model=Deleted)
async def delete_document(document_id: uuid.UUID, s: ServicesDep) -> Deleted:
    await s.knowledge.delete_document(document_id)
    return Deleted(id=document_id)
