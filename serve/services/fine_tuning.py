"""Files and fine-tuning jobs behind the ingress: validation up front, then rows in the queue.

A training file is parsed and length-checked with the served model's tokenizer on upload (the same checks the
training job runs), so a bad dataset is refused with its line numbers before it can wait in the queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray.serve.handle import DeploymentHandle

from cluster.evaluation import testset
from cluster.settings import Settings
from cluster.store import fine_tuning as ft
from cluster.store.adapters import fine_tuned_name
from cluster.store.db import LazyPool
from cluster.store.files import FileStore
from cluster.training import datasets
from cluster.training.datasets import DatasetError
from serve.schemas.fine_tuning import FineTuningJobCreate
from serve.services.errors import ApiError, invalid, not_found, page_cursor

PURPOSES = ("fine-tune", "evals")  # training data, and test sets for POST /v1/evals
DEFAULT_EPOCHS = 3
BASE_LEARNING_RATE = 2e-4


class FineTuningService:
    def __init__(self, settings: Settings, db: LazyPool, tokenizer: Any, dispatcher: DeploymentHandle) -> None:
        self.settings = settings
        self.db = db
        self.limits = settings.fine_tuning
        self.training = settings.profile_spec.training
        self.tokenizer = tokenizer
        self.dispatcher = dispatcher
        self.base_model = settings.llm_spec.served_name
        self.files = FileStore.from_settings(settings)

    # -------------------------------------------------------------------------------------------- files

    async def upload(self, filename: str, purpose: str, data: bytes) -> ft.TrainingFile:
        if purpose not in PURPOSES:
            raise invalid(f"purpose {purpose!r} is not supported; ragtune stores files for "
                          f"{' or '.join(repr(p) for p in PURPOSES)}", param="purpose")
        if len(data) > self.limits.max_file_bytes:
            raise ApiError(413, f"{filename}: more than {self.limits.max_file_bytes} bytes", param="file",
                           code="file_too_large")
        try:
            examples = await asyncio.to_thread(self._validate, data, filename, purpose)
        except DatasetError as exc:
            raise invalid(str(exc), param="file", code="invalid_training_file" if purpose == "fine-tune" else "invalid_eval_file") from None
        file_id = ft.new_id("file")
        uri = await asyncio.to_thread(self.files.put, file_id, data)
        record = ft.TrainingFile(id=file_id, filename=filename, purpose=purpose, bytes=len(data),
                                 sha256=datasets.digest(data), examples=examples, uri=uri,
                                 created_at=None)  # type: ignore[arg-type]
        try:
            return await ft.create_file(await self.db.get(), record, self.limits.max_store_bytes)
        except ft.QuotaExceeded as exc:
            await asyncio.to_thread(self.files.delete, uri)
            raise ApiError(413, str(exc), param="file", code="quota_exceeded") from None
        except BaseException:
            await asyncio.to_thread(self.files.delete, uri)  # no content without its row
            raise

    def _validate(self, data: bytes, filename: str, purpose: str) -> int:
        """Examples (or, for an eval test set, cases) in the file; DatasetError names the bad lines."""
        if purpose == "evals":
            return len(testset.parse(data, name=filename))
        examples = datasets.parse(data, name=filename)
        if len(examples) > self.limits.max_examples:
            raise DatasetError([datasets.Problem(None, f"{len(examples)} examples; the limit is "
                                                            f"{self.limits.max_examples}")], filename)
        datasets.check_lengths(examples, self.tokenizer, self.limits.max_length, name=filename)
        return len(examples)

    async def list_files(self, purpose: str | None, limit: int) -> list[ft.TrainingFile]:
        return await ft.list_files(await self.db.get(), purpose, limit)

    async def get_file(self, file_id: str) -> ft.TrainingFile:
        found = await ft.get_file(await self.db.get(), file_id)
        if found is None:
            raise not_found(f"No such File object: {file_id}", param="file_id")
        return found

    async def delete_file(self, file_id: str) -> ft.TrainingFile:
        try:
            deleted = await ft.delete_file(await self.db.get(), file_id)
        except ft.JobStateError as exc:
            raise ApiError(409, str(exc), param="file_id", code="file_in_use") from None
        if deleted is None:
            raise not_found(f"No such File object: {file_id}", param="file_id")
        await asyncio.to_thread(self.files.delete, deleted.uri)
        return deleted

    # --------------------------------------------------------------------------------------------- jobs

    async def _file_for(self, file_id: str, param: str) -> ft.TrainingFile:
        found = await ft.get_file(await self.db.get(), file_id)
        if found is None:
            raise invalid(f"training file {file_id!r} does not exist (upload it with POST /v1/files)", param=param,
                          code="invalid_training_file")
        if found.purpose != "fine-tune":
            raise invalid(f"file {file_id!r} has purpose {found.purpose!r}, not 'fine-tune'", param=param)
        return found

    def _hyperparameters(self, body: FineTuningJobCreate) -> dict[str, Any]:
        try:
            h = body.resolved_hyperparameters()
        except ValueError as exc:
            raise invalid(str(exc), param="hyperparameters") from None
        epochs = DEFAULT_EPOCHS if h.n_epochs == "auto" else h.n_epochs
        batch = self.training.batch_size if h.batch_size == "auto" else h.batch_size
        multiplier = 1.0 if h.learning_rate_multiplier == "auto" else h.learning_rate_multiplier
        if not 1 <= epochs <= 50:
            raise invalid(f"n_epochs must be between 1 and 50, got {epochs}", param="hyperparameters.n_epochs")
        if not 1 <= batch <= 256:
            raise invalid(f"batch_size must be between 1 and 256, got {batch}", param="hyperparameters.batch_size")
        if not 0 < multiplier <= 50:
            raise invalid(f"learning_rate_multiplier must be in (0, 50], got {multiplier}",
                          param="hyperparameters.learning_rate_multiplier")
        if h.max_length is not None and h.max_length > self.limits.max_length:
            raise invalid(f"max_length must be at most {self.limits.max_length}", param="hyperparameters.max_length")
        return {"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": multiplier,
                "learning_rate": BASE_LEARNING_RATE * multiplier, "max_steps": h.max_steps, "lora_rank": h.lora_rank,
                "lora_alpha": h.lora_alpha, "max_length": h.max_length or self.limits.max_length,
                "system_prompt": body.system_prompt, "timeout_s": h.timeout_s or self.training.job_timeout_s}

    async def create_job(self, body: FineTuningJobCreate) -> ft.FineTuningJob:
        if body.model not in (self.base_model, self.settings.llm_spec.model):
            raise not_found(f"model {body.model!r} cannot be fine-tuned here: this cluster serves and trains "
                            f"{self.base_model!r}", param="model")
        if body.integrations:
            raise invalid("integrations are not supported", param="integrations")
        hyperparameters = self._hyperparameters(body)
        await self._file_for(body.training_file, "training_file")
        if body.validation_file:
            await self._file_for(body.validation_file, "validation_file")
        job_id = ft.new_id("ftjob")
        name = fine_tuned_name(self.base_model, body.suffix or "", job_id.removeprefix("ftjob-")[:8])
        job = await ft.create_job(
            await self.db.get(), job_id=job_id, model=self.base_model, training_file=body.training_file,
            validation_file=body.validation_file, suffix=body.suffix, hyperparameters=hyperparameters,
            seed=body.seed if body.seed is not None else 42, priority=body.priority,
            num_gpus=self.training.num_gpus, adapter_name=name, metadata=body.metadata)
        self.dispatcher.wake.remote()  # submit now rather than at the dispatcher's next poll
        return job

    async def list_jobs(self, after: str | None, limit: int) -> tuple[list[ft.FineTuningJob], bool]:
        return await ft.list_jobs(await self.db.get(), after, limit)

    async def get_job(self, job_id: str) -> ft.FineTuningJob:
        job = await ft.get_job(await self.db.get(), job_id)
        if job is None:
            raise not_found(f"No fine-tuning job with id {job_id}", param="fine_tuning_job_id")
        return job

    async def cancel(self, job_id: str) -> ft.FineTuningJob:
        try:
            job = await ft.request_cancel(await self.db.get(), job_id)
        except ft.JobStateError as exc:
            raise ApiError(409, str(exc), param="fine_tuning_job_id", code="job_finished") from None
        if job is None:
            raise not_found(f"No fine-tuning job with id {job_id}", param="fine_tuning_job_id")
        self.dispatcher.wake.remote()
        return job

    async def events(self, job_id: str, after: str | None,
                     limit: int) -> tuple[list[ft.JobEvent], bool]:
        await self.get_job(job_id)
        return await ft.list_events(await self.db.get(), job_id, page_cursor(after, "ftevent", "an event id"), limit)
