"""API keys as OpenAI clients send them (`Authorization: Bearer <key>`), checked before any router runs.

The rule, in order:
1. Health probes and the API's own description are open (`/healthz`, `/readyz`, `/openapi.json`, `/docs`).
2. While the cluster has no user key (a fresh local demo), loopback clients need none and anyone else is refused:
   binding the ingress beyond loopback without a key is also refused at `ragtune up`.
3. Once a user key exists, every other request needs an active key whose scope allows it: `use` for the model
   endpoints (chat, completions, embeddings, search, rerank, models, reading documents, rating an answer),
   `admin` for everything that changes the cluster or reads its internals (documents write/delete, files,
   fine-tuning, model deletion, evals, metrics, the cache, feedback stats and exports). 401 without a valid key, 403 for a key of the wrong scope, in OpenAI's error shape.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any, Callable

from fastapi.responses import JSONResponse

from cluster.store import api_keys
from cluster.store.api_keys import Scope
from serve.api.body_guard import ASGIApp, Receive, Send
from serve.api.errors import DATABASE_ERRORS, error_response

log = logging.getLogger("ray.serve.ragtune.ingress")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_USE = [("POST", re.compile(r"^/v1/(chat/completions|completions|embeddings|search|rerank|feedback)$")),
        ("GET", re.compile(r"^/v1/models(/[^/]+)?$")),
        ("GET", re.compile(r"^/v1/documents(/[^/]+)?$"))]


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a request needs; None for the open paths."""
    if path in OPEN_PATHS:
        return None
    path = path.rstrip("/") or "/"
    if any(method == m and pattern.match(path) for m, pattern in _USE):
        return "use"
    return "admin"


def is_loopback(client: tuple[str, int] | list | None) -> bool:
    if not client:
        return False
    try:
        return ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _refuse(status: int, message: str, code: str) -> JSONResponse:
    response = error_response(status, message, code=code)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


class ApiKeyAuth:
    """`pool()` -> this replica's database pool (awaitable): keys are looked up per request, so a revoked key
    stops working at once on every replica."""

    def __init__(self, app: ASGIApp, pool: Callable[[], Any]) -> None:
        self.app, self.pool = app, pool

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (needed := required_scope(scope["method"], scope["path"])) is None:
            return await self.app(scope, receive, send)
        try:
            refusal = await self._check(scope, needed)
        except DATABASE_ERRORS + (OSError, TimeoutError) as exc:
            log.warning("api keys: the database is unavailable: %r", exc)
            refusal = _refuse(503, "the database is unavailable; try again shortly", "database_unavailable")
        return await (refusal or self.app)(scope, receive, send)

    async def _check(self, scope: dict, needed: Scope) -> JSONResponse | None:
        """None when the request may go on; else the refusal to send."""
        pool = await self.pool()
        key = _bearer(dict(scope.get("headers") or []))
        if not await api_keys.user_keys_exist(pool):
            if is_loopback(scope.get("client")):
                return None
            if key is None or (found := await api_keys.lookup(pool, key)) is None:
                return _refuse(401, "this cluster has no API keys yet, so it serves only loopback clients; create "
                                    "one with `ragtune keys create`", "invalid_api_key")
        elif key is None:
            return _refuse(401, "missing API key: send `Authorization: Bearer <key>` (`ragtune keys create` makes "
                                "one)", "invalid_api_key")
        elif (found := await api_keys.lookup(pool, key)) is None:
            return _refuse(401, "incorrect or revoked API key", "invalid_api_key")
        if not found.allows(needed):
            return _refuse(403, f"this key's scope ({found.scope}) does not allow {scope['method']} {scope['path']}: "
                                f"it needs the {needed} scope", "insufficient_scope")
        scope.setdefault("state", {})["api_key_id"] = found.id  # the tenant: its cache entries are its own
        return None
