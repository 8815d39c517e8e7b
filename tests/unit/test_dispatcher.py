"""The dispatcher's pure parts: the training entrypoint it submits and the events it reads from job logs."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone

from cluster.store import fine_tuning as ft
from jobs.train import TrainConfig, parse_args
from serve.deployments.dispatcher import train_entrypoint

NOW = datetime.now(timezone.utc)


def _job(**hyper: object) -> ft.FineTuningJob:
    h = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 5, "learning_rate": 1e-3, "max_steps": None,
         "lora_rank": 8, "lora_alpha": None, "max_length": 512, "system_prompt": "Reply in JSON, always."} | hyper
    return ft.FineTuningJob(
        id="ftjob-0123456789abcdef01234567", model="smollm2-135m-instruct", training_file="file-a",
        validation_file="file-b", suffix="demo", hyperparameters=h, seed=7, priority=0, metadata=None,
        status="running", cancel_requested=False, num_gpus=0, adapter_name="ft:smollm2-135m-instruct:demo:01234567",
        ray_submission_id="ragtune-ftjob-0123456789abcdef01234567", submitted_at=None, log_offset=0,
        fine_tuned_model=None, adapter_version=None, trained_tokens=None, metrics=None, error=None, created_at=NOW,
        started_at=NOW, finished_at=None)


def _file(file_id: str, uri: str) -> ft.TrainingFile:
    return ft.TrainingFile(id=file_id, filename="d.jsonl", purpose="fine-tune", bytes=10, sha256="0" * 64,
                           examples=3, uri=uri, created_at=NOW)


def test_the_entrypoint_parses_back_into_the_jobs_config() -> None:
    args = train_entrypoint(_job(), _file("file-a", "/data/a b.jsonl"), _file("file-b", "/data/b.jsonl"))
    assert args[:3] == ["python", "-m", "jobs.train"]
    config = parse_args(shlex.split(shlex.join(args))[3:])  # what the Ray job's shell hands the script
    assert config == TrainConfig(dataset="/data/a b.jsonl", eval_dataset="/data/b.jsonl", suffix="demo",
                                 adapter_name="ft:smollm2-135m-instruct:demo:01234567",
                                 job_id="ftjob-0123456789abcdef01234567", seed=7, epochs=2, batch_size=4,
                                 learning_rate=1e-3, rank=8, max_length=512, system_prompt="Reply in JSON, always.")
