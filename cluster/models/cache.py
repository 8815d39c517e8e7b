"""The models cache: `prepare` builds the `cpu-dev` models (recipes in `models.recipes`) into it, once,
checksummed; `resolve` maps a profile's model reference to what `from_pretrained` takes.

Each model is built into a temporary directory and renamed into place with a manifest of file checksums, so a
half-built model is never used and a re-run is a no-op. Serving only ever calls `resolve`, which never downloads
or builds anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from cluster.models.recipes import RECIPES, Recipe

log = logging.getLogger("ragtune.models")

MANIFEST = "ragtune-manifest.json"
LOCAL_PREFIX = "local:"


class ModelNotPrepared(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def read_manifest(model_dir: Path) -> dict | None:
    try:
        return json.loads((model_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_prepared(model_dir: Path, recipe: Recipe, verify: bool = True) -> bool:
    manifest = read_manifest(model_dir)
    if not manifest or manifest.get("recipe") != recipe.name or manifest.get("version") != recipe.version:
        return False
    if recipe.inputs is not None and manifest.get("inputs") != recipe.inputs():
        return False
    return not verify or _checksums(model_dir) == manifest.get("files")



def resolve(ref: str, models_dir: Path) -> str:
    """A profile's model reference -> what `from_pretrained` takes. Never builds or downloads."""
    if not ref.startswith(LOCAL_PREFIX):
        return ref
    name = ref[len(LOCAL_PREFIX):]
    recipe = RECIPES.get(name)
    if recipe is None:
        raise ModelNotPrepared(f"unknown local model {name!r}; known: {', '.join(RECIPES)}")
    path = models_dir / name
    if not is_prepared(path, recipe, verify=False):
        raise ModelNotPrepared(f"model {name!r} is not prepared in {models_dir}: run `ragtune models prepare`")
    return str(path)


def prepare(models_dir: Path, names: list[str] | None = None, force: bool = False,
            echo: Callable[[str], None] = print) -> dict[str, dict]:
    """Build each named local model (default: all) unless a verified copy is already there."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    wanted = list(RECIPES) if not names else names
    unknown = [n for n in wanted if n not in RECIPES]
    if unknown:
        raise ModelNotPrepared(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    order: list[str] = []
    for name in wanted:  # dependencies first
        for dep in (*RECIPES[name].needs, name):
            if dep not in order:
                order.append(dep)
    models_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for i, name in enumerate(order, 1):
        recipe, target = RECIPES[name], models_dir / name
        if not force and is_prepared(target, recipe):
            echo(f"[{i}/{len(order)}] {name}: ready (checksums verified)")
            results[name] = read_manifest(target) or {}
            continue
        echo(f"[{i}/{len(order)}] {name}: building ...")
        started = time.monotonic()
        tmp = models_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            metrics = recipe.build(tmp, models_dir)
            manifest = {"recipe": name, "version": recipe.version, "built_at": time.time(),
                        **({"inputs": recipe.inputs()} if recipe.inputs else {}),
                        "build_seconds": round(time.monotonic() - started, 1), "metrics": metrics,
                        "files": _checksums(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        size_mb = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 1e6
        echo(f"[{i}/{len(order)}] {name}: built in {manifest['build_seconds']} s ({size_mb:.0f} MB)")
        results[name] = manifest
    return results
