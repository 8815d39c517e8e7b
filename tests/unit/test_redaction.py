"""Messages leaving the cluster carry no host path or address, and keep everything else."""

from __future__ import annotations

import pytest

from cluster.ops.redaction import redact


@pytest.mark.parametrize(("raw", "expected"), [
    ("No adapter found at /root/.local/state/ragtune/adapter-cache/ft-x/v1", "No adapter found at <path>"),
    ("file:///tmp/rt-1/files/file-abc.jsonl: line 3: bad JSON", "<path>: line 3: bad JSON"),
    ("connect to 10.1.2.3:6379 failed", "connect to <address> failed"),
    ("Ray at [fe80::1]:8265 refused", "Ray at <address> refused"),
    ("/home/u/data.jsonl line 2", "<path> line 2"),
])
def test_paths_and_addresses_are_replaced(raw: str, expected: str) -> None:
    assert redact(raw) == expected


@pytest.mark.parametrize("kept", [
    "upload it with POST /v1/files", "version 1.2.3 of the model", "ratio 3/4 and a/b", "lr 2e-4, loss 0.31",
    "adapter ft:smollm2:demo:0123 is not in the store", "GET /v1/models lists them",
])
def test_ordinary_text_is_kept(kept: str) -> None:
    assert redact(kept) == kept
