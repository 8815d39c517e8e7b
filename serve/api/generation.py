"""/v1/chat/completions and /v1/completions (OpenAI's shapes, streamed or not, on a route) and /v1/models."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cluster.ops.redaction import redact_values
from cluster.store.feedback import ResponseRecord
from serve.api import errors
from serve.api.dependencies import Services, ServicesDep, observe, tenant
from serve.observability.request_log import current
from serve.schemas.common import ErrorDetail, ErrorResponse, Route
from serve.schemas.generation import (
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, ChunkDelta,
    Completion, CompletionChoice, CompletionChunk, CompletionRequest, ModelCard, ModelDeleted, ModelList, Usage,
)
from serve.services.errors import ApiError, not_found
from serve.services.generation import Answer

router = APIRouter(tags=["generation"])
log = logging.getLogger("ray.serve.ragtune.ingress")


async def _answer(s: Services, body: ChatCompletionRequest | CompletionRequest, default_route: Route,
                  request: Request) -> Answer:
    g = s.generation
    adapter = await asyncio.to_thread(g.resolve_model, body.model)  # store reads: off the event loop
    route = g.route_for(body.route, adapter, default_route)
    observe(route, model=body.model if adapter else g.base_model, adapter=adapter.name if adapter else None)
    record = current()
    no_cache = any(d in (request.headers.get("cache-control") or "").lower() for d in ("no-cache", "no-store"))
    plan = await asyncio.to_thread(g.plan, body, adapter, route, record.request_id if record else None,
                                   tenant(request), no_cache)
    answer = await g.answer(plan)
    observe(route, answer=answer)
    return answer


def _sse(event: BaseModel | str) -> str:
    return f"data: {event if isinstance(event, str) else event.model_dump_json(exclude_none=True)}\n\n"


def _usage(answer: Answer) -> Usage:
    return Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                 total_tokens=answer.prompt_tokens + answer.completion_tokens)


def _record(rid: str, body: ChatCompletionRequest | CompletionRequest, answer: Answer, text: str,
            request: Request) -> ResponseRecord:
    """The answer as served, for the feedback loop (a rating names it by `rid`)."""
    chat = isinstance(body, ChatCompletionRequest)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages] if chat \
        else [{"role": "user", "content": body.text()}]  # type: ignore[union-attr]
    lookup = answer.lookup
    return ResponseRecord(
        id=rid, kind="chat" if chat else "completion", route=answer.route, model=body.model, adapter=answer.adapter,
        tenant=tenant(request), messages=messages, answer=text, finish_reason=answer.finish_reason,
        citations=answer.citations, timings=answer.timings, usage=_usage(answer).model_dump(),
        cache_status=lookup.status if lookup else None,
        cache_scope=lookup.key.scope if lookup and lookup.key else None,
        cache_entry=lookup.entry_id if lookup else None)


def _stream(answer: Answer, chunk: Callable[..., BaseModel], include_usage: bool,
            finished: Callable[[str], Awaitable[None]] | None = None) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        text: list[str] = []
        try:
            async for piece in answer.pieces:
                text.append(piece)
                yield _sse(chunk(piece, None))
        except ApiError as exc:  # refused mid-answer (the guardrails' canary): its own status's error
            yield _sse(ErrorResponse(error=ErrorDetail(message=exc.message, type=exc.type, param=exc.param,
                                                       code=exc.code)))
            yield _sse("[DONE]")
            return
        except Exception as exc:  # noqa: BLE001 - headers are sent: say what happened, never a silent close
            log.warning("stream cut: %r", exc)
            yield _sse(ErrorResponse(error=ErrorDetail(
                message="the answer was cut off: the model replica became unavailable; retry the request",
                type="service_unavailable", param=None, code="stream_interrupted")
                if errors.unavailable(exc) else ErrorDetail(
                message=f"the answer was cut off by an internal error ({type(exc).__name__})",
                type="server_error", param=None, code="internal_error")))
            yield _sse("[DONE]")
            return
        yield _sse(chunk("", answer.finish_reason))
        yield _sse(chunk(None, None, usage=_usage(answer) if include_usage else None, route=answer.route,
                         citations=answer.citations, timings=answer.timings, **answer.applied))
        if finished is not None:  # before [DONE]: a rating sent as soon as the stream ends finds the answer
            await finished("".join(text))
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses={404: {"model": ErrorResponse}})
async def chat_completions(body: ChatCompletionRequest, s: ServicesDep, request: Request) -> Any:
    """OpenAI chat completions on one of four routes (`route`: rag, finetuned, hybrid, plain)."""
    answer = await _answer(s, body, default_route="rag", request=request)
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

        return _stream(answer, chunk, body.stream_options is None or body.stream_options.include_usage,
                       lambda text: s.feedback.record(_record(rid, body, answer, text, request)))
    text = "".join([piece async for piece in answer.pieces])
    await s.feedback.record(_record(rid, body, answer, text, request))
    return ChatCompletion(id=rid, created=created, model=body.model, route=answer.route,
                          choices=[ChatChoice(message=AssistantMessage(content=text),
                                              finish_reason=answer.finish_reason)],
                          usage=_usage(answer), citations=answer.citations, timings=answer.timings,
                          **answer.applied)


@router.post("/v1/completions", response_model=Completion, responses={404: {"model": ErrorResponse}})
async def completions(body: CompletionRequest, s: ServicesDep, request: Request) -> Any:
    """OpenAI (legacy) completions. Routes `plain`/`finetuned` continue the raw prompt; `rag`/`hybrid` treat it
    as a question and answer it through the chat template with sources."""
    answer = await _answer(s, body, default_route="plain", request=request)
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        def chunk(text: str | None, finish: str | None, **final: Any) -> CompletionChunk:
            choices = [] if text is None else [CompletionChoice(text=text, finish_reason=finish)]
            return CompletionChunk(id=rid, created=created, model=body.model, choices=choices, **final)

        return _stream(answer, chunk, body.stream_options is None or body.stream_options.include_usage,
                       lambda text: s.feedback.record(_record(rid, body, answer, text, request)))
    text = "".join([piece async for piece in answer.pieces])
    await s.feedback.record(_record(rid, body, answer, text, request))
    return Completion(id=rid, created=created, model=body.model, route=answer.route,
                      choices=[CompletionChoice(text=text, finish_reason=answer.finish_reason)],
                      usage=_usage(answer), citations=answer.citations, timings=answer.timings, **answer.applied)


@router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
async def list_models(s: ServicesDep) -> ModelList:
    """The base model and every adapter in the store (adapters with `parent` = the base model)."""
    base = s.generation.base_model
    cards = [ModelCard(id=base, created=s.started, owned_by="ragtune", root=s.settings.llm_spec.model)]
    for ref in await asyncio.to_thread(s.generation.models):
        cards.append(ModelCard(id=ref.name, created=int(ref.created), owned_by="ragtune", root=ref.name,
                               parent=base, version=ref.version, metadata=redact_values(ref.metadata) or None))
    return ModelList(data=cards)


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, response_model_exclude_none=True,
            responses={404: {"model": ErrorResponse}})
async def get_model(model_id: str, s: ServicesDep) -> ModelCard:
    card = next((m for m in (await list_models(s)).data if m.id == model_id), None)
    if card is None:
        raise not_found(f"The model {model_id!r} does not exist", param="model")
    return card


@router.delete("/v1/models/{model_id:path}", response_model=ModelDeleted, responses={404: {"model": ErrorResponse}})
async def delete_model(model_id: str, s: ServicesDep) -> ModelDeleted:
    """Retire an adapter: requests in flight finish; new ones get 404."""
    await s.generation.delete_adapter(model_id)
    return ModelDeleted(id=model_id)
