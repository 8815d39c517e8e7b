"""The adapter store: PEFT LoRA adapters by name, in a local directory or any fsspec URI (s3://, gs://).

Layout: `<root>/<name>/versions/<version>/` holds `adapter_config.json`, `adapter_model.safetensors` and
`ragtune.json` (metadata); `<root>/<name>/CURRENT` names the served version and is written last, in one write
(a rename on a local store, one object PUT on s3/gs). So a reader sees the old adapter or the new one, never new
config with old weights, on any store. The version is the digest of config and weights: replacing an adapter is
a new version, and engines load `name@version`, never old weights under a new name. The previous version is
kept for requests already resolved to it; older ones are pruned. Only safetensors weights are accepted
(`adapter_model.bin` is a pickle: loading one runs code). Stores written before versioned layout (the files
directly under `<name>/`) are still read. Engines load from a local copy under `cache_dir/<name>@<version>`,
verified against that version; copies of versions no longer in the store are pruned after a grace period.
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
WEIGHTS = ("adapter_model.safetensors",)
PICKLED_WEIGHTS = "adapter_model.bin"
METADATA = "ragtune.json"
CURRENT = "CURRENT"
VERSIONS = "versions"
CACHE_GRACE_S = 600.0  # a local copy of a version no longer in the store is removed after this long unused
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
    if weights is None and (path / PICKLED_WEIGHTS).exists():
        raise AdapterError(f"{PICKLED_WEIGHTS} is a pickle (loading it runs code): save the adapter as "
                           "safetensors (peft's save_pretrained does by default)")
    if weights is None or not (path / CONFIG).exists():
        raise AdapterError(f"{path.name} is not a PEFT adapter directory ({CONFIG} + {WEIGHTS[0]})")
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

    def _current(self, name: str) -> str | None:
        """The served version's directory under `<name>/`: `versions/<v>`, or "" for a pre-versioning adapter."""
        try:
            version = self.fs.cat_file(self._path(name, CURRENT)).decode().strip()
            return f"{VERSIONS}/{version}" if version else None
        except FileNotFoundError:
            pass
        if self.fs.exists(self._path(name, WEIGHTS[0])) and self.fs.exists(self._path(name, CONFIG)):
            return ""  # the flat layout of older stores
        return None

    def _digest(self, name: str, where: str) -> str:
        """sha256 of config + weights of a flat (pre-versioning) adapter, cached by the files' (size, mtime)."""
        files = [self._path(name, *filter(None, [where, f])) for f in (CONFIG, WEIGHTS[0])]
        infos = [self.fs.info(f) for f in files]
        key = (name, tuple((i.get("size"), i.get("mtime") or i.get("LastModified") or i.get("ETag")) for i in infos))
        if key not in self._digests:
            h = hashlib.sha256()
            for f in files:
                with self.fs.open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            self._digests[key] = h.hexdigest()[:16]
        return self._digests[key]

    def get(self, name: str) -> AdapterRef | None:
        if not NAME_RE.match(name):
            return None
        for _ in range(3):  # a pointer read just before two publishes may name a version pruned since: read again
            ref = self._read(name)
            if ref is not False:
                return ref
        return None

    def _read(self, name: str) -> "AdapterRef | None | bool":
        """The current version's ref; None if there is none; False if it vanished while being read."""
        try:
            where = self._current(name)
            if where is None:
                return None
            files = lambda f: self._path(name, *filter(None, [where, f]))  # noqa: E731
            config = json.loads(self.fs.cat_file(files(CONFIG)))
            metadata = json.loads(self.fs.cat_file(files(METADATA))) if self.fs.exists(files(METADATA)) else {}
            version = where.removeprefix(f"{VERSIONS}/") if where else self._digest(name, where)
            created = metadata.get("created") or self.fs.info(files(WEIGHTS[0])).get("mtime") or time.time()
            return AdapterRef(name=name, version=version,
                              base_model=metadata.get("base_model") or config.get("base_model_name_or_path"),
                              rank=config.get("r"), created=float(created), metadata=metadata)
        except (FileNotFoundError, ValueError):
            return False  # replaced (or deleted) between the reads

    def list(self) -> list[AdapterRef]:
        if not self.fs.exists(self.root):
            return []
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        refs = [self.get(n) for n in names if not n.startswith(".")]
        return [r for r in refs if r is not None]

    def _version_dir(self, name: str, version: str) -> str | None:
        """Where `name@version`'s files are, if the store still has that version."""
        if self.fs.exists(self._path(name, VERSIONS, version, WEIGHTS[0])):
            return self._path(name, VERSIONS, version)
        if self._current(name) == "" and self._digest(name, "") == version:
            return self._path(name)
        return None

    def local_copy(self, name: str, version: str) -> Path:
        """A verified local directory holding exactly `name@version`, for an engine to load. Touched on every use,
        which is what the pruning of copies of versions the store no longer has goes by."""
        target = self.cache_dir / f"{check_name(name)}@{version}"
        if target.exists():
            target.touch()
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f".incoming-{uuid.uuid4().hex}"
        try:
            source = self._version_dir(name, version)
            if source is None:
                raise AdapterError(f"adapter {name!r} changed while being loaded (version {version} is no longer "
                                   "in the store)")
            staging.mkdir()
            for f in (CONFIG, WEIGHTS[0]):
                self.fs.get_file(f"{source}/{f}", str(staging / f))
            if directory_version(staging) != version:
                raise AdapterError(f"adapter {name!r} changed while being loaded (wanted version {version})")
            staging.rename(target)
        except FileExistsError:
            pass  # another request materialized the same version first
        except OSError as exc:
            if not target.exists():
                raise AdapterError(f"adapter {name!r} could not be copied ({type(exc).__name__})") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.prune_cache()
        return target

    def export(self, name: str, target: Path) -> AdapterRef:
        """Copy the current version's files (config, weights, metadata) into the directory `target`."""
        ref = self.get(name)
        source = self._version_dir(name, ref.version) if ref else None
        if ref is None or source is None:
            raise AdapterError(f"adapter {name!r} is not in the store")
        for f in (CONFIG, WEIGHTS[0], METADATA):
            if self.fs.exists(f"{source}/{f}"):
                self.fs.get_file(f"{source}/{f}", str(target / f))
        return ref

    def prune_cache(self, grace_s: float = CACHE_GRACE_S) -> list[str]:
        """Remove local copies of versions the store no longer serves (replaced or deleted) once unused for
        `grace_s`: the cache held every version ever loaded. Returns what was removed."""
        if not self.cache_dir.exists():
            return []
        removed, now, current = [], time.time(), {}
        for copy in self.cache_dir.iterdir():
            name, sep, version = copy.name.rpartition("@")
            if not sep or copy.name.startswith("."):
                continue
            if name not in current:
                ref = self.get(name)
                current[name] = ref.version if ref else None
            if current[name] != version and now - copy.stat().st_mtime > grace_s:
                shutil.rmtree(copy, ignore_errors=True)
                removed.append(copy.name)
        return removed

    def put(self, name: str, source: Path, metadata: dict[str, Any] | None = None) -> AdapterRef:
        """Publish a PEFT adapter directory under `name`, replacing any previous version: the version's files
        first, then the CURRENT pointer in one write, so readers see the old version or the new one whole."""
        check_name(name)
        version = directory_version(source)
        before = self.get(name)
        files = {CONFIG: (source / CONFIG).read_bytes(), WEIGHTS[0]: (source / WEIGHTS[0]).read_bytes(),
                 METADATA: json.dumps({"created": time.time()} | (metadata or {}), indent=2, sort_keys=True).encode()}
        if isinstance(self.fs, LocalFileSystem):
            versions = Path(self.root) / name / VERSIONS
            versions.mkdir(parents=True, exist_ok=True)
            if (versions / version).exists():  # the same content again: only its metadata is new (atomically)
                fresh = versions / version / f".{METADATA}-{uuid.uuid4().hex}"
                fresh.write_bytes(files[METADATA])
                fresh.replace(versions / version / METADATA)
            else:
                staging = versions / f".incoming-{uuid.uuid4().hex}"
                staging.mkdir()
                for f, data in files.items():
                    (staging / f).write_bytes(data)
                try:
                    staging.rename(versions / version)
                except OSError:  # published by another writer meanwhile: same content
                    shutil.rmtree(staging, ignore_errors=True)
            pointer = Path(self.root) / name / f".{CURRENT}-{uuid.uuid4().hex}"
            pointer.write_text(version)
            pointer.replace(Path(self.root) / name / CURRENT)  # atomic
        else:
            for f, data in files.items():
                self.fs.pipe_file(self._path(name, VERSIONS, version, f), data)
            self.fs.pipe_file(self._path(name, CURRENT), version.encode())  # one object: atomic on s3/gs
        self._retire(name, {version} | ({before.version} if before else set()))
        ref = self.get(name)
        assert ref is not None
        return ref

    def _retire(self, name: str, keep: set[str]) -> None:
        """Keep the new version and the one it replaced; remove older ones and any pre-versioning files."""
        for legacy in (CONFIG, WEIGHTS[0], PICKLED_WEIGHTS, METADATA):
            if self.fs.exists(self._path(name, legacy)):
                self.fs.rm(self._path(name, legacy))
        try:
            entries = self.fs.ls(self._path(name, VERSIONS), detail=False)
        except FileNotFoundError:
            return
        for entry in entries:
            version = entry.rstrip("/").rsplit("/", 1)[-1]
            if not version.startswith(".") and version not in keep:
                self.fs.rm(entry, recursive=True)

    def delete(self, name: str) -> bool:
        """The pointer goes first (new requests get 404 at once), then the files."""
        if self.get(name) is None:
            return False
        if self.fs.exists(self._path(name, CURRENT)):
            self.fs.rm(self._path(name, CURRENT))
        self.fs.rm(self._path(name), recursive=True)
        return True
