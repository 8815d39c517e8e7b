"""Local lifecycle: `up` starts (or joins) Ray, starts the embedded database, deploys the Serve app;
`down` stops exactly what `up` started; `status` reports all three.

The Serve app is reached by import path (`serve.app:build`) and jobs by entrypoint (`python -m jobs.X`), so
this layer never imports the layers above it. What `up` started is recorded in `state_dir/local.json`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import psutil

from cluster.store import db, knowledge
from cluster.models.cache import resolve
from cluster.settings import Settings

APP_IMPORT_PATH = "serve.app:build"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalState:
    started_ray: bool = False
    started_db: bool = False
    ray_address: str | None = None
    ray_temp_dir: str | None = None
    started_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, settings: Settings) -> "LocalState":
        try:
            return cls(**json.loads((settings.state_dir / "local.json").read_text()))
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, settings: Settings) -> None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = settings.state_dir / "local.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(settings.state_dir / "local.json")


def process_environment(settings: Settings) -> dict[str, str]:
    """The environment of the Ray head and so of every replica and job: same settings, offline models."""
    env = dict(os.environ)
    env.update(settings.environment())
    # `python` in job entrypoints (ours and `ray job submit` by hand) must be this environment's interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_metrics_report_interval_ms": str(settings.metrics_report_interval_ms),
                # Counters as Prometheus counters only (Ray also exports each as a same-named gauge by default).
                "RAY_EXPORT_COUNTER_AS_GAUGE": "0"})
    return env


# ----------------------------------------------------------------------------------------------- Ray

def _ray_cli() -> str:
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def ray_temp_dir(settings: Settings) -> Path:
    return settings.state_dir / "ray"


def _head_processes(temp_dir: Path) -> list[psutil.Process]:
    """Processes of the head that `up` started: every one of them names our own temp dir."""
    marker = str(temp_dir)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in arg for arg in (proc.info["cmdline"] or [])):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def ray_is_up(address: str) -> bool:
    """Whether a Ray GCS answers at host:port (a TCP probe: `ray status` waits long on a dead address)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def start_ray_head(settings: Settings, echo: Callable[[str], None]) -> str:
    address = f"127.0.0.1:{settings.ray_port}"
    temp_dir = ray_temp_dir(settings)
    temp_dir.mkdir(parents=True, exist_ok=True)
    cmd = [_ray_cli(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(settings.ray_port),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(settings.dashboard_port),
           "--dashboard-agent-listen-port", str(settings.dashboard_agent_port),
           "--metrics-export-port", str(settings.metrics_port),
           "--num-cpus", str(settings.ray_num_cpus), "--temp-dir", str(temp_dir), "--disable-usage-stats"]
    echo(f"starting Ray head at {address} (dashboard {settings.dashboard_url}) ...")
    result = subprocess.run(cmd, capture_output=True, text=True, env=process_environment(settings), timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"`ray start` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return address


def stop_ray_head(settings: Settings, temp_dir: Path, timeout_s: float = 30) -> int:
    procs = _head_processes(temp_dir)
    # Ray's agents rename themselves (`ray::DashboardAgent`), so their command lines no longer name the temp dir:
    # take every descendant too, or they outlive the head holding their ports for the next cluster.
    for proc in list(procs):
        try:
            procs.extend(child for child in proc.children(recursive=True) if child not in procs)
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return len(procs)


# --------------------------------------------------------------------------------------------- Serve

def _connect_ray(address: str) -> None:
    loopback = address.startswith(("127.", "localhost"))
    if loopback:
        # Without this, Ray rewrites a loopback address to the machine's external one, where nothing listens,
        # and the driver hangs. Ray reads the variable when first imported, so if something imported ray
        # before us, the constant it derived is corrected too.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants

    if loopback:
        ray_constants.ENABLE_RAY_CLUSTER = False

    if not ray.is_initialized():
        ray.init(address=address, _node_ip_address="127.0.0.1" if loopback else None,
                 namespace="ragtune", log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})


def deploy(settings: Settings, address: str, echo: Callable[[str], None]) -> None:
    _connect_ray(address)
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.port,
                              "request_timeout_s": settings.http.request_timeout_s})
    module, _, attr = APP_IMPORT_PATH.partition(":")
    app = getattr(importlib.import_module(module), attr)(settings.model_dump(
        include={"profile", "llm_variant", "state_dir", "models_dir", "database_url", "adapter_store", "host", "port",
                 "app_name"}))
    echo(f"deploying the Serve application {settings.app_name!r} ...")
    serve.run(app, name=settings.app_name, route_prefix="/", blocking=False)


