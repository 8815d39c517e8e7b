"""Submitting Ray Jobs from the CLI: the project directory as working_dir, our settings in the environment."""

from __future__ import annotations

import asyncio
import shlex
from typing import Callable

from cluster.ops.local import PROJECT_ROOT
from cluster.settings import Settings

WORKING_DIR_EXCLUDES = [".venv", ".git", ".ragtune", "bench/results", "**/__pycache__"]


def submit(settings: Settings, entrypoint: list[str], entrypoint_num_cpus: float = 0.5,
           entrypoint_num_gpus: float = 0.0) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(settings.dashboard_url)
    return client.submit_job(
        entrypoint=shlex.join(entrypoint),
        runtime_env={"working_dir": str(PROJECT_ROOT), "excludes": WORKING_DIR_EXCLUDES,
                     "env_vars": settings.environment() | {"HF_HUB_OFFLINE": "1"}},
        entrypoint_num_cpus=entrypoint_num_cpus, entrypoint_num_gpus=entrypoint_num_gpus or None,
    )


async def _follow(client, job_id: str, echo: Callable[[str], None]) -> str:  # noqa: ANN001
    async for lines in client.tail_job_logs(job_id):
        for line in lines.rstrip("\n").splitlines():
            echo(line)
    return str(client.get_job_status(job_id))


def submit_and_follow(settings: Settings, entrypoint: list[str], follow: bool = True,
                      echo: Callable[[str], None] = print) -> int:
    """Submit; with `follow`, stream the logs and return 0 only if the job SUCCEEDED."""
    from ray.job_submission import JobSubmissionClient

    job_id = submit(settings, entrypoint)
    echo(f"submitted Ray job {job_id}: {shlex.join(entrypoint)}")
    if not follow:
        echo(f"follow it with: ray job logs --address {settings.dashboard_url} -f {job_id}")
        return 0
    client = JobSubmissionClient(settings.dashboard_url)
    status = asyncio.run(_follow(client, job_id, echo))
    echo(f"job {job_id}: {status}")
    return 0 if status.endswith("SUCCEEDED") else 1
