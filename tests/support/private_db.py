"""A private embedded Postgres + pgvector for tests that need the real database but not the live cluster."""

from __future__ import annotations

import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import asyncpg

from cluster.store import db


@asynccontextmanager
async def private_pool(prefix: str, dim: int = 8, max_size: int = 8) -> AsyncIterator[asyncpg.Pool]:
    """A fresh server in a temp directory, migrated for a `dim`-dimensional test embedder; stopped at the end."""
    pgdata = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")) / "pg"
    url = db.start_embedded(pgdata)
    pool = await db.connect(url, dim, "test-embedder", max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()
        db.stop_embedded(pgdata)
