"""Every error leaves the ingress as JSON in OpenAI's shape with a 4xx/5xx status; never a stack trace, a host
path or an address (details go to the replica's log).

Only the database's own failures are a 503 `database_unavailable`: asyncpg's connection errors, and an OSError or
timeout raised inside asyncpg (a server that went away mid-query). The same OSError from anywhere else (a full
disk, a file store that fails) is a storage failure, not the database.
"""

from __future__ import annotations

import logging
import traceback

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster.content.parsing import DocumentError
from cluster.ops.redaction import redact
from cluster.store.db import DatabaseUnavailable
from serve.deployments.llm_protocol import engine_dead
from serve.api.dependencies import current_services
from serve.schemas.common import ErrorDetail, ErrorResponse
from serve.schemas.documents import UNION_TAGS
from serve.services.errors import ApiError

log = logging.getLogger("ray.serve.ragtune.ingress")

def _serve_unavailable() -> tuple[type[Exception], ...]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

    return (BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError, ActorDiedError,
            ActorUnavailableError, RayActorError)


SERVE_UNAVAILABLE = _serve_unavailable()


def unavailable(exc: BaseException) -> bool:
    """Overload, a replica that died or is not up, or a dead vLLM engine (matched by name, however Ray wraps it):
    a 503 to retry, not a 500."""
    return isinstance(exc, SERVE_UNAVAILABLE) or engine_dead(exc)

# InternalClientError: a pooled connection a database restart left mid-operation ("another operation is in progress").
DATABASE_ERRORS = (DatabaseUnavailable, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                   asyncpg.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError, asyncpg.InternalClientError)


def error_response(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    """Every error response is made here: the message is redacted (libraries name paths and hosts in theirs)."""
    payload = ErrorResponse(error=ErrorDetail(message=redact(message), type=type, param=param, code=code))
    return JSONResponse(status_code=status, content=payload.model_dump())


def raised_in_asyncpg(exc: BaseException) -> bool:
    """Whether the exception came out of asyncpg's code (its connection or protocol), not ours."""
    return any("/asyncpg/" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %r", exc)
    # Connections that saw the failure may be dead (server restarted): replace them all on next use.
    services = current_services()
    if services is not None:
        await services.db.expire()
    return error_response(503, "the database is unavailable; try again shortly", "service_unavailable", None,
                 "database_unavailable")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}

        def where(error: dict) -> str:
            loc = list(error.get("loc", ()))
            if loc and loc[0] in ("body", "query", "path", "header"):  # the request part, not the field
                loc = loc[1:]
            return ".".join(str(p) for p in loc if p not in UNION_TAGS)

        message = "; ".join(f"{where(e) or 'body'}: {e.get('msg')}" for e in errors[:5])
        return error_response(400, message, "invalid_request_error", where(first) or None, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        code = {404: "not_found", 413: "request_too_large"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), kind, None, code)

    @app.exception_handler(DocumentError)
    async def _document(_: Request, exc: DocumentError) -> JSONResponse:
        return error_response(400, str(exc), "invalid_request_error", "documents", "invalid_document")

    @app.exception_handler(asyncpg.DataError)
    async def _out_of_range(_: Request, exc: asyncpg.DataError) -> JSONResponse:
        """A value the database refuses as data (out of range, malformed): the request's, not the server's. (The
        NUL-character subclasses have their own handler below: Starlette picks the most specific.)"""
        log.info("refused a value the database rejects: %r", exc)
        return error_response(400, "a value is out of range or malformed for the database", code="invalid_value")

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    @app.exception_handler(asyncpg.UntranslatableCharacterError)
    async def _unstorable(_: Request, exc: asyncpg.PostgresError) -> JSONResponse:
        """A value the database cannot store (a NUL in a query parameter or form field the body guard does not
        see): the client's input, not a server error."""
        log.info("refused a value the database cannot store: %r", exc)
        return error_response(400, "a value contains a character the database cannot store (NUL, \\u0000)",
                     "invalid_request_error", None, "invalid_value")

    for db_error in DATABASE_ERRORS:
        app.add_exception_handler(db_error, _database_unavailable)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if raised_in_asyncpg(exc):
            return await _database_unavailable(request, exc)
        log.error("storage failure: %r", exc)
        reason = exc.strerror or type(exc).__name__  # never the file name: it is a host path
        return error_response(503, f"storage failure: {reason}", "service_unavailable", None, "storage_unavailable")

    async def _overloaded(_: Request, exc: Exception) -> JSONResponse:
        """Serve's back-pressure (a deployment's queue is full) and replicas that died or are not up yet: the
        request may be retried shortly, so 503 with Retry-After, never a 500."""
        log.warning("overloaded or unavailable deployment: %r", exc)
        response = error_response(503, "the cluster is overloaded or restarting a component; retry shortly",
                         "service_unavailable", None, "overloaded")
        response.headers["Retry-After"] = "2"
        return response

    for overload in SERVE_UNAVAILABLE:
        app.add_exception_handler(overload, _overloaded)

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        if raised_in_asyncpg(exc):
            return await _database_unavailable(request, exc)
        log.error("timed out: %r", exc)
        return error_response(504, "the request timed out inside the cluster", "server_error", None, "timeout")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if unavailable(exc):
            return await _overloaded(request, exc)
        log.exception("unhandled error")
        return error_response(500, f"internal error ({type(exc).__name__})", "server_error", None, "internal_error")
