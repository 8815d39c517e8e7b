"""Only the database's own failures answer 503 database_unavailable; other I/O failures say what failed, and no
answer carries a host path or a traceback."""

from __future__ import annotations

import errno

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from cluster.store.db import DatabaseUnavailable
from serve.api import errors

SECRET_PATH = "/srv/ragtune/state/files/.incoming-1234"


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/disk-full")
    async def disk_full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", SECRET_PATH)

    @app.get("/database-gone")
    async def database_gone() -> None:
        # A real asyncpg failure: connecting to a socket directory that does not exist raises OSError inside asyncpg.
        await asyncpg.connect(f"postgresql://postgres@/postgres?host={SECRET_PATH}", timeout=2)

    @app.get("/database-unavailable")
    async def database_unavailable() -> None:
        raise DatabaseUnavailable(f"the embedded database in {SECRET_PATH} is not running")

    @app.get("/our-timeout")
    async def our_timeout() -> None:
        raise TimeoutError("a handle call took too long")

    @app.get("/bug")
    async def bug() -> None:
        raise KeyError(SECRET_PATH)

    @app.get("/queue-full")
    async def queue_full() -> None:
        from ray.serve.exceptions import BackPressureError

        raise BackPressureError(num_queued_requests=300, max_queued_requests=256)

    @app.get("/replica-died")
    async def replica_died() -> None:
        from ray.exceptions import ActorDiedError

        raise ActorDiedError()

    @app.get("/engine-dead")
    async def engine_dead() -> None:
        class EngineDeadError(RuntimeError):  # vLLM's, as Ray re-raises it in the caller (matched by name)
            pass

        raise EngineDeadError("EngineCore encountered an issue")

    @app.get("/library-says-where")
    async def library_says_where() -> None:
        from serve.services.errors import invalid

        raise invalid(f"cannot load {SECRET_PATH}/adapter_model.safetensors from 10.2.3.4:8000")

    return app


@pytest.fixture()
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/disk-full", 503, "storage_unavailable"),
    ("/database-gone", 503, "database_unavailable"),
    ("/database-unavailable", 503, "database_unavailable"),
    ("/our-timeout", 504, "timeout"),
    ("/bug", 500, "internal_error"),
    ("/queue-full", 503, "overloaded"),
    ("/replica-died", 503, "overloaded"),
    ("/engine-dead", 503, "overloaded"),
    ("/library-says-where", 400, "invalid_value"),
])
async def test_each_failure_gets_its_own_status_and_code(client: httpx.AsyncClient, path: str, status: int,
                                                         code: str) -> None:
    response = await client.get(path)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    assert SECRET_PATH not in response.text and "Traceback" not in response.text and "10.2.3.4" not in response.text
    if status == 503 and code == "overloaded":
        assert response.headers["retry-after"] == "2"  # back-pressure and dead replicas: retry, not a 500


async def test_a_full_disk_is_not_reported_as_the_database(client: httpx.AsyncClient) -> None:
    error = (await client.get("/disk-full")).json()["error"]
    assert "database" not in error["message"] and "No space left on device" in error["message"]


def test_a_list_cursor_is_the_row_id_its_object_id_names() -> None:
    from serve.services.errors import ApiError, page_cursor

    assert page_cursor(None, "ftevent", "an event id") is None and page_cursor("", "ftevent", "an event id") is None
    assert page_cursor("ftevent-42", "ftevent", "an event id") == 42
    assert page_cursor("outputitem-7", "outputitem", "an output item id") == 7
    for bad in ("evalevent-3", "ftevent-x", "42x"):
        try:
            page_cursor(bad, "ftevent", "an event id")
        except ApiError as exc:
            assert exc.status == 400 and exc.param == "after" and "(ftevent-N)" in exc.message
        else:
            raise AssertionError(f"{bad!r} was accepted")


async def test_a_stream_cut_by_a_dead_replica_ends_with_an_error_event() -> None:
    import json
    from types import SimpleNamespace

    from ray.exceptions import ActorDiedError

    from serve.api.generation import _stream
    from serve.schemas.generation import ChunkDelta

    async def pieces():  # noqa: ANN202
        yield "The answer "
        raise ActorDiedError()

    answer = SimpleNamespace(pieces=pieces())
    response = _stream(answer, lambda text, finish, **final: ChunkDelta(content=text), include_usage=False)  # type: ignore[arg-type]
    body = "".join([part async for part in response.body_iterator])
    events = [line.removeprefix("data: ") for line in body.split("\n\n") if line]
    assert json.loads(events[0])["content"] == "The answer "
    assert json.loads(events[1])["error"]["code"] == "stream_interrupted" and events[2] == "[DONE]"


async def test_a_stream_cut_by_anything_else_ends_with_an_internal_error_event() -> None:
    from types import SimpleNamespace

    from serve.api.generation import _stream
    from serve.schemas.generation import ChunkDelta

    async def pieces():  # noqa: ANN202
        yield "Half "
        raise KeyError(SECRET_PATH)

    response = _stream(SimpleNamespace(pieces=pieces()), lambda text, finish, **final: ChunkDelta(content=text),  # type: ignore[arg-type]
                       include_usage=False)
    body = "".join([part async for part in response.body_iterator])
    assert '"code":"internal_error"' in body and body.endswith("data: [DONE]\n\n") and SECRET_PATH not in body
