"""Every error leaves the ingress as JSON in OpenAI's shape with a 4xx/503 status; never a stack trace."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster.store.db import DatabaseUnavailable
from cluster.content.parsing import DocumentError
from serve.schemas.common import UNION_TAGS, ErrorDetail, ErrorResponse

log = logging.getLogger("ray.serve.ragtune.ingress")

# Failures that mean "the database is not reachable right now", not "the request is wrong".
DB_DOWN = (DatabaseUnavailable, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
           asyncpg.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError, TimeoutError)


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def bounded(value: int | None, default: int, maximum: int, param: str) -> int:
    """`value` (or the default when absent), refused with a 400 above `maximum`."""
    value = default if value is None else value
    if value > maximum:
        raise invalid(f"{param} must be between 1 and {maximum}, got {value}", param=param)
    return value


def not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, message, param=param, code="not_found")


def _body(status: int, message: str, type: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    payload = ErrorResponse(error=ErrorDetail(message=message, type=type, param=param, code=code))
    return JSONResponse(status_code=status, content=payload.model_dump())


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.status, exc.message, exc.type, exc.param, exc.code)

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
        return _body(400, message, "invalid_request_error", where(first) or None, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return _body(exc.status_code, str(exc.detail), kind, None, kind if exc.status_code == 404 else None)

    @app.exception_handler(DocumentError)
    async def _document(_: Request, exc: DocumentError) -> JSONResponse:
        return _body(400, str(exc), "invalid_request_error", "documents", "invalid_document")

    for db_error in DB_DOWN:
        @app.exception_handler(db_error)
        async def _db(request: Request, exc: Exception) -> JSONResponse:
            log.warning("database unavailable: %s", exc)
            # Connections that saw the failure may be dead (server restarted): replace them all on next use.
            pool = getattr(request.app.state, "db_pool", None)
            if pool is not None:
                await pool.expire_connections()
            return _body(503, f"database unavailable: {exc}", "service_unavailable", None, "database_unavailable")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _body(500, f"internal error ({type(exc).__name__})", "server_error", None, "internal_error")
