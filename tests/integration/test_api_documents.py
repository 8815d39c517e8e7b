"""Documents over HTTP against the real cluster: idempotent upserts, atomic replacement, deletion, bad input."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cluster.settings import Settings
from tests.support.helpers import api_error
from tests.support.hostile import WORST_CASES


def _doc_count(api: httpx.Client) -> int:
    return api.get("/v1/documents", params={"limit": 1}).json()["total"]


def test_create_unchanged_update_delete_cycle(api: httpx.Client) -> None:
    source = f"cycle-{uuid.uuid4()}.md"
    v1 = "# Zebra care\n\nZebras need a quinoa-free diet and weekly stripe polishing."
    created = api.post("/v1/documents", json={"source": source, "content": v1, "metadata": {"team": "zoo"}})
    assert created.status_code == 200, created.text
    first = created.json()["data"][0]
    assert first["status"] == "created" and first["document"]["chunk_count"] == 1
    doc_id = first["document"]["id"]

    again = api.post("/v1/documents", json={"source": source, "content": v1, "metadata": {"team": "zoo"}}).json()
    assert again["unchanged"] == 1 and again["data"][0]["document"]["id"] == doc_id
    assert again["data"][0]["document"]["updated_at"] == first["document"]["updated_at"]

    v2 = "# Zebra care\n\nZebras now eat hay.\n\n## Stripes\n\nStripe polishing is monthly."
    updated = api.post("/v1/documents", json={"source": source, "content": v2, "metadata": {"team": "zoo"}}).json()
    assert updated["updated"] == 1 and updated["data"][0]["document"]["id"] == doc_id
    detail = api.get(f"/v1/documents/{doc_id}", params={"include_chunks": True}).json()
    texts = " ".join(c["text"] for c in detail["chunks"])
    assert "hay" in texts and "quinoa" not in texts  # old chunks are gone, not appended to

    hits = api.post("/v1/search", json={"query": "zebra stripe polishing", "top_n": 3}).json()["hits"]
    assert hits and hits[0]["document_id"] == doc_id

    assert api.delete(f"/v1/documents/{doc_id}").json() == {"id": doc_id, "object": "document", "deleted": True}
    api_error(api.get(f"/v1/documents/{doc_id}"), 404)
    api_error(api.delete(f"/v1/documents/{doc_id}"), 404)
    hits = api.post("/v1/search", json={"query": "zebra stripe polishing", "top_n": 3}).json()["hits"]
    assert all(h["document_id"] != doc_id for h in hits)


def test_listing_is_paginated_with_a_total(api: httpx.Client, seeded: dict[str, str]) -> None:
    total = _doc_count(api)
    assert total >= len(seeded)
    page1 = api.get("/v1/documents", params={"limit": 2, "offset": 0}).json()
    page2 = api.get("/v1/documents", params={"limit": 2, "offset": 2}).json()
    assert page1["total"] == total and len(page1["data"]) == 2 and page1["limit"] == 2
    assert not {d["id"] for d in page1["data"]} & {d["id"] for d in page2["data"]}
    api_error(api.get("/v1/documents", params={"limit": 0}), 400)
    api_error(api.get("/v1/documents", params={"offset": -1}), 400)


def test_multipart_upload_of_files(api: httpx.Client) -> None:
    name = f"upload-{uuid.uuid4()}.html"
    html = b"<html><head><title>Otters</title></head><body><h1>Otters</h1><p>Otters hold hands.</p></body></html>"
    response = api.post("/v1/documents/upload", files=[("files", (name, html, "text/html"))],
                        data={"metadata": '{"via": "upload"}'})
    assert response.status_code == 200, response.text
    doc = response.json()["data"][0]["document"]
    assert doc["title"] == "Otters" and doc["content_type"] == "text/html" and doc["metadata"] == {"via": "upload"}
    api.delete(f"/v1/documents/{doc['id']}")


@pytest.mark.parametrize("files,status,code", [
    ([("files", ("a.pdf", b"%PDF-1.7\x00\x00binary", "application/pdf"))], 415, "unsupported_media"),
    ([("files", ("latin1.txt", b"caf\xe9", "text/plain"))], 415, "unsupported_media"),
])
def test_non_text_uploads_are_refused(api: httpx.Client, files: list, status: int, code: str) -> None:
    before = _doc_count(api)
    assert api_error(api.post("/v1/documents/upload", files=files), status)["code"] == code
    assert _doc_count(api) == before


@pytest.mark.parametrize("body,param", [
    ({"content": ""}, "documents[0]"),
    ({"content": "   \n  "}, "documents[0]"),
    ({"content": "x", "content_type": "application/pdf"}, "content_type"),
    ({"documents": []}, "documents"),
    ({"content": "x", "unknown_field": 1}, None),
    ({"content": 42}, None),
])
def test_invalid_documents_get_400(api: httpx.Client, body: dict, param: str | None) -> None:
    before = _doc_count(api)
    error = api_error(api.post("/v1/documents", json=body), 400)
    if param:
        assert error["param"] == param
    assert _doc_count(api) == before


def test_a_batch_with_one_bad_document_writes_nothing(api: httpx.Client) -> None:
    before = _doc_count(api)
    good = {"source": f"good-{uuid.uuid4()}", "content": "A perfectly fine document about kiwis."}
    bad = {"source": f"bad-{uuid.uuid4()}", "content": "# Heading only"}
    assert api_error(api.post("/v1/documents", json={"documents": [good, bad]}), 400)["param"] == "documents[1]"
    dup = api.post("/v1/documents", json={"documents": [good, dict(good, content="other text")]})
    assert "more than once" in api_error(dup, 400)["message"]
    assert _doc_count(api) == before


def test_oversized_and_too_many_documents_get_413(api: httpx.Client, live) -> None:  # noqa: ANN001
    limits = live.ingest
    big = "word " * (limits.max_document_bytes // 5 + 10)
    assert api_error(api.post("/v1/documents", json={"content": big}), 413)["code"] == "document_too_large"
    many = [{"content": f"doc {i}"} for i in range(limits.max_documents_per_request + 1)]
    assert api_error(api.post("/v1/documents", json={"documents": many}), 413)["code"] == "too_many_documents"


def test_unknown_and_malformed_ids(api: httpx.Client) -> None:
    api_error(api.get(f"/v1/documents/{uuid.uuid4()}"), 404)
    api_error(api.get("/v1/documents/not-a-uuid"), 400)
    api_error(api.get("/v1/no-such-route"), 404)


def test_healthz_answers_while_hostile_documents_are_parsed(live: Settings) -> None:
    """Parsing runs beside the event loop and never holds the GIL for long: the ingress keeps answering while
    documents at the size limit that used to freeze it (a 10 KB heading took 5.6 s) are parsed and refused."""
    hostile = [WORST_CASES[name][1] for name in
               ("atx heading, a run of spaces", "unclosed html comments", "one paragraph per line")]
    with httpx.Client(base_url=live.http_url, timeout=120) as poster, \
            httpx.Client(base_url=live.http_url, timeout=120) as prober, ThreadPoolExecutor(1) as pool:
        posted = pool.submit(lambda: [poster.post("/v1/documents", json={"content": text, "content_type":
                                                  "text/markdown"}) for text in hostile])
        waits: list[float] = []
        while not posted.done():
            started = time.perf_counter()
            assert prober.get("/healthz").status_code == 200
            waits.append(time.perf_counter() - started)
        responses = posted.result()
    for response in responses:
        message = api_error(response, 400)["message"]
        assert "no text content" in message or "more than the limit" in message, message
    assert len(waits) >= 5, waits  # the probe ran while the documents were being parsed
    assert max(waits) < 1.0, waits
