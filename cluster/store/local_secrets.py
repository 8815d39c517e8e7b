"""Secrets the cluster keeps for itself in its state directory (mode 0600): created once, read ever after.

Used for the internal API key and the guardrails' canary key. On a cluster whose nodes share no state directory each
node keeps its own, which is still secret; only a shared one makes them the same across nodes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def state_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """The secret at `path`, made by `make()` if there is none yet. Two processes racing to create it get the same
    one: each writes a private temporary file and links it into place, and a link fails where the file exists."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make())
    try:
        os.link(tmp, path)  # fails if another process got there first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
