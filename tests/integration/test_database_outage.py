"""A database that goes away answers 503 (never a 500 trace) and the ingress recovers when it is back.
Marked `disruptive`: it stops the session's database for a moment, so the collection hook runs it last."""

from __future__ import annotations

import httpx
import pytest

from cluster.store import db
from tests.support.helpers import api_error


@pytest.mark.disruptive
def test_database_outage_is_a_503_and_recovers(api: httpx.Client, live) -> None:  # noqa: ANN001
    assert api.post("/v1/search", json={"query": "vector index"}).status_code == 200
    before = api.get("/v1/documents").json()["total"]
    assert db.stop_embedded(live.pgdata)
    try:
        error = api_error(api.post("/v1/search", json={"query": "vector index"}), 503)
        assert error["code"] == "database_unavailable"
        api_error(api.post("/v1/documents", json={"content": "written during the outage"}), 503)
        api_error(api.get("/v1/documents"), 503)
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable")
    finally:
        db.start_embedded(live.pgdata)
    # The failures expired the pool's dead connections: the very next requests succeed, and nothing was written.
    assert api.get("/readyz").status_code == 200
    assert api.post("/v1/search", json={"query": "vector index"}).status_code == 200
    assert api.get("/v1/documents").json()["total"] == before
