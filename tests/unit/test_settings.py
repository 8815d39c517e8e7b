"""Settings and profiles are validated where they are defined."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.profiles import PROFILES, ChunkingSpec, Profile
from cluster.settings import SearchLimits, Settings


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGTUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("RAGTUNE_PORT", "9001")
    s = Settings()
    assert s.profile == "cpu-dev" and s.port == 9001 and s.database_url == "postgresql://u@h/db"
    assert s.pgdata == tmp_path / "state" / "pgdata"
    env = s.environment()
    assert env["RAGTUNE_PORT"] == "9001" and env["RAGTUNE_DATABASE_URL"] == "postgresql://u@h/db"
    assert Settings(**{k.removeprefix("RAGTUNE_").lower(): v for k, v in env.items()
                       if k not in ("RAGTUNE_DATABASE_URL",)}).port == 9001


@pytest.mark.parametrize("field,value", [("profile", "tpu"), ("port", 0), ("port", 70000), ("ray_num_cpus", 0)])
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def test_search_defaults_must_fit_their_maxima() -> None:
    with pytest.raises(ValidationError, match="within their maxima"):
        SearchLimits(default_top_n=200, max_top_n=100)


def test_a_profile_whose_chunks_exceed_the_embedder_window_is_refused() -> None:
    cpu = PROFILES["cpu-dev"]
    with pytest.raises(ValidationError, match="max_seq_length"):
        Profile(**(cpu.model_dump() | {"chunking": {"chunk_tokens": 400, "overlap_tokens": 10}}))
    with pytest.raises(ValidationError, match="overlap_tokens"):
        ChunkingSpec(chunk_tokens=100, overlap_tokens=100)


def test_profiles_differ_only_in_values() -> None:
    cpu, gpu = PROFILES["cpu-dev"], PROFILES["gpu"]
    assert type(cpu) is type(gpu)
    assert gpu.embedder.placement.num_gpus > 0 and cpu.embedder.placement.num_gpus == 0
    assert cpu.llm.model.startswith("local:") and not gpu.llm.model.startswith("local:")
