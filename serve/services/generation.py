"""The generation routes behind the ingress: pick the model and route, retrieve, build the prompt, stream.

rag:       embed -> hybrid search -> (rerank) -> relevance threshold -> sources in the prompt -> base model
hybrid:    the same retrieval, a one-line system prompt, the adapter
finetuned: the client's messages (plus the adapter's training system prompt, if it has one), the adapter
plain:     the client's messages, the base model
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator

from ray.serve.handle import DeploymentHandle

from cluster.models.grounded_adapter import ADAPTER_NAME as GROUNDED_ADAPTER
from cluster.settings import Settings
from cluster.store.adapters import AdapterRef, AdapterStore
from cluster.store.knowledge import SearchFilters
from serve.deployments.llm_protocol import (
    Delta, Finished, GenerationRequest, Rejected, SamplingOptions, Started, replica_lost,
)
from serve.schemas.common import Route
from serve.schemas.generation import ChatCompletionRequest, CompletionRequest
from serve.schemas.retrieval import SearchFiltersIn
from serve.services import prompts
from serve.services.cache import CacheKey, CacheService, Lookup, scope_digest
from serve.services.citations import CitationTracker, SourceText
from serve.services.errors import ApiError, invalid, not_found
from serve.services.guardrails import GuardrailService
from serve.services.knowledge import KnowledgeService, RankedHit, check_query, retrieval_bounds
from serve.services.timing import elapsed_ms

log = logging.getLogger("ray.serve.ragtune.generation")


@dataclass(frozen=True)
class RetrievalOptions:
    top_k: int
    top_n: int
    rerank: bool
    filters: SearchFilters
    rerank_reason: str = "requested"
    rewrite: bool = True


@dataclass(frozen=True)
class Plan:
    """Everything a generation needs, validated (`GenerationService.plan` builds it from the request body)."""

    route: Route
    model: str  # what the client named, echoed back
    adapter: AdapterRef | None
    messages: list[dict[str, str]] | None  # chat; None for a raw completion prompt
    prompt: str | None
    sampling: SamplingOptions
    retrieval: RetrievalOptions | None
    request_id: str | None = None  # the HTTP request's id, carried into the engine's request id
    sampling_from_profile: tuple[str, ...] = ()  # the sampling fields the request left to the route's defaults
    answer_adapter: AdapterRef | None = None  # rag: the profile's grounded-answering adapter, when it answers
    cache_key: CacheKey | None = None  # None: the cache is bypassed (`cache_bypass` says why)
    cache_bypass: str | None = None

    @property
    def structured(self) -> bool:
        return self.sampling.structured

    def applied(self) -> dict[str, Any]:
        """What ran, for the response: retrieval (rag, hybrid) and sampling, and which came from the profile."""
        r = self.retrieval
        return {"retrieval": None if r is None else {"top_k": r.top_k, "top_n": r.top_n, "rerank": r.rerank,
                                                     "rerank_reason": r.rerank_reason},
                "sampling": {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                             "repetition_stop": self.sampling.repetition_stop is not None,
                             "from_profile": list(self.sampling_from_profile)},
                "answer_adapter": self.answer_adapter.model_id if self.answer_adapter else None}


@dataclass
class Answer:
    """A streamed answer: iterate for text pieces; the summary fields are complete once iteration ends."""

    route: Route
    pieces: AsyncIterator[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    sources: dict[int, RankedHit] = field(default_factory=dict)
    citations: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float | None] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)  # Plan.applied(): what retrieval and sampling ran with
    structured: bool = False  # a JSON answer (response_format): citations are recorded, never written into it
    resumes: int = 0  # times another replica went on with the answer after the one generating it died
    lookup: Lookup | None = None  # what the cache did; a miss is stored once the answer has streamed to its end
    adapter: str | None = None  # the adapter name@version that answered, if one did


class GenerationService:
    def __init__(self, settings: Settings, knowledge: KnowledgeService, llm: DeploymentHandle,
                 store: AdapterStore, llm_tokenizer: Any, cache: CacheService | None = None,
                 guardrails: GuardrailService | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.guardrails = guardrails
        self.spec = settings.llm_spec
        self.retrieval = settings.profile_spec.retrieval
        self.knowledge = knowledge
        self.llm = llm
        self.store = store
        self.tokenizer = llm_tokenizer

    # ----------------------------------------------------------------------------------- model and route

    @property
    def base_model(self) -> str:
        return self.spec.served_name

    def resolve_model(self, model: str) -> AdapterRef | None:
        """None for the base model; the adapter's current version otherwise; 404 for anything else."""
        if model in (self.base_model, self.spec.model):
            return None
        ref = self.store.get(model)
        if ref is None:
            raise not_found(f"The model {model!r} does not exist: it is neither the base model "
                            f"({self.base_model!r}) nor an adapter in the store (GET /v1/models)", param="model")
        return ref

    def models(self) -> list[AdapterRef]:
        """Every adapter in the store (the base model is `base_model`)."""
        return self.store.list()

    async def delete_adapter(self, model_id: str) -> None:
        """New requests get 404 at once; requests already streaming keep their engine's copy until they end."""
        if model_id in (self.base_model, self.spec.model):
            raise invalid(f"{model_id!r} is the base model; only adapters can be deleted", param="model")
        if not await asyncio.to_thread(self.store.delete, model_id):
            raise not_found(f"The model {model_id!r} does not exist", param="model")
        if self.cache is not None:
            await self.cache.forget_model(model_id)

    async def engine_stats(self) -> dict[str, Any]:
        return await self.llm.stats.remote()

    def route_for(self, requested: Route | None, adapter: AdapterRef | None, default: Route) -> Route:
        route = requested or ("finetuned" if adapter else default)
        if route in ("finetuned", "hybrid") and adapter is None:
            raise invalid(f"route {route!r} needs an adapter: set `model` to an adapter's name (GET /v1/models)",
                          param="model", code="adapter_required")
        if route in ("rag", "plain") and adapter is not None:
            raise invalid(f"route {route!r} uses the base model {self.base_model!r}; for an adapter with retrieval "
                          "use route 'hybrid', without retrieval 'finetuned'", param="route")
        return route

    def max_tokens(self, wanted: int | None) -> int | None:
        limit = self.spec.max_model_len - 1
        if wanted is not None and wanted > limit:
            raise invalid(f"max_tokens is {wanted}; this model allows at most {limit}", param="max_tokens")
        return wanted

    def retrieval_options(self, top_k: int | None, top_n: int | None, rerank: bool | None,
                          filters: SearchFilters, rewrite: bool | None = None) -> RetrievalOptions:
        top_k, top_n = retrieval_bounds(self.settings.search, top_k, top_n, self.retrieval.top_k, self.retrieval.top_n)
        reranks, reason = self.knowledge.rerank_choice(rerank)
        return RetrievalOptions(top_k, top_n, reranks, filters, reason, self.knowledge.rewrite_choice(rewrite))

    def plan(self, body: ChatCompletionRequest | CompletionRequest, adapter: AdapterRef | None, route: Route,
             request_id: str | None, tenant: str = "local", no_cache: bool = False) -> Plan:
        """Everything the request asks for, checked: sampling, retrieval options, the conversation."""
        if route in ("finetuned", "plain") and not body.retrieves_nothing():
            raise invalid(f"route {route!r} does not retrieve: drop top_k, top_n, filters, rerank and rewrite",
                          param="route")
        if body.grounded is not None and route != "rag":
            raise invalid(f"`grounded` applies to the rag route, not {route!r}", param="grounded")
        defaults = self.settings.profile_spec.sampling
        sampling = body.to_sampling_options(self.max_tokens(body.token_limit()), getattr(defaults, route),
                                            defaults.repetition_stop)
        from_profile = tuple(f for f in ("temperature", "top_p") if getattr(body, f) is None)
        retrieval = None
        if route in ("rag", "hybrid"):
            retrieval = self.retrieval_options(body.top_k, body.top_n, body.rerank,
                                               SearchFiltersIn.to_filters(body.filters), body.rewrite)
        chat = isinstance(body, ChatCompletionRequest)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages] if chat else None
        question = messages[-1]["content"] if messages else body.text()  # type: ignore[union-attr]
        if retrieval is not None:
            check_query(question, self.settings.search, "messages" if chat else "prompt")
        grounded = self.settings.profile_spec.answer_adapter_default if body.grounded is None else body.grounded
        answer_adapter = self.answer_adapter() if route == "rag" and grounded \
            and not sampling.structured else None  # a JSON answer is not what the adapter learned to write
        bypass = "disabled" if self.cache is None else self.cache.bypass_reason(
            body.cache, no_cache, sampling.temperature, sampling.structured)
        key = None
        if bypass is None:
            key = CacheKey(scope_digest(
                route=route, model=adapter.model_id if adapter else self.base_model, tenant=tenant,
                answer_adapter=answer_adapter.model_id if answer_adapter else None, sampling=sampling,
                retrieval=retrieval, kind="chat" if chat else "completion",
                earlier=messages[:-1] if messages else None),
                model=adapter.model_id if adapter else self.base_model, question=question, exact=not chat,
                retrieves=retrieval is not None)
        return Plan(route, body.model, adapter, messages, None if chat else question, sampling, retrieval,
                    request_id=request_id, sampling_from_profile=from_profile, answer_adapter=answer_adapter,
                    cache_key=key, cache_bypass=bypass)

    def answer_adapter(self) -> AdapterRef | None:
        """The profile's grounded-answering adapter as the store has it now (published when the app was built);
        absent, the base model answers and the response's `answer_adapter` is null."""
        if self.settings.profile_spec.answer_adapter is None:
            return None
        ref = self.store.get(GROUNDED_ADAPTER)
        if ref is None:
            log.warning("the profile's answer adapter %s is not in the adapter store; the base model answers",
                        GROUNDED_ADAPTER)
        return ref

    # ----------------------------------------------------------------------------------------- retrieval

    def _relevant(self, hit: RankedHit) -> bool:
        score = hit.rerank_score if self.retrieval.relevance == "rerank" else hit.candidate.similarity
        return score is not None and score >= self.retrieval.min_relevance

    def _within_budget(self, hits: list[RankedHit]) -> list[RankedHit]:
        kept, used = [], 0
        for hit in hits:
            n = len(self.tokenizer(hit.candidate.text, add_special_tokens=False)["input_ids"]) + 16
            if kept and used + n > self.retrieval.max_context_tokens:
                break
            kept.append(hit)
            used += n
        return kept

    # --------------------------------------------------------------------------------------------- answer

    async def answer(self, plan: Plan) -> Answer:
        """Retrieval and the LLM's first event happen here, so errors surface before any response starts."""
        started = time.perf_counter()
        timings: dict[str, float | None] = {"rewrite_ms": 0.0, "embed_ms": 0.0, "search_ms": 0.0, "rerank_ms": 0.0,
                                            "cache_ms": 0.0}
        guarded: dict[str, Any] = {"input": None, "chunks": []}
        if self.guardrails is not None:  # before anything else: a blocked request costs nothing and caches nothing
            asked = plan.messages or [{"role": "user", "content": plan.prompt or ""}]
            guarded["input"] = self.guardrails.check_input(plan.route, asked).as_dict()
        lookup = Lookup("bypass", reason=plan.cache_bypass)
        if plan.cache_key is not None and self.cache is not None:
            lookup = await self.cache.lookup(plan.cache_key)
            timings["cache_ms"] = lookup.lookup_ms
            if lookup.status == "hit":
                return self._cached(plan, lookup, started, timings, guarded)
        messages, sources, applied = plan.messages, {}, plan.applied()
        applied["cache"] = lookup.info()
        applied["guardrails"] = guarded
        canary = None
        if plan.retrieval is not None:
            question = messages[-1]["content"] if messages else (plan.prompt or "")
            history = [m["content"] for m in (messages or [])[:-1] if m["role"] == "user"]
            r = plan.retrieval
            outcome = await self.knowledge.search(question, r.top_k, r.top_n, r.rerank, r.filters,
                                                  rewrite=r.rewrite, history=history, per_document_cap=False)
            timings.update(rewrite_ms=outcome.rewrite_ms, embed_ms=outcome.embed_ms, search_ms=outcome.search_ms,
                           rerank_ms=outcome.rerank_ms)
            applied["retrieval"].update(queries=list(outcome.queries), rewrites=list(outcome.rewrites))
            hits = self._within_budget(self._guard_chunks(plan.route, [h for h in outcome.hits if self._relevant(h)],
                                                          guarded))
            sources = {i: h for i, h in enumerate(hits, start=1)}
            if not sources:
                applied["answer_adapter"] = None  # it answers from sources only
            if not sources and plan.route == "rag" and not plan.structured:  # a JSON answer is asked for: no shortcut
                timings.update(generate_ms=0.0, ttft_ms=elapsed_ms(started), total_ms=elapsed_ms(started))
                answer = Answer(plan.route, _single(prompts.NOT_FOUND), finish_reason="stop", timings=timings,
                                applied=applied, lookup=lookup)  # no adapter answered: the fixed abstention
                self._remember(answer, prompts.NOT_FOUND)
                return answer
            conversation = messages or [{"role": "user", "content": plan.prompt or ""}]
            if sources:
                blocks = [prompts.source_block(n, h.candidate.title, h.candidate.text) for n, h in sources.items()]
                system = prompts.RAG_SYSTEM if plan.route == "rag" else prompts.HYBRID_SYSTEM
                canary = self.guardrails.canary(plan.route, json.dumps([system, blocks, conversation])) \
                    if self.guardrails else None
                messages = prompts.with_sources(conversation, blocks, prompts.with_canary(system, canary))
            else:  # hybrid with nothing relevant: the adapter answers on its own
                messages = prompts.as_chat(conversation, plan.adapter.metadata.get("system_prompt")
                                           if plan.adapter else None)
        elif messages is not None:
            default_system = plan.adapter.metadata.get("system_prompt") if plan.adapter else None
            messages = prompts.as_chat(messages, default_system)

        # Unique per engine even if a client reuses its X-Request-ID; greppable by the HTTP request's id.
        lora = plan.answer_adapter if sources and plan.answer_adapter else plan.adapter
        request = GenerationRequest(request_id=f"{plan.request_id or 'gen'}-{uuid.uuid4().hex[:12]}",
                                    messages=tuple(messages) if messages is not None else None,
                                    prompt=None if messages is not None else plan.prompt,
                                    adapter=lora.model_id if lora else None, sampling=plan.sampling)
        t_generate = time.perf_counter()
        first, events = await self._start(request)
        answer = Answer(plan.route, _single(""), prompt_tokens=first.prompt_tokens, sources=sources, timings=timings,
                        applied=applied, structured=plan.structured, lookup=lookup,
                        adapter=lora.model_id if lora else None)
        answer.pieces = self._stream(answer, self._resumable(answer, request, first, events), started, t_generate,
                                     canary)
        return answer

    async def _start(self, request: GenerationRequest) -> tuple[Started, Any]:
        """Submit to an LLM replica and wait for its first event; a replica lost before it answers is retried."""
        for attempt in itertools.count(1):
            handle = self.llm.options(stream=True, multiplexed_model_id=request.adapter or "")
            events = handle.generate.remote(request)
            try:
                first = await events.__anext__()
            except Exception as exc:
                events.cancel()
                if not replica_lost(exc) or attempt > self.spec.resume_attempts:
                    raise
                log.warning("LLM replica lost before %s started (%s); submitting it again (%d of %d)",
                            request.request_id, type(exc).__name__, attempt, self.spec.resume_attempts)
                continue
            if isinstance(first, Rejected):
                events.cancel()
                raise ApiError(first.status, first.message, param=first.param, code=first.code)
            assert isinstance(first, Started)
            return first, events
        raise AssertionError("unreachable")

    async def _resumable(self, answer: Answer, request: GenerationRequest, first: Started,
                         events: Any) -> AsyncIterator[Delta | Finished]:
        """The engine's deltas and its Finished event, as one answer even when the replica generating it dies: another
        replica goes on from the text already streamed (the same prompt, the rest of the token budget). A JSON answer
        is only restarted before its first token: guided decoding cannot pick up mid-document."""
        streamed: list[str] = []
        tokens = 0  # completion tokens so far, over every replica that worked on the answer
        while True:
            resumed_at = tokens
            try:
                async for event in events:
                    if isinstance(event, Delta):
                        streamed.append(event.text)
                        tokens += event.tokens
                        yield event
                    elif isinstance(event, Finished):
                        yield replace(event, prompt_tokens=first.prompt_tokens,
                                      completion_tokens=resumed_at + event.completion_tokens)
                return
            except Exception as exc:
                if not replica_lost(exc) or answer.resumes >= self.spec.resume_attempts \
                        or (tokens and request.sampling.structured):
                    raise
                error = exc
            finally:
                events.cancel()  # a no-op when the stream ended; stops the engine when the client went away
            answer.resumes += 1
            left = first.max_tokens - tokens
            log.warning("LLM replica lost mid-answer %s after %d tokens (%s); resuming on another replica (%d of %d)",
                        request.request_id, tokens, type(error).__name__, answer.resumes, self.spec.resume_attempts)
            if left < 1:  # it was cut at its last token
                yield Finished("length", first.prompt_tokens, tokens)
                return
            _, events = await self._start(replace(
                request, request_id=f"{request.request_id}-r{answer.resumes}", continuation="".join(streamed),
                sampling=replace(request.sampling, max_tokens=left)))

    async def _stream(self, answer: Answer, events: AsyncIterator[Delta | Finished], started: float,
                      t_generate: float, canary: str | None = None) -> AsyncIterator[str]:
        tracker = CitationTracker([SourceText(n, h.candidate.text) for n, h in answer.sources.items()])
        streamed: list[str] = []
        seen = ""  # the model's own latest text, as long as the canary: where a leak would show (markers are ours)
        try:
            async for event in events:
                if isinstance(event, Delta):
                    if answer.timings.get("ttft_ms") is None:
                        answer.timings["ttft_ms"] = elapsed_ms(started)
                    if canary:
                        seen += event.text
                        if canary in seen:
                            self._leaked(answer)
                        seen = seen[-len(canary):]
                    text = tracker.feed(event.text) if answer.sources else event.text
                    if answer.structured:
                        text = event.text  # the JSON as generated; the tracker only records what it cites
                    if text:
                        streamed.append(text)
                        yield text
                elif isinstance(event, Finished):
                    answer.finish_reason = event.finish_reason
                    answer.completion_tokens = event.completion_tokens
            tail = tracker.finish() if answer.sources else ""
            if tail and not answer.structured:
                streamed.append(tail)
                yield tail
        finally:
            await events.aclose()  # the client went away: `_resumable` cancels the engine's stream
        answer.timings["generate_ms"] = elapsed_ms(t_generate)
        answer.timings["total_ms"] = elapsed_ms(started)
        answer.citations = [self._citation(c.number, c.quote, answer.sources[c.number])
                            for c in sorted(tracker.cited.values(), key=lambda c: c.number)]
        self._remember(answer, "".join(streamed))

    # ---------------------------------------------------------------------------------------- guardrails

    def _guard_chunks(self, route: Route, hits: list[RankedHit], guarded: dict[str, Any]) -> list[RankedHit]:
        """Retrieved chunks with an injection are stripped (or flagged) before the prompt is built."""
        if self.guardrails is None or not hits:
            return hits
        kept = []
        for hit, decision in zip(hits, self.guardrails.check_chunks(route, [h.candidate.text for h in hits])):
            if decision.action != "pass":
                c = hit.candidate
                guarded["chunks"].append({"document_id": str(c.document_id), "source": c.source,
                                          "chunk_ordinal": c.ordinal, **decision.as_dict()})
            if decision.action != "strip":
                kept.append(hit)
        return kept

    def _leaked(self, answer: Answer) -> None:
        """The system prompt's canary is in the answer: the prompt leaked (an injection worked). The answer ends
        here, as an error; nothing of it is cached."""
        assert self.guardrails is not None
        self.guardrails.leaked()
        answer.applied.setdefault("guardrails", {})["output"] = "canary"
        raise ApiError(400, "the answer was cut: it began to reveal the system prompt (the prompt-injection "
                            "guardrails' canary appeared in it)", code="content_policy")

    # --------------------------------------------------------------------------------------------- cache

    def _remember(self, answer: Answer, text: str) -> None:
        """A miss whose answer streamed to its end is stored (in the background), with the documents in its prompt."""
        lookup = answer.lookup
        if lookup is None or lookup.status != "miss" or lookup.key is None or self.cache is None \
                or answer.finish_reason not in ("stop", "length"):
            return
        applied = {k: v for k, v in answer.applied.items() if k != "cache"}
        record = {"text": text, "finish_reason": answer.finish_reason, "prompt_tokens": answer.prompt_tokens,
                  "completion_tokens": answer.completion_tokens, "citations": answer.citations, "applied": applied}
        sources = {h.candidate.document_id: h.candidate.content_hash for h in answer.sources.values()}
        self.cache.store_later(lookup.key, record, sources)

    def _cached(self, plan: Plan, lookup: Lookup, started: float, timings: dict[str, float | None],
                guarded: dict[str, Any]) -> Answer:
        """A hit: the stored answer, its citations and token counts, streamed in pieces when asked."""
        stored = lookup.answer or {}
        applied = {**stored.get("applied", plan.applied()), "cache": lookup.info()}
        applied["guardrails"] = {**applied.get("guardrails", {}), "input": guarded["input"]}  # chunks: as answered
        timings.update(generate_ms=0.0, ttft_ms=elapsed_ms(started), total_ms=elapsed_ms(started))
        return Answer(plan.route, _pieces(stored.get("text", "")), prompt_tokens=stored.get("prompt_tokens", 0),
                      completion_tokens=stored.get("completion_tokens", 0),
                      finish_reason=stored.get("finish_reason", "stop"), citations=stored.get("citations", []),
                      timings=timings, applied=applied, structured=plan.structured, lookup=lookup,
                      adapter=plan.adapter.model_id if plan.adapter else applied.get("answer_adapter"))

    @staticmethod
    def _citation(number: int, quote: str, hit: RankedHit) -> dict[str, Any]:
        c = hit.candidate
        return {"source_number": number, "document_id": str(c.document_id), "source": c.source, "title": c.title,
                "chunk_ordinal": c.ordinal, "quote": quote or c.text, "chunk_text": c.text,
                "rerank_score": hit.rerank_score, "vector_score": c.similarity}


async def _single(text: str) -> AsyncIterator[str]:
    if text:
        yield text


async def _pieces(text: str, size: int = 24) -> AsyncIterator[str]:
    """A cached answer as a stream: pieces of about `size` characters, cut after a space."""
    start = 0
    while start < len(text):
        end = text.find(" ", start + size)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end
