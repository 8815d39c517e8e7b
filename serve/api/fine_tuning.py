"""OpenAI's files and fine-tuning API: /v1/files and /v1/fine_tuning/jobs (the `openai` client works unmodified)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from serve.api.dependencies import ServicesDep
from serve.schemas.fine_tuning import (
    FileDeleted, FileList, FileObject, FineTuningJobCreate, FineTuningJobList, FineTuningJobOut, JobEventList,
    event_out, file_out, job_out,
)

router = APIRouter(tags=["fine-tuning"])


@router.post("/v1/files", response_model=FileObject)
async def upload_file(file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()],
                      s: ServicesDep) -> FileObject:
    """A JSONL training file (purpose `fine-tune`), validated line by line before it is stored."""
    data = await file.read(s.settings.fine_tuning.max_file_bytes + 1)
    return file_out(await s.fine_tuning.upload(file.filename or "upload.jsonl", purpose, data))


@router.get("/v1/files", response_model=FileList)
async def list_files(s: ServicesDep, purpose: Annotated[str | None, Query()] = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> FileList:
    return FileList(data=[file_out(f) for f in await s.fine_tuning.list_files(purpose, limit)])


@router.get("/v1/files/{file_id}", response_model=FileObject)
async def get_file(file_id: str, s: ServicesDep) -> FileObject:
    return file_out(await s.fine_tuning.get_file(file_id))


@router.delete("/v1/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, s: ServicesDep) -> FileDeleted:
    """Refused (409) while a fine-tuning job refers to the file."""
    await s.fine_tuning.delete_file(file_id)
    return FileDeleted(id=file_id)


@router.post("/v1/fine_tuning/jobs", response_model=FineTuningJobOut)
async def create_fine_tuning_job(body: FineTuningJobCreate, s: ServicesDep) -> FineTuningJobOut:
    """Queue a LoRA fine-tuning job; the dispatcher runs it as a Ray Job when the budget allows."""
    return job_out(await s.fine_tuning.create_job(body))


@router.get("/v1/fine_tuning/jobs", response_model=FineTuningJobList)
async def list_fine_tuning_jobs(s: ServicesDep, after: Annotated[str | None, Query()] = None,
                                limit: Annotated[int, Query(ge=1, le=100)] = 20) -> FineTuningJobList:
    jobs, more = await s.fine_tuning.list_jobs(after, limit)
    return FineTuningJobList(data=[job_out(j) for j in jobs], has_more=more)


@router.get("/v1/fine_tuning/jobs/{job_id}", response_model=FineTuningJobOut)
async def get_fine_tuning_job(job_id: str, s: ServicesDep) -> FineTuningJobOut:
    return job_out(await s.fine_tuning.get_job(job_id))


@router.get("/v1/fine_tuning/jobs/{job_id}/events", response_model=JobEventList)
async def list_fine_tuning_events(job_id: str, s: ServicesDep, after: Annotated[str | None, Query()] = None,
                                  limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> JobEventList:
    """Newest first: queued, started, step/loss metrics, succeeded/failed/cancelled."""
    events, more = await s.fine_tuning.events(job_id, after, limit)
    return JobEventList(data=[event_out(e) for e in events], has_more=more)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel", response_model=FineTuningJobOut)
async def cancel_fine_tuning_job(job_id: str, s: ServicesDep) -> FineTuningJobOut:
    """A queued job is cancelled at once; a running one is stopped and publishes nothing (409 if finished)."""
    return job_out(await s.fine_tuning.cancel(job_id))
