"""Bad values against the live cluster: each is a 4xx in OpenAI's shape that names the field, in bounded time,
and nothing is written. These were 500s (NaN in metadata, NUL in text: jsonb and Postgres text refuse them)."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import httpx
import pytest

from cluster.settings import Settings
from tests.support.helpers import api_error


def _doc_count(api: httpx.Client) -> int:
    return api.get("/v1/documents", params={"limit": 1}).json()["total"]


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"content": "Zebras.", "metadata": {"team": "zoo", "score": NaN}}', "metadata.score"),
    (b'{"documents": [{"content": "ok"}, {"content": "x", "metadata": {"w": Infinity}}]}', "documents[1].metadata.w"),
    (b'{"content": "Zebras \\u0000 stripes."}', "content"),
    (b'{"content": "Zebras.", "source": "a\\u0000.md"}', "source"),
    (b'{"content": "Zebras.", "title": "\\u0000"}', "title"),
])
def test_nan_and_nul_in_documents_are_400_and_write_nothing(api: httpx.Client, raw: bytes, field: str) -> None:
    before = _doc_count(api)
    response = api.post("/v1/documents", content=raw, headers={"content-type": "application/json"})
    assert api_error(response, 400)["param"] == field
    assert _doc_count(api) == before


def test_nul_in_a_query_or_an_upload_is_a_4xx(api: httpx.Client) -> None:
    assert api_error(api.post("/v1/search", content=b'{"query": "zebra\\u0000"}',
                              headers={"content-type": "application/json"}), 400)["param"] == "query"
    late_nul = b"# Zebras\n\n" + b"Zebras have stripes. " * 1000 + b"\x00"  # past the first 8 KB
    assert "NUL" in api_error(api.post("/v1/documents/upload", files={"files": ("z.md", late_nul)}), 415)["message"]
    bad_meta = api.post("/v1/documents/upload", files={"files": ("z.md", b"# Z\n\nZebras.")},
                        data={"metadata": '{"score": NaN}'})
    assert api_error(bad_meta, 400)["param"] == "metadata"


def test_oversized_bodies_are_refused_by_their_header_before_being_read(live: Settings) -> None:
    """A 40 MB Content-Length with no body behind it: a 413 comes back at once, so nothing was read."""
    url = urlparse(live.http_url)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40000000\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):  # headers, then the JSON body
            if not (data := conn.recv(65536)):
                break
            reply += data
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert str(live.http.max_json_bytes) in reply and '"request_too_large"' in reply


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/rerank", {"query": "q", "documents": ["d"] * 1001}, "documents"),
    ("/v1/rerank", {"query": "q" * 4001, "documents": ["d"]}, "query"),
    ("/v1/embeddings", {"input": ["x"] * 2049}, "input"),
    ("/v1/search", {"query": "q" * 4001}, "query"),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}], "seed": 2**63}, "seed"),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}] * 257}, "messages"),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "x" * 200_001}]}, None),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 5},
     "stop"),
])
def test_requests_that_ask_for_unbounded_work_are_400(api: httpx.Client, path: str, body: dict,
                                                      field: str | None) -> None:
    error = api_error(api.post(path, json=body), 400)
    assert error["param"] == field, error
    assert "limit" in error["message"] or "at most" in error["message"] or "less than" in error["message"]


def test_a_suffix_that_looks_like_a_flag_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/fine_tuning/jobs", json={"model": "x", "training_file": "file-x", "suffix": "-rm"})
    assert api_error(response, 400)["param"] == "suffix"
