"""`ray_cluster.yaml`'s head command, run here: the Ray dashboard (job submission is code execution) answers only on
loopback and only with the cluster's token, and a driver without the token cannot connect.

The command is taken from the YAML file as written (its environment and flags); only ports, the temp dir and the
node address are changed so that it runs next to the test cluster on this machine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import pytest
import yaml

from cluster.ops.local import stop_ray_head
from cluster.settings import Settings
from tests.support.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
GCS_PORT, DASHBOARD_PORT, AGENT_PORT, METRICS_PORT = 6430, 8430, 52430, 8431
CHANGED = ("--port=", "--object-manager-port=", "--autoscaling-config=")


def _ray_start(commands: list[str]) -> tuple[dict[str, str], list[str]]:
    """The `ray start` line of a list of the YAML's commands: its environment assignments and its arguments."""
    [line] = [c for c in commands if "ray start" in c]
    words = shlex.split(line)
    at = words.index("ray")
    return dict(w.split("=", 1) for w in words[:at]), words[at + 2:]


@pytest.fixture(scope="module")
def token_head() -> Iterator[tuple[str, str]]:
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    env, args = _ray_start(config["head_start_ray_commands"])
    worker_env, _ = _ray_start(config["worker_start_ray_commands"])
    assert env.get("RAY_AUTH_MODE") == worker_env.get("RAY_AUTH_MODE") == "token"
    assert "--dashboard-host=127.0.0.1" in args
    assert any(target.endswith("/.ray/auth_token") for target in config["file_mounts"])  # the token reaches nodes

    home = Path(tempfile.mkdtemp(prefix="rta-"))
    temp_dir = home / "ray"
    ray = str(Path(sys.executable).with_name("ray"))
    base_env = {**os.environ, "HOME": str(home)}
    subprocess.run([ray, "get-auth-token", "--generate"], env=base_env, check=True, capture_output=True, timeout=60)
    token = (home / ".ray" / "auth_token").read_text().strip()
    local = [a for a in args if not a.startswith(CHANGED)] + [
        f"--port={GCS_PORT}", f"--dashboard-port={DASHBOARD_PORT}", f"--dashboard-agent-listen-port={AGENT_PORT}",
        f"--metrics-export-port={METRICS_PORT}", "--num-cpus=1", f"--temp-dir={temp_dir}",
        "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run([ray, "start", *local], env={**base_env, **env}, check=True, capture_output=True, timeout=180)
        url = f"http://127.0.0.1:{DASHBOARD_PORT}"
        wait_for(lambda: _status(f"{url}/api/jobs/", token) == 200, 120, "the dashboard to answer")
        yield url, token
    finally:
        stop_ray_head(Settings(), temp_dir, timeout_s=5)
        shutil.rmtree(home, ignore_errors=True)


def _status(url: str, token: str | None, method: str = "GET", **kwargs: object) -> int | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return httpx.request(method, url, headers=headers, timeout=10, **kwargs).status_code  # type: ignore[arg-type]
    except httpx.HTTPError:
        return None


def test_the_dashboard_refuses_requests_and_job_submissions_without_the_token(token_head: tuple[str, str]) -> None:
    url, token = token_head
    assert _status(f"{url}/api/jobs/", None) == 401
    assert _status(f"{url}/api/jobs/", "not-the-token") in (401, 403)
    assert _status(f"{url}/api/jobs/", None, "POST", json={"entrypoint": "touch /tmp/owned"}) == 401
    assert _status(f"{url}/api/jobs/", token) == 200


def test_the_dashboard_listens_on_loopback_only(token_head: tuple[str, str]) -> None:
    listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == DASHBOARD_PORT}
    assert listening == {"127.0.0.1"}


def test_a_driver_without_the_token_cannot_connect(token_head: tuple[str, str]) -> None:
    code = f"import ray; ray.init(address='127.0.0.1:{GCS_PORT}', logging_level='ERROR'); print('connected')"
    with tempfile.TemporaryDirectory() as stranger:  # a home without ~/.ray/auth_token
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": stranger}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "connected" not in result.stdout
    assert "auth" in (result.stderr + result.stdout).lower()
