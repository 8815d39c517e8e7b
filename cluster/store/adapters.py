"""The adapter store: PEFT LoRA adapters by name, in a local directory or any fsspec URI (s3://, gs://).

Layout: `<root>/<name>/adapter_config.json`, `adapter_model.safetensors` and optional `ragtune.json` (metadata).
An adapter is identified by name AND content version (a digest of its config and weights), so replacing one
under the same name is a new version: engines load `name@version`, never the old weights under the new name.
Engines load from a local copy under `cache_dir/<name>@<version>`, verified against that version.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    from cluster.settings import Settings

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
METADATA = "ragtune.json"
# Letters, digits and . _ - : (OpenAI's `ft:<base>:<suffix>:<id>` names); '@' separates name and version.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class AdapterError(ValueError):
    """An adapter that is missing, malformed or changed while being read."""


@dataclass(frozen=True)
class AdapterRef:
    name: str
    version: str
    base_model: str | None
    rank: int | None
    created: float
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def model_id(self) -> str:
        """What engines and Serve multiplexing key on: a replaced adapter is a different model id."""
        return f"{self.name}@{self.version}"


def parse_model_id(model_id: str) -> tuple[str, str]:
    name, sep, version = model_id.rpartition("@")
    if not sep or not NAME_RE.match(name) or not version:
        raise AdapterError(f"not an adapter model id: {model_id!r}")
    return name, version


def directory_version(path: Path) -> str:
    """The version a local PEFT directory would have in the store: the digest of its config and weights."""
    weights = next((w for w in WEIGHTS if (path / w).exists()), None)
    if weights is None or not (path / CONFIG).exists():
        raise AdapterError(f"{path} is not a PEFT adapter directory ({CONFIG} + adapter weights)")
    h = hashlib.sha256()
    for f in (CONFIG, weights):
        h.update((path / f).read_bytes())
    return h.hexdigest()[:16]


def fine_tuned_name(base_model: str, suffix: str, short_id: str) -> str:
    """OpenAI's naming, `ft:<base>:<suffix>:<short id>`, with the base's last path part ('org/Model' -> 'Model')."""
    base = base_model.removeprefix("local:").rsplit("/", 1)[-1]
    return check_name(f"ft:{base}:{suffix}:{short_id}")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise AdapterError(f"invalid adapter name {name!r}: use letters, digits and . _ - : (at most 128)")
    return name


class AdapterStore:
    def __init__(self, uri: str, cache_dir: Path) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.root = self.root.rstrip("/")
        self.cache_dir = cache_dir
        self._digests: dict[tuple[str, Any], str] = {}

    @classmethod
    def from_settings(cls, settings: "Settings") -> "AdapterStore":
        """The store every process opens: `RAGTUNE_ADAPTER_STORE` (or state_dir/adapters), local copies in
        state_dir/adapter-cache."""
        return cls(settings.adapter_store_uri, settings.adapter_cache_dir)

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def _weights(self, name: str) -> str | None:
        for weights in WEIGHTS:
            if self.fs.exists(self._path(name, weights)):
                return weights
        return None

    def _digest(self, name: str, weights: str) -> str:
        """sha256 of config + weights, cached by the files' (size, mtime) so a request costs two stats."""
        infos = [self.fs.info(self._path(name, f)) for f in (CONFIG, weights)]
        key = (name, tuple((i.get("size"), i.get("mtime") or i.get("LastModified") or i.get("ETag")) for i in infos))
        if key not in self._digests:
            h = hashlib.sha256()
            for f in (CONFIG, weights):
                with self.fs.open(self._path(name, f), "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            self._digests[key] = h.hexdigest()[:16]
        return self._digests[key]

    def get(self, name: str) -> AdapterRef | None:
        if not NAME_RE.match(name):
            return None
        try:
            weights = self._weights(name)
            if weights is None or not self.fs.exists(self._path(name, CONFIG)):
                return None
            config = json.loads(self.fs.cat_file(self._path(name, CONFIG)))
            meta_path = self._path(name, METADATA)
            metadata = json.loads(self.fs.cat_file(meta_path)) if self.fs.exists(meta_path) else {}
            created = self.fs.info(self._path(name, weights)).get("mtime") or time.time()
            return AdapterRef(name=name, version=self._digest(name, weights),
                              base_model=metadata.get("base_model") or config.get("base_model_name_or_path"),
                              rank=config.get("r"), created=float(created), metadata=metadata)
        except FileNotFoundError:
            return None  # deleted or replaced between the checks: absent for this request

    def list(self) -> list[AdapterRef]:
        if not self.fs.exists(self.root):
            return []
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        refs = [self.get(n) for n in names if not n.startswith(".")]
        return [r for r in refs if r is not None]

    def local_copy(self, name: str, version: str) -> Path:
        """A verified local directory holding exactly `name@version`, for an engine to load."""
        target = self.cache_dir / f"{check_name(name)}@{version}"
        if target.exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f".incoming-{uuid.uuid4().hex}"
        try:
            weights = self._weights(name)
            if weights is None:
                raise AdapterError(f"adapter {name!r} is not in the store")
            staging.mkdir()
            for f in (CONFIG, weights):
                self.fs.get_file(self._path(name, f), str(staging / f))
            if directory_version(staging) != version:
                raise AdapterError(f"adapter {name!r} changed while being loaded (wanted version {version})")
            staging.rename(target)
        except FileExistsError:
            pass  # another request materialized the same version first
        except OSError as exc:
            if not target.exists():
                raise AdapterError(f"adapter {name!r}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def put(self, name: str, source: Path, metadata: dict[str, Any] | None = None) -> AdapterRef:
        """Publish a PEFT adapter directory under `name`, replacing any previous version.

        On a local store the new version appears atomically (a rename); readers see the old or the new one.
        """
        check_name(name)
        weights = next((w for w in WEIGHTS if (source / w).exists()), None)
        if weights is None or not (source / CONFIG).exists():
            raise AdapterError(f"{source} is not a PEFT adapter directory ({CONFIG} + adapter weights)")
        files = {CONFIG: (source / CONFIG).read_bytes(), weights: (source / weights).read_bytes(),
                 METADATA: json.dumps(metadata or {}, indent=2, sort_keys=True).encode()}
        if isinstance(self.fs, LocalFileSystem):
            root = Path(self.root)
            root.mkdir(parents=True, exist_ok=True)
            staging, old = root / f".incoming-{uuid.uuid4().hex}", root / f".retired-{uuid.uuid4().hex}"
            staging.mkdir()
            for f, data in files.items():
                (staging / f).write_bytes(data)
            if (root / name).exists():
                (root / name).rename(old)
            staging.rename(root / name)
            shutil.rmtree(old, ignore_errors=True)
        else:
            for f, data in files.items():
                self.fs.pipe_file(self._path(name, f), data)
        ref = self.get(name)
        assert ref is not None
        return ref

    def delete(self, name: str) -> bool:
        if self.get(name) is None:
            return False
        self.fs.rm(self._path(name), recursive=True)
        return True
