"""API keys: the rules (open paths, loopback while no user key exists, scopes, revocation) on a private embedded
Postgres through the real middleware, then the live cluster through `ragtune keys` and the official client."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from cluster.settings import Settings
from cluster.store import api_keys, db
from serve.api.auth import ApiKeyAuth, required_scope
from tests.support.helpers import api_error, ragtune as run


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/openapi.json", None),
    ("POST", "/v1/chat/completions", "use"), ("POST", "/v1/completions", "use"), ("POST", "/v1/embeddings", "use"),
    ("POST", "/v1/search", "use"), ("POST", "/v1/rerank", "use"), ("GET", "/v1/models", "use"),
    ("GET", "/v1/models/ft:a:b:c", "use"), ("GET", "/v1/documents", "use"),
    ("POST", "/v1/documents", "admin"), ("DELETE", "/v1/documents/x", "admin"), ("POST", "/v1/files", "admin"),
    ("GET", "/v1/files", "admin"), ("POST", "/v1/fine_tuning/jobs", "admin"), ("DELETE", "/v1/models/x", "admin"),
    ("POST", "/v1/evals", "admin"), ("GET", "/metrics", "admin"), ("GET", "/v1/anything-new", "admin"),
])
def test_each_endpoint_needs_its_scope(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    pgdata = Path(tempfile.mkdtemp(prefix="keys-", dir="/tmp")) / "pg"
    pool = await db.connect(db.start_embedded(pgdata), 8, "test-embedder")
    try:
        yield pool
    finally:
        await pool.close()
        db.stop_embedded(pgdata)


def _app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI()

    async def get_pool() -> asyncpg.Pool:
        return pool

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def anything(path: str) -> dict[str, str]:
        return {"ok": path}

    app.add_middleware(ApiKeyAuth, pool=get_pool)
    return app


async def _status(client: httpx.AsyncClient, method: str, path: str, key: str | None = None) -> int:
    return (await client.request(method, path, headers={"Authorization": f"Bearer {key}"} if key else None)
            ).status_code


def _client(app: FastAPI, host: str) -> httpx.AsyncClient:
    """In this event loop (the pool's), from this client address."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5000)), base_url="http://t")


async def test_the_rules_by_client_address_scope_and_revocation(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM api_keys")
    app = _app(pool)
    async with _client(app, "127.0.0.1") as local, _client(app, "10.0.0.7") as remote:
        # No user key: loopback is served (any header), the network is not, probes are open to all.
        assert await _status(local, "POST", "/v1/documents") == 200
        assert await _status(local, "GET", "/v1/models", "junk") == 200
        assert await _status(remote, "GET", "/v1/models") == 401 and await _status(remote, "GET", "/healthz") == 200
        internal = await api_keys.internal_key(pool, Path(tempfile.mkdtemp()))
        assert not await api_keys.user_keys_exist(pool)  # the cluster's own key opens nothing by existing
        assert await _status(remote, "POST", "/v1/evals", internal) == 200  # but it works where keys are needed

        use, use_key = await api_keys.create(pool, "app", "use")
        admin, admin_key = await api_keys.create(pool, "ops", "admin")
        for client in (local, remote):  # once a user key exists, loopback needs one too
            assert await _status(client, "GET", "/v1/models") == 401
            assert await _status(client, "GET", "/v1/models", "rt-not-a-key") == 401
            assert await _status(client, "GET", "/v1/models", use_key) == 200
            assert await _status(client, "POST", "/v1/documents", use_key) == 403
            assert await _status(client, "POST", "/v1/documents", admin_key) == 200
            assert await _status(client, "GET", "/readyz") == 200
        refused = await remote.post("/v1/fine_tuning/jobs", headers={"Authorization": f"Bearer {use_key}"})
        error = refused.json()["error"]
        assert error["code"] == "insufficient_scope" and "admin" in error["message"]
        assert (await remote.get("/v1/models")).headers["www-authenticate"] == "Bearer"

        assert (await api_keys.revoke(pool, use.id)) is not None and await api_keys.revoke(pool, use.id) is None
        assert await _status(remote, "GET", "/v1/models", use_key) == 401  # at once
        assert await api_keys.revoke(pool, api_keys.INTERNAL_ID) is None  # not revocable by hand
        stored = await pool.fetch("SELECT hash, prefix FROM api_keys")
        assert all(use_key not in (r["hash"], r["prefix"]) and admin_key != r["hash"] for r in stored)
        await api_keys.revoke(pool, admin.id)
        assert await _status(local, "GET", "/v1/models") == 200  # no user key left: loopback is open again


@pytest.fixture
def keys(live: Settings) -> Iterator[list[str]]:
    """Ids of keys a test created on the live cluster: revoked afterwards, so other tests run without keys."""
    created: list[str] = []
    yield created
    for key_id in created:
        run("keys", "revoke", key_id)


def _create(scope: str, created: list[str]) -> str:
    result = run("keys", "create", "--name", f"test-{scope}", "--scope", scope)
    assert result.returncode == 0, result.stderr
    key_id = re.search(r"created (key-\w+)", result.stdout).group(1)  # type: ignore[union-attr]
    created.append(key_id)
    return result.stdout.strip().splitlines()[-1]


def test_keys_on_the_live_cluster_with_the_openai_client(live: Settings, api: httpx.Client,
                                                         keys: list[str]) -> None:
    from openai import AuthenticationError, OpenAI, PermissionDeniedError

    use_key, admin_key = _create("use", keys), _create("admin", keys)
    listed = run("keys", "list").stdout
    assert keys[0] in listed and keys[1] in listed and use_key not in listed and admin_key not in listed

    with OpenAI(base_url=f"{live.http_url}/v1", api_key=use_key, max_retries=0) as client:
        assert any(m.id for m in client.models.list().data)
        with pytest.raises(PermissionDeniedError):
            client.files.list()
    with OpenAI(base_url=f"{live.http_url}/v1", api_key="rt-wrong", max_retries=0) as client:
        with pytest.raises(AuthenticationError):
            client.models.list()
    assert api_error(api.get("/v1/models"), 401)["code"] == "invalid_api_key"
    admin_headers: dict[str, Any] = {"Authorization": f"Bearer {admin_key}"}
    assert api.get("/v1/files", headers=admin_headers).status_code == 200
    assert api.get("/healthz").status_code == 200

    assert run("keys", "revoke", keys[0]).returncode == 0
    assert run("keys", "revoke", keys[0]).returncode == 2  # already revoked
    assert api_error(api.get("/v1/models", headers={"Authorization": f"Bearer {use_key}"}), 401)
    assert run("keys", "create", "--name", "x", "--scope", "root").returncode == 2
