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


def test_the_previous_version_stays_loadable_and_older_ones_are_refused(store: AdapterStore, tmp_path: Path) -> None:
    oldest = store.put("demo", _adapter(tmp_path / "a", b"one"))
    previous = store.put("demo", _adapter(tmp_path / "b", b"two"))
    current = store.put("demo", _adapter(tmp_path / "c", b"three"))
    assert store.get("demo").version == current.version  # type: ignore[union-attr]
    assert (store.local_copy("demo", previous.version) / "adapter_model.safetensors").read_bytes() == b"two"
    with pytest.raises(AdapterError, match="changed"):
        store.local_copy("demo", oldest.version)  # pruned: requests resolve the current one
    assert not list((tmp_path / "cache").glob(".incoming-*"))
    assert sorted(p.name for p in (tmp_path / "store" / "demo" / "versions").iterdir()) == \
        sorted([previous.version, current.version])


def test_pickled_weights_are_refused(store: AdapterStore, tmp_path: Path) -> None:
    pickled = tmp_path / "p"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text("{}")
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04 not for loading")
    with pytest.raises(AdapterError, match="pickle"):
        store.put("pickled", pickled)
    assert store.get("pickled") is None


def test_a_store_written_before_versions_is_still_read_and_upgraded(store: AdapterStore, tmp_path: Path) -> None:
    flat = _adapter(tmp_path / "store" / "legacy", b"old layout")
    ref = store.get("legacy")
    assert ref is not None and (store.local_copy("legacy", ref.version) / "adapter_model.safetensors").read_bytes() \
        == b"old layout"
    new = store.put("legacy", _adapter(tmp_path / "n", b"new layout"))
    upgraded = store.get("legacy")
    assert not (flat / "adapter_model.safetensors").exists() and upgraded is not None and upgraded.version == new.version


def test_local_copies_of_replaced_versions_are_pruned_after_the_grace(store: AdapterStore, tmp_path: Path) -> None:
    first = store.put("demo", _adapter(tmp_path / "a", b"one"))
    old_copy = store.local_copy("demo", first.version)
    second = store.put("demo", _adapter(tmp_path / "b", b"two"))
    new_copy = store.local_copy("demo", second.version)
    assert store.prune_cache() == [] and old_copy.exists()  # within the grace: in-flight users keep it
    assert store.prune_cache(grace_s=0) == [old_copy.name] and not old_copy.exists() and new_copy.exists()
    store.delete("demo")
    assert store.prune_cache(grace_s=0) == [new_copy.name]  # a deleted adapter's copies go too


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


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_republishing_under_concurrent_readers_never_shows_a_missing_or_mixed_adapter(tmp_path: Path,
                                                                                       kind: str) -> None:
    """200 publishes of alternating content while 8 threads resolve and copy: every read finds the adapter, and
    every copy's config and weights are of the same publish (each config names its weights)."""
    import threading
    import uuid

    root = str(tmp_path / "store") if kind == "local" else f"memory://adapters-{uuid.uuid4().hex}"
    store = AdapterStore(root, tmp_path / "cache")
    sources = []
    for i in range(2):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "adapter_config.json").write_text(json.dumps({"r": 8, "weights": f"w{i}"}))
        (src / "adapter_model.safetensors").write_bytes(f"w{i}".encode() * 1000)
        sources.append(src)
    store.put("hot", sources[0])
    done, problems, reads = threading.Event(), [], [0]

    def reader() -> None:
        reader_store = AdapterStore(root, tmp_path / f"cache-{threading.get_ident()}")
        while not done.is_set():
            ref = reader_store.get("hot")
            if ref is None:
                problems.append("missing")
                continue
            try:
                copy = reader_store.local_copy("hot", ref.version)
            except AdapterError:
                continue  # replaced twice since it was resolved: the next request resolves the new one
            marker = json.loads((copy / "adapter_config.json").read_text())["weights"]
            if not (copy / "adapter_model.safetensors").read_bytes().startswith(marker.encode()):
                problems.append(f"mixed {ref.version}")
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(200):
        store.put("hot", sources[i % 2], {"publish": i})
    done.set()
    for t in threads:
        t.join()
    assert problems == [] and reads[0] > 0
