"""Assertions, polling and test data shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx


def api_error(response: httpx.Response, status: int) -> dict:
    """Assert an error response in OpenAI's shape with this status; return its `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy (the thing being waited for), or fail saying what."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def package_text(name: str) -> str:
    """An installed package's description as a Markdown document: real text for ingestion tests."""
    from cluster.content.package_docs import package_doc

    doc = package_doc(name)
    assert doc is not None, f"package {name} has no description"
    return doc.titled()


def ragtune(*args: str, env: dict | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """The `ragtune` command of this venv, run as a user would (this process's environment: the test cluster)."""
    return subprocess.run([str(Path(sys.executable).parent / "ragtune"), *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env or os.environ.copy())
