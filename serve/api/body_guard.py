"""What every request body must pass before a router sees it: a size limit, enforced from `Content-Length` and
again while the body streams in (413), and, in JSON bodies, no NaN/Infinity (Python's parser accepts them, jsonb
and every other JSON reader refuse them) and no NUL character (Postgres text cannot hold one): 400 naming the
field. Pure ASGI, so an oversized upload is cut off while streaming, not after it was read whole."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping

from starlette.exceptions import HTTPException

from serve.api.errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Constant:
    """Where the JSON had NaN, Infinity or -Infinity."""

    def __init__(self, text: str) -> None:
        self.text = text


def _name(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "body"


def body_problem(body: bytes) -> tuple[str, str] | None:
    """(field, what is wrong) for the first NaN/Infinity or NUL in a JSON body; None if there is none (or the
    body is not JSON at all: the router's own validation answers that)."""
    if b"NaN" not in body and b"Infinity" not in body and b"\\u0000" not in body:
        return None  # the common case costs one scan of the bytes
    try:
        value = json.loads(body, parse_constant=_Constant)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Constant):
            return _name(path), f"{item.text} is not a JSON number (JSON has no NaN or infinity)"
        if isinstance(item, str) and "\x00" in item:
            return _name(path), "contains a NUL character (\\u0000), which text cannot hold"
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                if "\x00" in key:
                    return _name(path), "has a key with a NUL character (\\u0000)"
                stack.append(([*path, key], child))
        elif isinstance(item, list):
            stack.extend(([*path, i], child) for i, child in reversed(list(enumerate(item))))
    return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


class BodyGuard:
    """`limits()` -> (JSON/other bodies, multipart uploads) in bytes; read per request, from the settings."""

    def __init__(self, app: ASGIApp, limits: Callable[[], tuple[int, int]]) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        json_limit, upload_limit = self.limits()
        limit = upload_limit if kind.startswith(b"multipart/") else json_limit
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await error_response(413, _too_large(limit), code="request_too_large")(scope, receive, send)
        if kind.startswith(b"multipart/"):
            return await self.app(scope, self._counting(receive, limit), send)
        body = bytearray()
        while True:  # JSON bodies are read here whole (the router would read them whole anyway)
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                return await error_response(413, _too_large(limit), code="request_too_large")(scope, receive, send)
            if not message.get("more_body"):
                break
        if (problem := body_problem(bytes(body))) is not None:
            field, what = problem
            refusal = error_response(400, f"{field}: {what}", param=field, code="invalid_value")
            return await refusal(scope, receive, send)
        return await self.app(scope, self._replay(bytes(body), receive), send)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        sent = False

        async def replayed() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, for streaming responses

        return replayed

    @staticmethod
    def _counting(receive: Receive, limit: int) -> Receive:
        """Streams an upload through, refusing it once it passes the limit. FastAPI re-raises an HTTPException
        from body parsing as it is, so the client gets the 413 (in OpenAI's shape, by serve/api/errors.py)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(limit))
            return message

        return counted
