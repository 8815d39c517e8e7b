"""What every benchmark shares: its own local cluster, percentiles, and where results go."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

BENCH_ENV = {"RAGTUNE_PORT": "8200", "RAGTUNE_RAY_PORT": "6400", "RAGTUNE_DASHBOARD_PORT": "8285",
             "RAGTUNE_DASHBOARD_AGENT_PORT": "52385", "RAGTUNE_METRICS_PORT": "8290",
             "RAGTUNE_APP_NAME": "ragtune-bench", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def machine() -> str:
    """What every figure states it ran on: CPU model, cores, memory, GPU or not."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = "NVIDIA GPU present" if Path("/dev/nvidia0").exists() else "no GPU"
    return f"{cpu or platform.machine()}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {gpu}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@contextmanager
def bench_cluster() -> Iterator[Any]:
    """A local cluster of the benchmark's own (temporary state dir, ports 8200/6400/8285), never a running
    demo's; stopped and removed at the end. Yields its Settings."""
    state_dir = Path(tempfile.mkdtemp(prefix="rtb-", dir="/tmp"))
    os.environ.update(BENCH_ENV | {"RAGTUNE_STATE_DIR": str(state_dir)})
    os.environ.pop("DATABASE_URL", None)
    from cluster.ops import local
    from cluster.settings import Settings

    settings = Settings()
    try:
        local.up(settings, echo=print)
        yield settings
    finally:
        local.down(settings, echo=print)
        shutil.rmtree(state_dir, ignore_errors=True)


def publish_random_adapters(settings: Any, prefix: str, count: int, rank: int = 16) -> list[Any]:
    """`count` LoRA adapters with random weights on every projection (seeds 1..count), published to the
    cluster's store as `<prefix>-0`, `<prefix>-1`, ...: they cost what trained adapters of that rank cost to serve."""
    from cluster.models.random_adapters import random_adapters
    from cluster.store.adapters import AdapterStore
    from cluster.models.cache import resolve

    spec = settings.llm_spec
    store = AdapterStore.from_settings(settings)
    made = random_adapters(resolve(spec.model, settings.models_dir), settings.state_dir / f"{prefix}-adapters",
                           seeds=list(range(1, count + 1)), rank=rank)
    return [store.put(f"{prefix}-{i}", path, {"base_model": spec.served_name}) for i, path in enumerate(made)]


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
