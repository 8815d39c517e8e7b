"""Uploaded files (training data, eval test sets): content by file id in a directory or any fsspec URI (rows
live in Postgres)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    from cluster.settings import Settings


class FileStore:
    """Training files by id in a directory or any fsspec URI; a local write appears atomically (a rename)."""

    def __init__(self, uri: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.root = self.root.rstrip("/")
        self.protocol = uri.split("://", 1)[0] if "://" in uri else None

    @classmethod
    def from_settings(cls, settings: "Settings") -> "FileStore":
        return cls(settings.file_store_uri)

    def put(self, file_id: str, data: bytes) -> str:
        path = f"{self.root}/{file_id}.jsonl"
        if isinstance(self.fs, LocalFileSystem):
            Path(self.root).mkdir(parents=True, exist_ok=True)
            staging = Path(self.root) / f".incoming-{uuid.uuid4().hex}"
            try:
                staging.write_bytes(data)
                staging.rename(path)
            finally:
                staging.unlink(missing_ok=True)
            return path
        self.fs.pipe_file(path, data)
        return f"{self.protocol}://{path}" if self.protocol else path

    def delete(self, uri: str) -> None:
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.exists(path):
            fs.rm(path)

    def get(self, uri: str) -> bytes:
        fs, path = fsspec.core.url_to_fs(uri)
        return fs.cat_file(path)
