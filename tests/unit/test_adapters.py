"""The adapter store: name + content version, atomic replacement, verified local copies (no cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.store.adapters import AdapterError, AdapterStore, parse_model_id


def _adapter(path: Path, weights: bytes, rank: int = 8) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "base_model_name_or_path": "base"}))
    (path / "adapter_model.safetensors").write_bytes(weights)
    return path


@pytest.fixture()
def store(tmp_path: Path) -> AdapterStore:
    return AdapterStore(str(tmp_path / "store"), tmp_path / "cache")


def test_replacing_an_adapter_makes_a_new_version_and_a_new_copy(store: AdapterStore, tmp_path: Path) -> None:
    first = store.put("ft:base:demo:1", _adapter(tmp_path / "a", b"one"), {"base_model": "base"})
    assert first.base_model == "base" and first.rank == 8
    assert parse_model_id(first.model_id) == ("ft:base:demo:1", first.version)
    old_copy = store.local_copy(first.name, first.version)
    second = store.put("ft:base:demo:1", _adapter(tmp_path / "b", b"two"))
    assert second.version != first.version
    new_copy = store.local_copy(second.name, second.version)
    assert (new_copy / "adapter_model.safetensors").read_bytes() == b"two"
    assert (old_copy / "adapter_model.safetensors").read_bytes() == b"one"  # in-flight users keep their weights
    assert [r.name for r in store.list()] == ["ft:base:demo:1"]


def test_a_copy_of_a_version_the_store_no_longer_has_is_refused(store: AdapterStore, tmp_path: Path) -> None:
    ref = store.put("demo", _adapter(tmp_path / "a", b"one"))
    store.put("demo", _adapter(tmp_path / "b", b"two"))
    with pytest.raises(AdapterError, match="changed"):
        store.local_copy("demo", ref.version)
    assert not list((tmp_path / "cache").glob(".incoming-*"))


def test_bad_names_and_directories_are_refused(store: AdapterStore, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="invalid adapter name"):
        store.put("../escape", _adapter(tmp_path / "a", b"x"))
    with pytest.raises(AdapterError, match="not a PEFT adapter"):
        store.put("empty", tmp_path)
    assert store.get("../escape") is None and store.get("missing") is None
    assert store.list() == []


def test_delete(store: AdapterStore, tmp_path: Path) -> None:
    store.put("demo", _adapter(tmp_path / "a", b"one"))
    assert store.delete("demo") and store.get("demo") is None and not store.delete("demo")