def wait_ready(settings: Settings, timeout_s: float = 300) -> dict:
    """Poll /readyz until the database and every model deployment answer, or fail with the last report."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{settings.http_url}/readyz", timeout=60)
            last = response.json()
            if response.status_code == 200:
                return last
        except (httpx.HTTPError, ValueError) as exc:
            last = str(exc)
        time.sleep(1)
    raise TimeoutError(f"the application did not become ready in {timeout_s:.0f} s: {last}")


# ------------------------------------------------------------------------------------------ commands

def check_models(settings: Settings) -> None:
    """Fail before starting anything if a serving model is missing (replicas would only crash-loop)."""
    profile = settings.profile_spec
    guard = profile.guardrails
    for ref in (profile.embedder.model, profile.reranker.model, settings.llm_spec.model,
                *filter(None, [profile.answer_adapter, guard.model if guard.enabled and guard.classifier else None])):
        resolve(ref, settings.models_dir)


def require_keys_beyond_loopback(settings: Settings) -> None:
    """Serving beyond loopback without an API key would open the cluster (documents, fine-tuning) to the
    network: refused, with the database left running so that a key can be created."""
    import asyncio
    import ipaddress

    from cluster.store import api_keys

    host = "127.0.0.1" if settings.host == "localhost" else settings.host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass  # a host name: treated as reachable from outside

    async def count() -> bool:
        pool = await db.open_pool(settings, max_size=1)
        try:
            return await api_keys.user_keys_exist(pool)
        finally:
            await pool.close()

    if not asyncio.run(count()):
        raise RuntimeError(f"refusing to serve on {settings.host}: the cluster has no API key, so anyone who can "
                           "reach it could use it. The database is running: create a key with `ragtune keys create "
                           "--name admin --scope admin`, then run `ragtune up` again")


def up(settings: Settings, echo: Callable[[str], None] = print, wait: bool = True) -> LocalState:
    check_models(settings)
    state = LocalState.load(settings)
    if settings.database_url is None:
        if db.embedded_url(settings.pgdata) is None:
            echo(f"starting the embedded PostgreSQL + pgvector in {settings.pgdata} ...")
            db.start_embedded(settings.pgdata)
            state.started_db = True
        else:
            echo("embedded PostgreSQL already running")
    require_keys_beyond_loopback(settings)
    if settings.ray_address:
        address = settings.ray_address
        echo(f"joining the Ray cluster at {address}")
    else:
        address = f"127.0.0.1:{settings.ray_port}"
        if ray_is_up(address):
            echo(f"Ray already running at {address}")
        else:
            start_ray_head(settings, echo)
            state.started_ray = True
            state.ray_temp_dir = str(ray_temp_dir(settings))
    state.ray_address = address
    state.save(settings)
    deploy(settings, address, echo)
    if wait:
        wait_ready(settings)
    echo(f"ragtune is up: {settings.http_url} (API docs {settings.http_url}/docs, "
         f"Ray dashboard {settings.dashboard_url})")
    return state


def down(settings: Settings, echo: Callable[[str], None] = print) -> None:
    state = LocalState.load(settings)
    if "ray" in sys.modules:
        import ray

        ray.shutdown()  # a driver still attached to a head we kill would abort this process
    if state.ray_address:
        if state.started_ray and state.ray_temp_dir:
            count = stop_ray_head(settings, Path(state.ray_temp_dir))
            echo(f"stopped the Ray head ({count} processes)")
        else:
            try:
                _connect_ray(state.ray_address)
                from ray import serve

                serve.delete(settings.app_name)
                echo(f"deleted the Serve application {settings.app_name!r} (Ray was not started by ragtune)")
            except Exception as exc:  # noqa: BLE001 - report and keep going: the database still needs stopping
                echo(f"could not delete the Serve application: {exc}")
    if state.started_db:
        echo("stopped the embedded PostgreSQL" if db.stop_embedded(settings.pgdata)
             else "the embedded PostgreSQL was not running")
    (settings.state_dir / "local.json").unlink(missing_ok=True)


async def _db_report(url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        documents, chunks = await knowledge.counts(conn)
        return {"documents": documents, "chunks": chunks}
    except asyncpg.UndefinedTableError:
        return {"documents": 0, "chunks": 0, "note": "schema not created yet"}
    finally:
        await conn.close()


def status(settings: Settings) -> dict[str, Any]:
    state = LocalState.load(settings)
    report: dict[str, Any] = {"url": settings.http_url, "profile": settings.profile}
    try:
        url = db.database_url(settings)
        report["database"] = {"status": "up", "embedded": settings.database_url is None,
                              **asyncio.run(_db_report(url))}
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        report["database"] = {"status": "down", "error": str(exc)}
    address = state.ray_address or settings.ray_address or f"127.0.0.1:{settings.ray_port}"
    if not ray_is_up(address):
        report["ray"] = {"status": "down", "address": address}
        return report
    report["ray"] = {"status": "up", "address": address, "started_by_ragtune": state.started_ray}
    try:
        _connect_ray(address)
        from ray import serve

        apps = serve.status().applications
        app = apps.get(settings.app_name)
        if app is None:
            report["serve"] = {"status": "not deployed"}
        else:
            report["serve"] = {"status": str(app.status.value if hasattr(app.status, "value") else app.status),
                               "deployments": {
                                   name: {"status": str(getattr(d.status, "value", d.status)),
                                          "replicas": {str(getattr(k, "value", k)): v
                                                       for k, v in d.replica_states.items()}}
                                   for name, d in app.deployments.items()}}
    except Exception as exc:  # noqa: BLE001
        report["serve"] = {"status": "unknown", "error": str(exc)}
    return report
