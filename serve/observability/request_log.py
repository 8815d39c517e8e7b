"""One record per HTTP request: filled in by the handler, closed when the response's last byte is sent.

`RequestObserver` is a plain ASGI middleware, so a streamed answer is measured to its end, not to its headers.
On close it updates the Prometheus metrics and writes one structured log line (JSON under Serve's JSON logging,
which adds the request id, deployment and replica). The request id is Serve's: the caller's `X-Request-ID` or a
fresh one; Serve returns it in the response's `X-Request-ID` and carries it through every deployment handle call,
and the LLM engine's request id starts with it.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, MutableMapping

from serve.observability.metrics import IngressMetrics

log = logging.getLogger("ray.serve.ragtune.requests")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

_current: ContextVar["RequestRecord | None"] = ContextVar("ragtune_request", default=None)


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    route: str | None = None  # rag/finetuned/hybrid/plain, or the API's name for other endpoints
    model: str | None = None
    adapter: str | None = None
    status: int = 500
    timings: dict[str, float | None] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    resumes: int = 0
    answer: Any = None  # a streamed Answer: its timings and token counts are final once the stream ends

    def collect(self) -> None:
        if self.answer is not None:
            self.timings = dict(self.answer.timings)
            self.prompt_tokens, self.completion_tokens = self.answer.prompt_tokens, self.answer.completion_tokens
            self.resumes = self.answer.resumes


def current() -> RequestRecord | None:
    """The record of the request being handled (None outside a request, e.g. in unit tests of a service)."""
    return _current.get()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Callable[[], IngressMetrics | None] = lambda: None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(_header(scope, b"x-request-id") or "-", scope["method"], scope["path"])
        token = _current.set(record)
        closed = False

        async def observed_send(message: Message) -> None:
            nonlocal closed
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and not closed:
                closed = True
                self.close(record, scope)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if not closed:  # the client went away mid-stream, or the app raised
                closed = True
                if record.status < 400 and record.answer is not None:
                    record.status = 499
                self.close(record, scope)
            _current.reset(token)

    def close(self, record: RequestRecord, scope: Scope) -> None:
        seconds = time.perf_counter() - record.started
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        record.collect()
        if endpoint in ("/metrics", "/healthz", "/readyz"):
            return  # scrapes and probes are neither traffic nor worth a log line each
        metrics = self.metrics()
        if metrics is not None:
            metrics.observe(endpoint, record.route or "-", record.status, seconds, record.timings, record.model,
                            record.timings.get("ttft_ms"), record.prompt_tokens, record.completion_tokens,
                            record.resumes)
        fields = {"http_method": record.method, "endpoint": endpoint, "status_code": record.status,
                  "pipeline": record.route, "model": record.model, "adapter": record.adapter,
                  "latency_ms": round(seconds * 1000, 2), "prompt_tokens": record.prompt_tokens,
                  "completion_tokens": record.completion_tokens, "resumes": record.resumes or None,
                  **{k: v for k, v in record.timings.items() if v is not None}}
        log.info("request %s %s %s", record.method, record.path, record.status,
                 extra={"ragtune": {k: v for k, v in fields.items() if v is not None}})
