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


class ActorKiller:
    """A process already connected to the Ray cluster that kills a Serve replica's actor the hard way (`ray.kill`,
    as a crashed node would) the moment `kill()` is called: connecting takes seconds, a kill mid-stream cannot."""

    SCRIPT = """
import ray, sys
ray.init(address="127.0.0.1:%d", logging_level="ERROR")
names = [a for a in ray.util.list_named_actors(all_namespaces=True) if %r in a["name"]]
assert len(names) == 1, names
actor = ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
print("ready", flush=True)
sys.stdin.readline()
ray.kill(actor, no_restart=True)
print("killed")
"""

    def __init__(self, ray_port: int, deployment: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT % (ray_port, deployment)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        out, _ = self.proc.communicate("kill\n", timeout=60)
        assert "killed" in out, out

    def __enter__(self) -> "ActorKiller":
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
