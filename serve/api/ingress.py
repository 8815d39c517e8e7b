"""The HTTP ingress: routes only. Validation, then one service call, then the response shape.

The ingress holds no model; it owns a database pool and handles to the model deployments.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import uuid
from typing import Annotated, Any, AsyncIterator, Callable

import asyncpg
import numpy as np
from fastapi import Body, FastAPI, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.store import db, knowledge
from cluster.store import fine_tuning as ft
from cluster.store.adapters import AdapterStore
from cluster.content.parsing import Chunker, DocumentError, decode_text
from cluster.store.knowledge import SearchFilters, StoredDocument
from cluster.models.cache import resolve
from cluster.settings import Settings
from serve.api import errors
from serve.schemas.generation import (
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, ChunkDelta,
    Completion, CompletionChoice, CompletionChunk, CompletionRequest, ModelCard, ModelList, Usage,
)
from serve.api.errors import ApiError, bounded, invalid, not_found
from serve.schemas.fine_tuning import (
    FileDeleted, FileList, FileObject, FineTuningJobCreate, FineTuningJobList, FineTuningJobOut, JobEventList,
    ModelDeleted, event_out, file_out, job_out,
)
from serve.services.fine_tuning import FineTuningService
from serve.services.generation import Answer, GenerationService, Plan
from serve.deployments.llm_protocol import SamplingOptions
from serve.services.knowledge import EmbedderClient, KnowledgeService, RerankerClient
from serve.observability.metrics import IngressMetrics
from serve.observability.prometheus import metrics_endpoints, scrape
from serve.observability.request_log import RequestObserver, current
from serve.schemas.common import (
    ChunkOut, Deleted, DocumentDetail, DocumentIn, DocumentList, DocumentOut, DocumentsBody, DocumentsIn, Embedding,
    EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, ErrorResponse, Health, IngestResponse, IngestResult,
    RerankDocument, RerankRequest, RerankResponse, RerankResult, SearchFiltersIn, SearchHit, SearchRequest,
    SearchResponse, StageTimings,
)

log = logging.getLogger("ray.serve.ragtune.ingress")

app = FastAPI(
    title="ragtune",
    description="Retrieval-augmented, fine-tuned and hybrid generation over one Ray cluster. OpenAI-compatible "
                "where a convention exists; errors use OpenAI's shape.",
    version="0.1.0",
    responses={400: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
errors.install(app)
# Outermost: it sees every response, errors included, and measures streams to their last byte.
app.add_middleware(RequestObserver, metrics=lambda: getattr(app.state, "metrics", None))


def _filters(f: SearchFiltersIn | None) -> SearchFilters:
    return SearchFilters(sources=tuple(f.sources) if f and f.sources else None,
                         metadata=f.metadata if f and f.metadata else None)


def _sse(event: BaseModel | str) -> str:
    return f"data: {event if isinstance(event, str) else event.model_dump_json(exclude_none=True)}\n\n"


def _observe(route: str, **fields: Any) -> None:
    """Name this request's route (and model, timings...) in its metrics and log line."""
    record = current()
    if record is not None:
        record.route = route
        for key, value in fields.items():
            setattr(record, key, value)


def _document_out(doc: StoredDocument) -> DocumentOut:
    return DocumentOut(id=doc.id, source=doc.source, title=doc.title, content_type=doc.content_type,
                       content_hash=doc.content_hash, metadata=doc.metadata, chunk_count=doc.chunk_count,
                       created_at=doc.created_at, updated_at=doc.updated_at)


