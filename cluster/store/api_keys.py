"""API keys: created and revoked by `ragtune keys`, checked by the ingress on every request (serve/api/auth.py).

A key is `rt-` + 32 random bytes (urlsafe base64); only its SHA-256 is stored. A fast hash is right for a key of
that entropy (nothing to brute-force, unlike a password) and keeps the per-request check one indexed lookup.
`use` keys call the model endpoints; `admin` keys also change the cluster (documents, files, fine-tuning, evals,
model deletion, metrics). The cluster's own key (`internal`) lets eval jobs call the ingress once user keys
exist; it does not count as a user key, so a cluster without user keys stays open to loopback clients.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import asyncpg

from cluster.store.local_secrets import state_secret

Scope = Literal["use", "admin"]
SCOPES: tuple[Scope, ...] = ("use", "admin")
INTERNAL_ID = "key-internal"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scope: Scope
    prefix: str
    internal: bool
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, needed: Scope) -> bool:
        return self.scope == "admin" or needed == "use"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _row(record: asyncpg.Record) -> ApiKey:
    return ApiKey(record["id"], record["name"], record["scope"], record["prefix"], record["internal"],
                  record["created_at"], record["revoked_at"])


def new_key() -> str:
    return "rt-" + secrets.token_urlsafe(32)


async def create(pool: asyncpg.Pool, name: str, scope: Scope) -> tuple[ApiKey, str]:
    """A new key: its record, and the key itself (shown once, never stored)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not name.strip() or len(name) > 100:
        raise ValueError("a key's name must be 1-100 characters")
    key = new_key()
    row = await pool.fetchrow("INSERT INTO api_keys (id, name, scope, prefix, hash) VALUES ($1, $2, $3, $4, $5) "
                              "RETURNING *", f"key-{uuid.uuid4().hex[:16]}", name, scope, key[:10], digest(key))
    return _row(row), key


async def list_keys(pool: asyncpg.Pool, include_revoked: bool = False) -> list[ApiKey]:
    rows = await pool.fetch("SELECT * FROM api_keys WHERE NOT internal AND ($1 OR revoked_at IS NULL) "
                            "ORDER BY created_at, id", include_revoked)
    return [_row(r) for r in rows]


async def revoke(pool: asyncpg.Pool, key_id: str) -> ApiKey | None:
    """Revoked at once (the next request with it is a 401); None if there is no such active key."""
    row = await pool.fetchrow("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
                              "AND NOT internal RETURNING *", key_id)
    return _row(row) if row else None


async def lookup(pool: asyncpg.Pool, key: str) -> ApiKey | None:
    """The active key with this value, if any."""
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE hash = $1 AND revoked_at IS NULL", digest(key))
    return _row(row) if row else None


async def user_keys_exist(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL AND NOT internal)")


async def internal_key(pool: asyncpg.Pool, state_dir: Path) -> str:
    """The cluster's own admin key, kept in the state directory (mode 0600) and registered by its hash."""
    key = state_secret(state_dir / "internal-api-key", new_key)
    await pool.execute(
        "INSERT INTO api_keys (id, name, scope, prefix, hash, internal) VALUES ($1, 'internal', 'admin', $2, $3, true) "
        "ON CONFLICT (id) DO UPDATE SET hash = EXCLUDED.hash, prefix = EXCLUDED.prefix, revoked_at = NULL",
        INTERNAL_ID, key[:10], digest(key))
    return key
