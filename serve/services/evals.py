"""Eval runs behind the ingress: a test set and its routes validated up front (line numbers, unknown routes or
adapters are a 400 before anything is stored), then one queued run with its cases, which the dispatcher hands to
a Ray Job (jobs/eval.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from ray.serve.handle import DeploymentHandle

from cluster.evaluation import records, testset
from cluster.evaluation.rules import Declared
from cluster.evaluation.runner import ADAPTER_ROUTES, RunOptions, check_routes, run_options
from cluster.settings import Settings
from cluster.store import evals
from cluster.store import fine_tuning as ft
from cluster.store.db import LazyPool
from cluster.store.files import FileStore
from cluster.training.datasets import DatasetError
from serve.schemas.evals import EvalCreate, EvalRunOut, OutputItem, run_out
from serve.services.errors import ApiError, invalid, not_found, page_cursor
from serve.services.generation import GenerationService

DEFAULT_ROUTES = ("rag", "plain", "search")
RESULT_STATUSES = ("pass", "fail", "error", "unscored")


class EvalService:
    def __init__(self, settings: Settings, db: LazyPool, generation: GenerationService,
                 dispatcher: DeploymentHandle) -> None:
        self.settings = settings
        self.limits = settings.evals
        self.db = db
        self.generation = generation
        self.dispatcher = dispatcher
        self.files = FileStore.from_settings(settings)

    async def _cases(self, body: EvalCreate) -> tuple[list[testset.Case], dict[str, Any]]:
        source = body.data_source.source
        try:
            if source.type == "file_content":
                cases = testset.parse_items([c.item for c in source.content], name="data_source.source.content")
                return cases, {"type": "jsonl", "source": {"type": "file_content", "items": len(cases)}}
            found = await ft.get_file(await self.db.get(), source.id)
            if found is None or found.purpose != "evals":
                raise invalid(f"file {source.id!r} is not a test set uploaded with purpose 'evals' (POST /v1/files)",
                              param="data_source.source.id")
            data = await asyncio.to_thread(self.files.get, found.uri)
            cases = await asyncio.to_thread(testset.parse, data, found.filename)
            return cases, {"type": "jsonl", "source": {"type": "file_id", "id": source.id}}
        except DatasetError as exc:
            raise invalid(str(exc), param="data_source", code="invalid_eval_file") from None

    async def _served(self, adapter: str | None) -> set[str]:
        """The models `check_routes` may find: the base model, and the adapter if the store has it."""
        served = {self.generation.base_model}
        if adapter is not None and await asyncio.to_thread(self.generation.store.get, adapter) is not None:
            served.add(adapter)
        return served

    async def create(self, body: EvalCreate) -> EvalRunOut:
        cases, data_source = await self._cases(body)
        routes = tuple(dict.fromkeys(body.routes or (DEFAULT_ROUTES + (tuple(sorted(ADAPTER_ROUTES))
                                                                       if body.adapter else ()))))
        try:
            check_routes(routes, body.adapter, await self._served(body.adapter))
        except ValueError as exc:
            raise invalid(str(exc), param="adapter" if "adapter" in str(exc) else "routes") from None
        concurrency = body.concurrency or RunOptions.concurrency
        if concurrency > self.limits.max_concurrency:
            raise invalid(f"concurrency must be at most {self.limits.max_concurrency}, got {concurrency}",
                          param="concurrency")
        options = run_options(self.settings, routes, body.adapter, concurrency,
                              body.max_tokens or RunOptions.max_tokens, body.judge, body.structured_output,
                              body.search_mode, body.rewrite, body.grounded)
        declared = replace(Declared(), **{k: v for k, v in (body.declared.model_dump() if body.declared else {})
                                          .items() if v is not None})
        run = await evals.create(
            await self.db.get(), eval_id=evals.new_id(), name=body.name, model=self.generation.base_model,
            adapter=body.adapter, routes=routes, options=records.stored_options(options, declared, body.queries_per_day),
            data_source=data_source, items=[testset.as_item(c) for c in cases], metadata=body.metadata)
        self.dispatcher.wake.remote()  # start now rather than at the dispatcher's next poll
        return await self._out(run)

    async def _out(self, run: evals.EvalRun) -> EvalRunOut:
        tallies = await evals.tallies(await self.db.get(), [run.id])
        return run_out(run, records.run_counts(run, tallies[run.id]))

    async def _run(self, eval_id: str) -> evals.EvalRun:
        run = await evals.get(await self.db.get(), eval_id)
        if run is None:
            raise not_found(f"No eval run with id {eval_id}", param="eval_id")
        return run

    async def get(self, eval_id: str) -> EvalRunOut:
        return await self._out(await self._run(eval_id))

    async def list(self, after: str | None, limit: int) -> tuple[list[EvalRunOut], bool]:
        pool = await self.db.get()
        runs, more = await evals.list_runs(pool, after, limit)
        tallies = await evals.tallies(pool, [r.id for r in runs])
        return [run_out(r, records.run_counts(r, tallies[r.id])) for r in runs], more

    async def results(self, eval_id: str, after: str | None, limit: int,
                      status: str | None) -> tuple[list[OutputItem], bool]:
        run = await self._run(eval_id)
        if status is not None and status not in RESULT_STATUSES:
            raise invalid(f"status must be one of {', '.join(RESULT_STATUSES)}, got {status!r}", param="status")
        cursor = page_cursor(after, "outputitem", "an output item id")
        rows, more = await evals.list_results(await self.db.get(), eval_id, cursor, limit, status)
        return [OutputItem(**records.output_item(run, stored, item)) for stored, item in rows], more

    async def events(self, eval_id: str, after: str | None, limit: int) -> tuple[list[evals.EvalEvent], bool]:
        await self._run(eval_id)
        return await evals.list_events(await self.db.get(), eval_id, page_cursor(after, "evalevent", "an event id"),
                                       limit)

    async def cancel(self, eval_id: str) -> EvalRunOut:
        try:
            run = await evals.request_cancel(await self.db.get(), eval_id)
        except evals.EvalStateError as exc:
            raise ApiError(409, str(exc), param="eval_id", code="eval_finished") from None
        if run is None:
            raise not_found(f"No eval run with id {eval_id}", param="eval_id")
        self.dispatcher.wake.remote()
        return await self._out(run)
