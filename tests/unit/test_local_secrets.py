"""The state directory's secrets: made once, private, and the same for every process that asks."""

from __future__ import annotations

import stat
from pathlib import Path

from cluster.store.local_secrets import state_secret


def test_a_secret_is_made_once_private_and_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "key"
    first = state_secret(path)
    assert len(first) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert state_secret(path, lambda: "another") == first  # an existing secret is never replaced
    assert state_secret(tmp_path / "other") != first
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary file left behind


def test_a_process_that_loses_the_race_gets_the_winners_secret(tmp_path: Path) -> None:
    path = tmp_path / "key"

    def make() -> str:  # another process creates the file while this one is making its own
        path.write_text("theirs")
        return "mine"

    assert state_secret(path, make) == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["key"]
