"""Bulk ingestion as a real Ray Job: submitted with `ray job submit` and with `ragtune ingest`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from cluster.ops.local import PROJECT_ROOT
from tests.support.helpers import package_text

BIN = Path(sys.executable).parent


def _sources(api: httpx.Client) -> dict[str, dict]:
    docs = api.get("/v1/documents", params={"limit": 500}).json()["data"]
    return {d["source"]: d for d in docs}


def test_ray_job_submit_ingests_a_directory_idempotently(api: httpx.Client, live, tmp_path: Path) -> None:  # noqa: ANN001
    corpus = tmp_path / "corpus"
    (corpus / "nested").mkdir(parents=True)
    (corpus / "fastapi.md").write_text(package_text("fastapi"))
    (corpus / "nested" / "notes.txt").write_text("Plain notes about walruses and their tusks.\n\nSecond paragraph.")
    (corpus / "ignored.bin").write_bytes(b"\x00\x01")  # not a text suffix: not even looked at
    cmd = [str(BIN / "ray"), "job", "submit", "--address", live.dashboard_url, "--working-dir", str(PROJECT_ROOT),
           "--", "python", "-m", "jobs.ingest", str(corpus)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "files 2/2 (created 2, updated 0, unchanged 0, failed 0)" in first.stdout
    assert "chunks/s" in first.stdout
    stored = _sources(api)
    assert stored["fastapi.md"]["chunk_count"] > 5 and stored["nested/notes.txt"]["chunk_count"] == 1

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert second.returncode == 0 and "unchanged 2" in second.stdout
    assert _sources(api)["fastapi.md"]["updated_at"] == stored["fastapi.md"]["updated_at"]


def test_ragtune_ingest_reports_bad_files_and_fails(api: httpx.Client, live, tmp_path: Path) -> None:  # noqa: ANN001
    corpus = tmp_path / "mixed"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Narwhals\n\nNarwhal tusks are teeth.")
    (corpus / "broken.txt").write_bytes(b"caf\xe9 latin-1 text")
    result = subprocess.run([str(BIN / "ragtune"), "ingest", str(corpus)], capture_output=True, text=True,
                            timeout=600, env=os.environ.copy())
    assert result.returncode == 1, result.stdout[-3000:]
    assert "broken.txt: not valid UTF-8" in result.stdout
    assert "good.md" in _sources(api) and "broken.txt" not in _sources(api)


def test_ragtune_ingest_refuses_a_missing_directory(live, tmp_path: Path) -> None:  # noqa: ANN001
    result = subprocess.run([str(BIN / "ragtune"), "ingest", str(tmp_path / "nope")], capture_output=True,
                            text=True, timeout=60, env=os.environ.copy())
    assert result.returncode == 1 and "is not a directory" in result.stderr
