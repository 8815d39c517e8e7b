"""The body guard in front of every router: size limits by header and while streaming (413), and NaN/Infinity or
NUL characters in JSON refused with the field named (400), all in OpenAI's error shape; good bodies pass intact."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from fastapi import FastAPI, File, UploadFile
from fastapi.testclient import TestClient

from serve.api import errors
from serve.api.body_guard import BodyGuard, body_problem

JSON_LIMIT, UPLOAD_LIMIT = 1_000, 5_000


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(BodyGuard, limits=lambda: (JSON_LIMIT, UPLOAD_LIMIT))
    seen: dict[str, Any] = {}

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.post("/upload")
    async def upload(file: UploadFile = File(...)) -> dict[str, int]:
        return {"bytes": len(await file.read())}

    with TestClient(app) as c:
        c.seen = seen  # type: ignore[attr-defined]
        yield c


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"metadata": {"team": "a", "score": NaN}}', "metadata.score"),
    (b'{"documents": [{"content": "ok"}, {"content": "x", "metadata": {"w": -Infinity}}]}',
     "documents[1].metadata.w"),
    (b'{"temperature": Infinity}', "temperature"),
    (b'{"documents": [{"content": "a\\u0000b"}]}', "documents[0].content"),
    (b'{"query": "\\u0000"}', "query"),
    (b'{"metadata": {"k\\u0000": "v"}}', "metadata"),
])
def test_nan_infinity_and_nul_are_400_naming_the_field(client: TestClient, raw: bytes, field: str) -> None:
    error = _error(client.post("/echo", content=raw, headers={"content-type": "application/json"}), 400)
    assert error["param"] == field and error["message"].startswith(f"{field}: ")


def test_good_json_passes_unchanged_even_when_strings_mention_nan(client: TestClient) -> None:
    body = {"text": "NaN and Infinity are words here; so is \\u0000", "n": [1.5, -2], "nested": {"a": None}}
    response = client.post("/echo", json=body)
    assert response.status_code == 200 and response.json() == body


def test_bodies_over_the_limit_are_413_by_header_and_while_streaming(client: TestClient) -> None:
    big = b'{"text": "' + b"x" * JSON_LIMIT + b'"}'
    error = _error(client.post("/echo", content=big, headers={"content-type": "application/json"}), 413)
    assert str(JSON_LIMIT) in error["message"] and error["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        yield b'{"text": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}'

    streamed = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert _error(streamed, 413)["code"] == "request_too_large"


def test_uploads_are_streamed_and_cut_at_their_own_limit(client: TestClient) -> None:
    ok = client.post("/upload", files={"file": ("a.txt", b"z" * (UPLOAD_LIMIT - 500))})
    assert ok.status_code == 200 and ok.json() == {"bytes": UPLOAD_LIMIT - 500}  # above the JSON limit is fine
    error = _error(client.post("/upload", files={"file": ("a.txt", b"z" * (UPLOAD_LIMIT + 1))}), 413)
    assert str(UPLOAD_LIMIT) in error["message"]

    def multipart() -> Iterator[bytes]:  # chunked, no Content-Length: cut while FastAPI parses the form
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        for _ in range(UPLOAD_LIMIT // 100 + 1):
            yield b"z" * 100
        yield b"\r\n--b--\r\n"

    streamed = client.post("/upload", content=multipart(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert _error(streamed, 413)["code"] == "request_too_large"


def test_the_problem_finder_ignores_what_is_not_json() -> None:
    assert body_problem(b"NaN, not json {") is None  # the router's validation answers that
    assert body_problem(b'{"a": 1}') is None
    assert body_problem(b"[" * 100_000 + b"NaN" + b"]" * 100_000) is None  # too deep for json: not our 500
