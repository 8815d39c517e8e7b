"""Bulk ingestion of a directory, as a Ray Job:

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.ingest DIR

Each file goes through the one ingest pipeline (`cluster/content/ingest.py`, the same as `POST /v1/documents`):
chunked here with the embedder's tokenizer, embedded through the running `Embedder` deployment
(so its dynamic batching and autoscaling apply), and written one document per transaction: a failure in one
file never leaves a half-written document, and unchanged files are skipped without embedding.
Progress (files, chunks, chunks/s) is logged every few seconds; the exit code is non-zero if any file failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.content.parsing import SUFFIX_TYPES

log = logging.getLogger("ragtune.jobs.ingest")


@dataclass
class IngestConfig:
    directory: Path
    concurrency: int = 4
    progress_every_s: float = 5.0
    suffixes: tuple[str, ...] = tuple(SUFFIX_TYPES)
    db_retry_s: float = 120.0  # how long one document's write waits out a database that went away


@dataclass
class Progress:
    files_total: int
    started: float = field(default_factory=time.monotonic)
    files_done: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (f"files {self.files_done}/{self.files_total} (created {self.created}, updated {self.updated}, "
                f"unchanged {self.unchanged}, failed {len(self.failed)}) | chunks {self.chunks} | "
                f"{self.chunks / elapsed:.1f} chunks/s | {elapsed:.0f} s")


async def write_with_retry(ingester, pool, document, source: str, budget_s: float):  # noqa: ANN001, ANN201
    """Write one document, waiting out a database restart: each write is one transaction and an upsert by
    content hash, so a retry neither loses nor duplicates chunks. Gives up (raises) after `budget_s`."""
    import asyncpg

    from cluster.store.db import DatabaseUnavailable

    deadline, pause = time.monotonic() + budget_s, 0.5
    while True:
        try:
            return (await ingester.write(pool, [document]))[0]
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                asyncpg.exceptions.AdminShutdownError, DatabaseUnavailable, ConnectionError, OSError,
                asyncpg.InternalClientError) as exc:  # the last: a pooled connection the restart left mid-operation
            if time.monotonic() + pause > deadline:
                raise
            print(f"database unavailable writing {source} ({type(exc).__name__}); retrying in {pause:.1f} s",
                  flush=True)
            await asyncio.sleep(pause)  # a retry's backoff, not synchronisation
            pause = min(pause * 2, 5.0)
            await pool.expire_connections()  # the old connections died with the server


def find_files(config: IngestConfig) -> list[Path]:
    return sorted(p for p in config.directory.rglob("*")
                  if p.is_file() and p.suffix.lower() in config.suffixes and not p.name.startswith("."))


async def run(config: IngestConfig) -> Progress:
    import asyncpg
    import ray
    from ray import serve

    from cluster.content.ingest import Ingester
    from cluster.content.parsing import DocumentError
    from cluster.ops.handles import EmbedderClient
    from cluster.settings import Settings
    from cluster.store import db

    settings = Settings()
    files = find_files(config)
    progress = Progress(files_total=len(files))
    print(f"ingesting {len(files)} files from {config.directory} (profile {settings.profile})", flush=True)
    if not ray.is_initialized():
        ray.init(address="auto", log_to_driver=False)
    embedder = EmbedderClient(serve.get_deployment_handle("Embedder", app_name=settings.app_name),
                              settings.profile_spec.embedder.max_batch_size)
    ingester = Ingester.from_settings(settings, embedder.embed)
    pool = await db.open_pool(settings)
    gate = asyncio.Semaphore(config.concurrency)

    async def one(path: Path) -> None:
        async with gate:
            source = str(path.relative_to(config.directory))
            try:
                # The source is the path under the directory; the host's own path is not the reader's business.
                document = ingester.prepare_file(path.read_bytes(), source, SUFFIX_TYPES.get(path.suffix.lower()),
                                                 metadata={"collection": config.directory.name})
                result = await write_with_retry(ingester, pool, document, source, config.db_retry_s)
                setattr(progress, result.status, getattr(progress, result.status) + 1)
                progress.chunks += len(document.chunks) if result.status != "unchanged" else 0
            except (DocumentError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                progress.failed.append(f"{source}: {exc}")
                print(f"FAILED {source}: {exc}", flush=True)
            finally:
                progress.files_done += 1

    async def report() -> None:
        while True:
            await asyncio.sleep(config.progress_every_s)
            print(progress.line(), flush=True)

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(one(p) for p in files))
    finally:
        reporter.cancel()
        await pool.close()
    print(progress.line(), flush=True)
    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--concurrency", type=int, default=IngestConfig.concurrency)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = args.directory.expanduser().resolve()
    if not directory.is_dir():
        print(f"error: {directory} is not a directory", file=sys.stderr)
        return 2
    progress = asyncio.run(run(IngestConfig(directory=directory, concurrency=args.concurrency)))
    if progress.failed:
        print(f"{len(progress.failed)} file(s) failed:\n  " + "\n  ".join(progress.failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
