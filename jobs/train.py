"""LoRA / QLoRA fine-tuning of the served base model, as a Ray Job:

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.train --config train.yaml          # or flags: --dataset data.jsonl --suffix mytask

The classic SFT recipe with trl: JSONL (`{instruction, input, output}` or `{messages}`, see
cluster/training/datasets.py) formatted with the base model's chat template, LoRA r=16 / alpha=32 / dropout 0.05 on
every attention and MLP projection, cosine schedule with warmup, loss on the completion only, an eval split.
The profile picks the method (`qlora` on GPUs: 4-bit nf4 base, double quantization, bf16 compute, paged 8-bit
AdamW; `lora` on CPU); a config may override it, and the choice is logged and written into the adapter's
metadata. The dataset is validated before any model is loaded. The adapter and its metadata are published to the
adapter store in one atomic step at the very end, so a failed or stopped job leaves nothing behind.
Exit codes: 0 published, 1 training failed, 2 the dataset or config was refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from cluster.store.adapters import AdapterError, AdapterRef, AdapterStore, check_name, fine_tuned_name
from cluster.training import datasets
from cluster.training.datasets import DatasetError, Example
from cluster.training.progress import note_line, progress_line

log = logging.getLogger("ragtune.jobs.train")

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EXIT_FAILED, EXIT_REFUSED = 1, 2


@dataclass
class TrainConfig:
    """One fine-tuning run. Defaults are the recipe; unset fields (None) come from the active profile."""

    dataset: str = field(metadata={"help": "JSONL training data: a path or any fsspec URI."})
    suffix: str = field(default="custom", metadata={"help": "Part of the adapter name ft:<base>:<suffix>:<id>."})
    adapter_name: str | None = field(default=None, metadata={"help": "Publish under this exact name instead."})
    base_model: str | None = field(default=None, metadata={"help": "Default: the profile's served LLM."})
    method: Literal["lora", "qlora"] | None = field(default=None, metadata={"help": "Default: the profile's."})
    system_prompt: str | None = field(default=None, metadata={
        "help": "Prepended to every example (unless it has its own) and to fine-tuned route requests."})
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(PROJECTIONS))
    epochs: float = 3.0
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many steps (-1: run all epochs)."})
    batch_size: int | None = field(default=None, metadata={"help": "Per device. Default: the profile's."})
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_length: int = field(default=1024, metadata={"help": "Longer examples are refused, not truncated."})
    eval_dataset: str | None = field(default=None, metadata={"help": "JSONL eval set (default: split off)."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Held out for eval loss when no eval_dataset."})
    eval_steps: int | None = field(default=None, metadata={"help": "Default: about 5 evaluations per run."})
    logging_steps: int = 5
    seed: int = 42
    job_id: str | None = field(default=None, metadata={"help": "The fine-tuning job this run belongs to."})

    def __post_init__(self) -> None:
        problems = []
        if self.rank < 1 or self.alpha < 1:
            problems.append("rank and alpha must be positive")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must be in [0, 1)")
        if not 0 <= self.eval_fraction < 0.5:
            problems.append("eval_fraction must be in [0, 0.5)")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("epochs or max_steps must be positive")
        if self.learning_rate <= 0 or self.max_length < 16 or (self.batch_size is not None and self.batch_size < 1):
            problems.append("learning_rate, batch_size and max_length (>= 16) must be positive")
        if not self.target_modules:
            problems.append("target_modules must not be empty")
        try:
            check_name(f"ft:x:{self.suffix}:x")
            if self.adapter_name:
                check_name(self.adapter_name)
        except AdapterError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Plan:
    """What a run will do, fixed before any model is loaded."""

    config: TrainConfig
    base_model: str      # the profile's reference (local:... or a hub id)
    base_path: str       # what from_pretrained loads
    method: Literal["lora", "qlora"]
    compute_dtype: str
    optim: str
    batch_size: int
    gradient_checkpointing: bool
    adapter_name: str
    train: list[Example]
    eval: list[Example]
    dataset_sha256: str
    dataset_tokens: int
    on_gpu: bool


def base_revision(path: str) -> str | None:
    """A base model's revision: the hub snapshot's commit, or a digest of a locally built model's manifest."""
    from cluster.models.cache import read_manifest

    manifest = read_manifest(Path(path))
    if manifest is not None:
        import hashlib

        return "local-" + hashlib.sha256(json.dumps(manifest.get("files"), sort_keys=True).encode()).hexdigest()[:16]
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def plan(config: TrainConfig) -> Plan:
    """Validate the dataset and resolve everything from settings; raises DatasetError/ValueError when refused."""
    import fsspec
    import torch
    from transformers import AutoTokenizer

    from cluster.models.cache import resolve
    from cluster.settings import Settings

    settings = Settings()
    spec = settings.profile_spec.training
    with fsspec.open(config.dataset, "rb") as fh:
        data = fh.read()
    examples = datasets.parse(data, config.system_prompt, name=config.dataset)
    base_model = config.base_model or settings.llm_spec.model
    base_path = resolve(base_model, settings.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    lengths = datasets.check_lengths(examples, tokenizer, config.max_length, name=config.dataset)
    rng = random.Random(config.seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    n_eval = round(len(examples) * config.eval_fraction) if len(examples) >= 10 and not config.eval_dataset else 0
    held = set(order[:n_eval])
    eval_examples = [examples[i] for i in order if i in held]
    if config.eval_dataset:
        with fsspec.open(config.eval_dataset, "rb") as fh:
            eval_examples = datasets.parse(fh.read(), config.system_prompt, name=config.eval_dataset)
        datasets.check_lengths(eval_examples, tokenizer, config.max_length, name=config.eval_dataset)
    name = config.adapter_name or fine_tuned_name(base_model, config.suffix,
                                                  (config.job_id or uuid.uuid4().hex).removeprefix("ftjob-")[:8])
    method = config.method or spec.method
    return Plan(config=config, base_model=base_model, base_path=base_path, method=method,
                compute_dtype=spec.compute_dtype, optim=spec.optim,
                batch_size=config.batch_size or spec.batch_size, gradient_checkpointing=spec.gradient_checkpointing,
                adapter_name=name, train=[examples[i] for i in order if i not in held], eval=eval_examples,
                dataset_sha256=datasets.digest(data), dataset_tokens=sum(lengths),
                on_gpu=torch.cuda.is_available())


def model_config(p: Plan) -> Any:
    """The run as trl's ModelConfig, so trl builds the LoRA and bitsandbytes configs (get_peft_config,
    get_quantization_config): qlora = 4-bit nf4 base with double quantization, compute in the profile's dtype."""
    from trl import ModelConfig

    c = p.config
    return ModelConfig(model_name_or_path=p.base_path, dtype=p.compute_dtype, use_peft=True, lora_r=c.rank,
                       lora_alpha=c.alpha, lora_dropout=c.dropout, lora_target_modules=list(c.target_modules),
                       lora_task_type="CAUSAL_LM", load_in_4bit=p.method == "qlora", bnb_4bit_quant_type="nf4",
                       use_bnb_nested_quant=True)


def load_model(p: Plan) -> Any:
    """The base model as the method wants it: quantized by trl's config for qlora, full precision for lora."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    quant = get_quantization_config(model_config(p))
    device_map = {"": 0 if p.on_gpu else "cpu"} if quant is not None else None
    return AutoModelForCausalLM.from_pretrained(p.base_path, quantization_config=quant,
                                                dtype=getattr(torch, p.compute_dtype), device_map=device_map)


class ProgressLog:
    """A TrainerCallback printing one line per logging step (step, loss, eval loss, tokens/s, ETA): people read
    it in `ray job logs`, and the fine-tuning dispatcher turns it into job events (`cluster.training.progress`)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.history: list[dict[str, float]] = []
        self.eval_loss: float | None = None
        self.eval_step: int | None = None
        self.diverged: str | None = None  # why training was stopped early, if it was

    def as_callback(self) -> Any:
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
                outer.started = time.monotonic()  # rates count training only, not model load or tokenizing

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
                outer.on_log(state, logs or {})
                if outer.diverged:
                    control.should_training_stop = True

        return _Callback()

    def on_log(self, state: Any, logs: dict[str, float]) -> None:
        if "eval_loss" in logs:
            self.eval_loss, self.eval_step = logs["eval_loss"], state.global_step
        if "loss" not in logs and "eval_loss" not in logs:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        step, total = state.global_step, max(state.max_steps, 1)
        tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        entry = {"event": "eval" if "loss" not in logs else "train", "step": step, "total": total,
                 "loss": logs.get("loss"), "eval_loss": self.eval_loss,
                 "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"), "tokens": tokens,
                 "tokens_per_s": tokens / elapsed, "elapsed_s": elapsed,
                 "eta_s": elapsed / max(step, 1) * (total - step)}
        if "loss" in logs:
            self.history.append({k: v for k, v in entry.items() if v is not None})
        print(progress_line(entry), flush=True)
        loss = logs.get("loss", logs.get("eval_loss"))
        if isinstance(loss, (int, float)) and not math.isfinite(loss) and not self.diverged:
            which = "training" if "loss" in logs else "validation"
            self.diverged = (f"the {which} loss became {loss} at step {step} of {total}; "
                             "try a lower learning_rate_multiplier")


class TrainingDiverged(RuntimeError):
    """Training stopped because its loss went non-finite: nothing is published."""


def train(p: Plan, output_dir: Path, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train and save the PEFT adapter to `output_dir`; returns the metrics."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer, get_peft_config

    from cluster.settings import Settings

    c = p.config
    threads = Settings().profile_spec.training.torch_threads
    if threads and not p.on_gpu:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(p.base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_model(p)
    steps_per_epoch = math.ceil(len(p.train) / (p.batch_size * c.gradient_accumulation_steps))
    total_steps = c.max_steps if c.max_steps > 0 else math.ceil(steps_per_epoch * c.epochs)
    # bitsandbytes on CPU: evaluating a 4-bit model mid-training zeroes the LoRA gradients after it (PLATFORM_NOTES),
    # so there the eval split is scored once, after the last step.
    eval_during = bool(p.eval) and (p.method == "lora" or p.on_gpu)
    eval_steps = c.eval_steps or max(1, total_steps // 5)
    args = SFTConfig(
        output_dir=str(output_dir / "trainer"), per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size, gradient_accumulation_steps=c.gradient_accumulation_steps,
        num_train_epochs=c.epochs, max_steps=c.max_steps, learning_rate=c.learning_rate,
        lr_scheduler_type=c.lr_scheduler, warmup_steps=c.warmup_ratio, weight_decay=c.weight_decay,
        optim=p.optim, bf16=p.compute_dtype == "bfloat16" and p.on_gpu,
        gradient_checkpointing=p.gradient_checkpointing, max_length=c.max_length, completion_only_loss=True,
        eval_strategy="steps" if eval_during else "no", eval_steps=eval_steps,
        logging_steps=c.logging_steps, logging_first_step=True, save_strategy="no", report_to="none",
        disable_tqdm=True, seed=c.seed, data_seed=c.seed, use_cpu=not p.on_gpu, dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )
    peft_config = get_peft_config(model_config(p))
    progress = ProgressLog()
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
        train_dataset=Dataset.from_list([e.as_record() for e in p.train]),
        eval_dataset=Dataset.from_list([e.as_record() for e in p.eval]) if p.eval else None,
        callbacks=[progress.as_callback(), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # its raw dicts would duplicate the progress lines
    trainable = sum(x.numel() for x in trainer.model.parameters() if x.requires_grad)
    print(f"training {total_steps} steps ({len(p.train)} examples x {c.epochs:g} epochs, batch {p.batch_size}); "
          f"{trainable / 1e6:.2f}M trainable LoRA parameters", flush=True)
    started = time.monotonic()
    result = trainer.train()
    runtime = time.monotonic() - started
    if progress.diverged:
        raise TrainingDiverged(progress.diverged)
    if p.eval and progress.eval_step != trainer.state.global_step:
        trainer.evaluate()  # logs through the progress callback
    eval_loss = progress.eval_loss
    trainer.model.save_pretrained(output_dir / "adapter")
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    losses = [h["loss"] for h in progress.history if "loss" in h]
    return {"steps": trainer.state.global_step, "train_loss": round(result.training_loss, 4),
            "first_loss": round(losses[0], 4) if losses else None,
            "final_loss": round(losses[-1], 4) if losses else None,
            "eval_loss": round(eval_loss, 4) if eval_loss is not None else None,
            "trained_tokens": tokens, "tokens_per_s": round(tokens / runtime, 1), "train_seconds": round(runtime, 1),
            "trainable_parameters": trainable,
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if p.on_gpu else None,
            "loss_history": losses}


def ray_submission_id() -> str | None:
    """The Ray job this process is the entrypoint of (Ray passes it in the driver's job config)."""
    try:
        return json.loads(os.environ["RAY_JOB_CONFIG_JSON_ENV_VAR"])["metadata"]["job_submission_id"]
    except (KeyError, ValueError, TypeError):
        return None


def metadata(p: Plan, metrics: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to know what an adapter is and to reproduce it."""
    c = p.config
    hyper = {k: v for k, v in asdict(c).items() if k not in ("dataset", "job_id", "adapter_name", "system_prompt")}
    hyper.update(batch_size=p.batch_size, optim=p.optim, gradient_checkpointing=p.gradient_checkpointing)
    return {
        "base_model": p.base_model, "base_model_revision": base_revision(p.base_path),
        "method": p.method, "compute_dtype": p.compute_dtype,
        "quantization": {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True}
        if p.method == "qlora" else None,
        "dataset": {"uri": c.dataset, "sha256": p.dataset_sha256, "train_examples": len(p.train),
                    "eval_examples": len(p.eval), "tokens": p.dataset_tokens},
        "hyperparameters": hyper, "metrics": metrics, "system_prompt": c.system_prompt,
        "job_id": c.job_id, "ray_job_id": ray_submission_id(),
        "created": time.time(), "trained_by": "jobs.train",
    }


def run(p: Plan, callbacks: Sequence[Any] = ()) -> AdapterRef:
    """Train, then publish the adapter with its metadata in one atomic step."""
    from cluster.settings import Settings

    settings = Settings()
    config = p.config
    base = "4-bit nf4 base, double quant, " if p.method == "qlora" else "full-precision base, "
    where = "GPU" if p.on_gpu else "CPU"
    print(note_line("plan", f"method={p.method} ({base}{p.compute_dtype} compute, optim {p.optim}) on {where}; "
                            f"base {p.base_model}; adapter {p.adapter_name}"), flush=True)
    print(note_line("dataset", f"{config.dataset} sha256 {p.dataset_sha256[:16]}: {len(p.train)} train / "
                               f"{len(p.eval)} eval examples, {p.dataset_tokens} tokens"), flush=True)
    store = AdapterStore.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="ragtune-train-") as tmp:
        metrics = train(p, Path(tmp), callbacks)
        ref = store.put(p.adapter_name, Path(tmp) / "adapter", metadata(p, metrics))
    print(f"published adapter {ref.name}@{ref.version}", flush=True)
    print("result " + json.dumps({"adapter": ref.name, "version": ref.version,
                                  **{k: v for k, v in metrics.items() if k != "loss_history"}}), flush=True)
    return ref


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    from trl import TrlParser

    (config,) = TrlParser((TrainConfig,)).parse_args_and_config(list(argv) if argv is not None else None)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        p = plan(parse_args(argv))
    except (DatasetError, ValueError, AdapterError, OSError) as exc:
        print(note_line("refused", str(exc)), file=sys.stderr, flush=True)
        return EXIT_REFUSED
    try:
        run(p)  # any other failure here is a traceback in the job's log and exit code 1
    except TrainingDiverged as exc:
        print(note_line("failed", str(exc)), file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