@serve.api.ingress(app)
class Ingress:
    def __init__(self, settings: Settings, embedder: DeploymentHandle, reranker: DeploymentHandle,
                 llm: DeploymentHandle, dispatcher: DeploymentHandle) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        self.settings = settings
        profile = settings.profile_spec
        tokenizer = AutoTokenizer.from_pretrained(resolve(profile.embedder.model, settings.models_dir))
        chunker = Chunker(tokenizer, profile.chunking.chunk_tokens, profile.chunking.overlap_tokens)
        self.knowledge = KnowledgeService(
            settings, EmbedderClient(embedder, profile.embedder.max_batch_size),
            RerankerClient(reranker, profile.reranker.max_batch_size), chunker)
        self.llm = llm
        self.adapters = AdapterStore(settings.adapter_store_uri, settings.adapter_cache_dir)
        llm_tokenizer = AutoTokenizer.from_pretrained(resolve(settings.llm_spec.model, settings.models_dir))
        self.generation = GenerationService(settings, self.knowledge, llm, self.adapters, llm_tokenizer)
        self.fine_tuning = FineTuningService(settings, llm_tokenizer, self.adapters, self.generation.base_model)
        self.dispatcher = dispatcher
        self.started = int(time.time())
        app.state.metrics = IngressMetrics()
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened (and the schema migrated) on first use, so a database outage is a 503, not a crash."""
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    spec = self.settings.profile_spec.embedder
                    url = db.database_url(self.settings.database_url, self.settings.pgdata)
                    self._pool = await db.connect(url, spec.dim, spec.model, max_size=self.settings.db_pool_max)
                    app.state.db_pool = self._pool  # errors.py expires its connections after a failure
        return self._pool

    # ------------------------------------------------------------------------------------------- health

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz(self) -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz(self) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            pool = await self.pool()
            await asyncio.wait_for(pool.fetchval("SELECT 1"), 5)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is reported as a check result
            checks["database"] = f"unavailable: {exc}"
            if self._pool is not None:
                await self._pool.expire_connections()
        try:
            await asyncio.wait_for(self.knowledge.warm(), 30)
            checks["embedder"] = checks["reranker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["embedder"] = checks["reranker"] = f"unavailable: {exc}"
        try:  # LLM replicas warm their engine before they report ready, so this answers once one is.
            await asyncio.wait_for(self.llm.check_health.remote(), 30)
            checks["llm"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["llm"] = f"unavailable: {exc}"
        ok = all(v == "ok" for v in checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    async def metrics(self) -> PlainTextResponse:
        """Prometheus exposition of the whole cluster: ragtune's metrics, Ray's (Serve included) and vLLM's."""
        import ray

        try:
            text = await scrape(metrics_endpoints(await asyncio.to_thread(ray.nodes)))
        except RuntimeError as exc:
            raise ApiError(503, str(exc), type="service_unavailable", code="metrics_unavailable") from None
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ----------------------------------------------------------------------------------------- documents

    def _check_count(self, n: int) -> None:
        limit = self.settings.ingest.max_documents_per_request
        if n > limit:
            raise ApiError(413, f"{n} documents in one request; the limit is {limit}", param="documents",
                           code="too_many_documents")

    def _check_size(self, n_bytes: int, name: str) -> None:
        limit = self.settings.ingest.max_document_bytes
        if n_bytes > limit:
            raise ApiError(413, f"{name}: {n_bytes} bytes exceeds the limit of {limit} bytes", param="content",
                           code="document_too_large")

    async def _ingest(self, items: list[DocumentIn]) -> IngestResponse:
        self._check_count(len(items))
        prepared = []
        for i, item in enumerate(items):
            name = item.source or f"documents[{i}]"
            self._check_size(len(item.content.encode("utf-8")), name)
            try:
                prepared.append(await asyncio.to_thread(
                    self.knowledge.prepare, item.content, source=item.source, title=item.title,
                    content_type=item.content_type, metadata=item.metadata))
            except DocumentError as exc:
                raise invalid(f"{name}: {exc}", param=f"documents[{i}]", code="invalid_document") from None
        try:
            results = await self.knowledge.ingest(await self.pool(), prepared)
        except ValueError as exc:
            raise invalid(str(exc), param="documents") from None
        data = [IngestResult(status=r.status, document=_document_out(r.document)) for r in results]
        return IngestResponse(data=data, **{s: sum(r.status == s for r in results)
                                            for s in ("created", "updated", "unchanged")})

    @app.post("/v1/documents", response_model=IngestResponse, tags=["documents"])
    async def create_documents(self, body: Annotated[DocumentsBody, Body()]) -> IngestResponse:
        """Add or replace one document or many (all or nothing: one transaction for the whole request)."""
        return await self._ingest(body.documents if isinstance(body, DocumentsIn) else [body])

    @app.post("/v1/documents/upload", response_model=IngestResponse, tags=["documents"])
    async def upload_documents(self, files: Annotated[list[UploadFile], File()],
                               metadata: Annotated[str | None, Form()] = None) -> IngestResponse:
        """Add or replace files (text, Markdown, reST, HTML); the source of each is its file name."""
        self._check_count(len(files))
        meta = {}
        if metadata:
            try:
                meta = json.loads(metadata)
            except ValueError:
                raise invalid("metadata must be a JSON object", param="metadata") from None
            if not isinstance(meta, dict):
                raise invalid("metadata must be a JSON object", param="metadata")
        items = []
        for upload in files:
            name = upload.filename or "upload"
            raw = await upload.read(self.settings.ingest.max_document_bytes + 1)
            self._check_size(len(raw), name)
            try:
                text = decode_text(raw, name)
            except DocumentError as exc:
                raise ApiError(415, str(exc), param="files", code="unsupported_media") from None
            kind = upload.content_type if upload.content_type in {"text/plain", "text/markdown", "text/x-rst",
                                                                  "text/html"} else None
            items.append(DocumentIn(content=text, source=name, content_type=kind, metadata=meta))
        return await self._ingest(items)

    @app.get("/v1/documents", response_model=DocumentList, tags=["documents"])
    async def list_documents(self, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                             offset: Annotated[int, Query(ge=0)] = 0) -> DocumentList:
        total, docs = await knowledge.list_documents(await self.pool(), limit, offset)
        return DocumentList(data=[_document_out(d) for d in docs], total=total, limit=limit, offset=offset)

    @app.get("/v1/documents/{document_id}", response_model=DocumentDetail, tags=["documents"])
    async def get_document(self, document_id: uuid.UUID,
                           include_chunks: Annotated[bool, Query()] = False) -> DocumentDetail:
        pool = await self.pool()
        doc = await knowledge.get_document(pool, document_id)
        if doc is None:
            raise not_found(f"no document with id {document_id}", param="document_id")
        chunks = None
        if include_chunks:
            chunks = [ChunkOut(ordinal=c.ordinal, text=c.text, token_count=c.token_count)
                      for c in await knowledge.document_chunks(pool, document_id)]
        return DocumentDetail(**_document_out(doc).model_dump(), chunks=chunks)

    @app.delete("/v1/documents/{document_id}", response_model=Deleted, tags=["documents"])
    async def delete_document(self, document_id: uuid.UUID) -> Deleted:
        if not await knowledge.delete_document(await self.pool(), document_id):
            raise not_found(f"no document with id {document_id}", param="document_id")
        return Deleted(id=document_id)

    # -------------------------------------------------------------------------------------------- search

    @app.post("/v1/search", response_model=SearchResponse, tags=["search"])
    async def search(self, body: SearchRequest) -> SearchResponse:
        """Hybrid retrieval (HNSW vector top-k + full-text top-k, fused by RRF in SQL), then cross-encoder rerank."""
        _observe("search")
        limits = self.settings.search
        if len(body.query) > limits.max_query_chars:
            raise invalid(f"query is {len(body.query)} characters; the limit is {limits.max_query_chars}",
                          param="query", code="query_too_long")
        top_k = bounded(body.top_k, limits.default_top_k, limits.max_top_k, "top_k")
        top_n = bounded(body.top_n, min(limits.default_top_n, top_k), limits.max_top_n, "top_n")
        if top_n > top_k:
            raise invalid(f"top_n ({top_n}) must not exceed top_k ({top_k})", param="top_n")
        outcome = await self.knowledge.search(await self.pool(), body.query, top_k, top_n, body.rerank,
                                              _filters(body.filters))
        _observe("search", timings={"embed_ms": outcome.embed_ms, "search_ms": outcome.search_ms,
                                    "rerank_ms": outcome.rerank_ms})
        hits = [SearchHit(
            document_id=h.candidate.document_id, source=h.candidate.source, title=h.candidate.title,
            chunk_ordinal=h.candidate.ordinal, text=h.candidate.text, metadata=h.candidate.metadata,
            vector_score=h.candidate.vector_score, keyword_score=h.candidate.keyword_score,
            fused_score=h.candidate.fused_score, rerank_score=h.rerank_score) for h in outcome.hits]
        timings = StageTimings(embed_ms=outcome.embed_ms, search_ms=outcome.search_ms, rerank_ms=outcome.rerank_ms,
                               total_ms=outcome.total_ms)
        return SearchResponse(query=body.query, hits=hits, timings=timings)

    # ---------------------------------------------------------------------------- embeddings and rerank

    @app.post("/v1/embeddings", response_model=EmbeddingsResponse, tags=["models"])
    async def embeddings(self, body: EmbeddingsRequest) -> EmbeddingsResponse:
        """OpenAI-compatible embeddings from the profile's embedder."""
        spec = self.settings.profile_spec.embedder
        _observe("embeddings")
        if body.model not in (None, spec.model):
            raise not_found(f"model {body.model!r} is not served; the embedder is {spec.model!r}", param="model")
        if body.dimensions not in (None, spec.dim):
            raise invalid(f"dimensions must be {spec.dim} for {spec.model}", param="dimensions")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > 2048:
            raise invalid("at most 2048 inputs per request", param="input")
        vectors = await self.knowledge.embedder.embed(texts)
        tokens = await self.knowledge.embedder.handle.tokenize_counts.remote(texts)
        data = [Embedding(index=i, embedding=base64.b64encode(v.astype(np.float32).tobytes()).decode()
                          if body.encoding_format == "base64" else v.tolist()) for i, v in enumerate(vectors)]
        return EmbeddingsResponse(data=data, model=spec.model,
                                  usage=EmbeddingsUsage(prompt_tokens=sum(tokens), total_tokens=sum(tokens)))

    @app.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True, tags=["models"])
    async def rerank(self, body: RerankRequest) -> RerankResponse:
        """Cohere/Jina-compatible rerank: results sorted by relevance, `index` into the request's documents."""
        spec = self.settings.profile_spec.reranker
        _observe("rerank")
        if body.model not in (None, spec.model):
            raise not_found(f"model {body.model!r} is not served; the reranker is {spec.model!r}", param="model")
        texts = body.texts()
        if len(texts) > 1000:
            raise invalid("at most 1000 documents per request", param="documents")
        top_n = len(texts) if body.top_n is None else min(body.top_n, len(texts))
        scores = await self.knowledge.reranker.score(body.query, texts)
        order = np.argsort(-scores, kind="stable")[:top_n]
        results = [RerankResult(index=int(i), relevance_score=float(scores[i]),
                                document=RerankDocument(text=texts[i]) if body.return_documents else None)
                   for i in order]
        return RerankResponse(model=spec.model, results=results)

    # ---------------------------------------------------------------------------------------- generation

    def _plan(self, body: ChatCompletionRequest | CompletionRequest, default_route: str) -> Plan:
        g = self.generation
        adapter = g.resolve_model(body.model)
        route = g.route_for(body.route, adapter, default_route)  # type: ignore[arg-type]
        _observe(route, model=body.model if adapter else g.base_model, adapter=adapter.name if adapter else None)
        if route in ("finetuned", "plain") and (body.top_k or body.top_n or body.filters or body.rerank is not None):
            raise invalid(f"route {route!r} does not retrieve: drop top_k, top_n, filters and rerank", param="route")
        sampling = SamplingOptions(max_tokens=g.max_tokens(body.token_limit()), temperature=body.temperature,
                                   top_p=body.top_p, stop=body.stop_list(), seed=body.seed,
                                   presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                                   ignore_eos=body.ignore_eos)
        retrieval = (g.retrieval_options(body.top_k, body.top_n, body.rerank, _filters(body.filters))
                     if route in ("rag", "hybrid") else None)
        chat = isinstance(body, ChatCompletionRequest)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages] if chat else None
        question = messages[-1]["content"] if messages else body.text()  # type: ignore[union-attr]
        limit = self.settings.search.max_query_chars
        if retrieval is not None and len(question) > limit:
            raise invalid(f"the question is {len(question)} characters; retrieval takes at most {limit}",
                          param="messages" if chat else "prompt", code="query_too_long")
        record = current()
        return Plan(route, body.model, adapter, messages, None if chat else question,  # type: ignore[arg-type]
                    sampling, retrieval, request_id=record.request_id if record else None)

    async def _answer(self, plan: Plan) -> Answer:
        pool = await self.pool() if plan.retrieval is not None else None
        answer = await self.generation.answer(plan, pool)
        _observe(plan.route, answer=answer)
        return answer

    @staticmethod
    def _usage(answer: Answer) -> Usage:
        return Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                     total_tokens=answer.prompt_tokens + answer.completion_tokens)

    def _stream(self, answer: Answer, chunk: Callable[..., BaseModel], include_usage: bool) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            async for piece in answer.pieces:
                yield _sse(chunk(piece, None))
            yield _sse(chunk("", answer.finish_reason))
            yield _sse(chunk(None, None, usage=self._usage(answer) if include_usage else None, route=answer.route,
                             citations=answer.citations, timings=answer.timings))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["generation"],
              responses={404: {"model": ErrorResponse}})
    async def chat_completions(self, body: ChatCompletionRequest) -> Any:
        """OpenAI chat completions on one of four routes (`route`: rag, finetuned, hybrid, plain)."""
        plan = self._plan(body, default_route="rag")
        answer = await self._answer(plan)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            first = True

            def chunk(text: str | None, finish: str | None, **final: Any) -> ChatCompletionChunk:
                nonlocal first
                if text is None:  # the final event: no choices, the summary fields
                    return ChatCompletionChunk(id=rid, created=created, model=body.model, choices=[], **final)
                delta = ChunkDelta(role="assistant" if first else None, content=text)
                first = False
                return ChatCompletionChunk(id=rid, created=created, model=body.model,
                                           choices=[ChunkChoice(delta=delta, finish_reason=finish)])

            include = body.stream_options is None or body.stream_options.include_usage
            return self._stream(answer, chunk, include)
        text = "".join([piece async for piece in answer.pieces])
        return ChatCompletion(id=rid, created=created, model=body.model, route=answer.route,
                              choices=[ChatChoice(message=AssistantMessage(content=text),
                                                  finish_reason=answer.finish_reason)],
                              usage=self._usage(answer), citations=answer.citations, timings=answer.timings)

    @app.post("/v1/completions", response_model=Completion, tags=["generation"],
              responses={404: {"model": ErrorResponse}})
    async def completions(self, body: CompletionRequest) -> Any:
        """OpenAI (legacy) completions. Routes `plain`/`finetuned` continue the raw prompt; `rag`/`hybrid` treat it
        as a question and answer it through the chat template with sources."""
        plan = self._plan(body, default_route="plain")
        answer = await self._answer(plan)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            def chunk(text: str | None, finish: str | None, **final: Any) -> CompletionChunk:
                choices = [] if text is None else [CompletionChoice(text=text, finish_reason=finish)]
                return CompletionChunk(id=rid, created=created, model=body.model, choices=choices, **final)

            include = body.stream_options is None or body.stream_options.include_usage
            return self._stream(answer, chunk, include)
        text = "".join([piece async for piece in answer.pieces])
        return Completion(id=rid, created=created, model=body.model, route=answer.route,
                          choices=[CompletionChoice(text=text, finish_reason=answer.finish_reason)],
                          usage=self._usage(answer), citations=answer.citations, timings=answer.timings)

    @app.get("/v1/models", response_model=ModelList, response_model_exclude_none=True, tags=["generation"])
    async def list_models(self) -> ModelList:
        """The base model and every adapter in the store (adapters with `parent` = the base model)."""
        base = self.generation.base_model
        cards = [ModelCard(id=base, created=self.started, owned_by="ragtune", root=self.settings.llm_spec.model)]
        for ref in await asyncio.to_thread(self.adapters.list):
            cards.append(ModelCard(id=ref.name, created=int(ref.created), owned_by="ragtune", root=ref.name,
                                   parent=base, version=ref.version, metadata=ref.metadata or None))
        return ModelList(data=cards)

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, response_model_exclude_none=True,
             tags=["generation"], responses={404: {"model": ErrorResponse}})
    async def get_model(self, model_id: str) -> ModelCard:
        models = await self.list_models()
        card = next((m for m in models.data if m.id == model_id), None)
        if card is None:
            raise not_found(f"The model {model_id!r} does not exist", param="model")
        return card

    @app.delete("/v1/models/{model_id:path}", response_model=ModelDeleted, tags=["generation"],
                responses={404: {"model": ErrorResponse}})
    async def delete_model(self, model_id: str) -> ModelDeleted:
        """Retire an adapter: requests in flight finish; new ones get 404."""
        await self.fine_tuning.delete_adapter(model_id)
        return ModelDeleted(id=model_id)

    # --------------------------------------------------------------------------------------- fine-tuning

    @app.post("/v1/files", response_model=FileObject, tags=["fine-tuning"])
    async def upload_file(self, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]) -> FileObject:
        """A JSONL training file (purpose `fine-tune`), validated line by line before it is stored."""
        data = await file.read(self.settings.fine_tuning.max_file_bytes + 1)
        stored = await self.fine_tuning.upload(await self.pool(), file.filename or "upload.jsonl", purpose, data)
        return file_out(stored)

    @app.get("/v1/files", response_model=FileList, tags=["fine-tuning"])
    async def list_files(self, purpose: Annotated[str | None, Query()] = None,
                         limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> FileList:
        return FileList(data=[file_out(f) for f in await ft.list_files(await self.pool(), purpose, limit)])

    @app.get("/v1/files/{file_id}", response_model=FileObject, tags=["fine-tuning"])
    async def get_file(self, file_id: str) -> FileObject:
        return file_out(await self.fine_tuning.get_file(await self.pool(), file_id))

    @app.delete("/v1/files/{file_id}", response_model=FileDeleted, tags=["fine-tuning"])
    async def delete_file(self, file_id: str) -> FileDeleted:
        """Refused (409) while a fine-tuning job refers to the file."""
        await self.fine_tuning.delete_file(await self.pool(), file_id)
        return FileDeleted(id=file_id)

    @app.post("/v1/fine_tuning/jobs", response_model=FineTuningJobOut, tags=["fine-tuning"])
    async def create_fine_tuning_job(self, body: FineTuningJobCreate) -> FineTuningJobOut:
        """Queue a LoRA fine-tuning job; the dispatcher runs it as a Ray Job when the budget allows."""
        job = await self.fine_tuning.create_job(await self.pool(), body)
        self.dispatcher.wake.remote()
        return job_out(job)

    @app.get("/v1/fine_tuning/jobs", response_model=FineTuningJobList, tags=["fine-tuning"])
    async def list_fine_tuning_jobs(self, after: Annotated[str | None, Query()] = None,
                                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> FineTuningJobList:
        jobs, more = await ft.list_jobs(await self.pool(), after, limit)
        return FineTuningJobList(data=[job_out(j) for j in jobs], has_more=more)

    @app.get("/v1/fine_tuning/jobs/{job_id}", response_model=FineTuningJobOut, tags=["fine-tuning"])
    async def get_fine_tuning_job(self, job_id: str) -> FineTuningJobOut:
        return job_out(await self.fine_tuning.get_job(await self.pool(), job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events", response_model=JobEventList, tags=["fine-tuning"])
    async def list_fine_tuning_events(self, job_id: str, after: Annotated[str | None, Query()] = None,
                                      limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> JobEventList:
        """Newest first: queued, started, step/loss metrics, succeeded/failed/cancelled."""
        events, more = await self.fine_tuning.events(await self.pool(), job_id, after, limit)
        return JobEventList(data=[event_out(e) for e in events], has_more=more)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel", response_model=FineTuningJobOut, tags=["fine-tuning"])
    async def cancel_fine_tuning_job(self, job_id: str) -> FineTuningJobOut:
        """A queued job is cancelled at once; a running one is stopped and publishes nothing (409 if finished)."""
        job = await self.fine_tuning.cancel(await self.pool(), job_id)
        self.dispatcher.wake.remote()
        return job_out(job)

    @app.get("/v1/engine/stats", tags=["operator"])
    async def engine_stats(self) -> dict[str, Any]:
        """One LLM replica's engine: unfinished requests and the adapters it holds (with requests in flight)."""
        return await self.llm.stats.remote()
