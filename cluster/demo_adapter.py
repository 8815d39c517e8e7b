"""The demo's LoRA adapter, trained here in about 3 minutes on 2 CPU cores: package facts in one line.

The task: "What is <package>?" -> "<package>: <its one-line summary>", from the metadata of the installed
packages (real facts the base model mostly does not know). It makes the fine-tuned and hybrid routes show
something real in `make demo` until the training pipeline (jobs/, issue 4) produces adapters through the queue.
A plain PyTorch loop over peft keeps it small; the loss covers the answer tokens only.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from cluster.adapters import AdapterRef, AdapterStore
from cluster.corpus import DEMO_PACKAGES

NAME = "package-facts"
QUESTIONS = ("What is {p}?", "Tell me about {p}.", "What does the {p} package do?")


@dataclass(frozen=True)
class DemoAdapterConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 1e-3
    epochs: int = 3
    batch_size: int = 8
    other_packages: int = 48  # besides the demo's own packages
    seed: int = 0


def examples(config: DemoAdapterConfig) -> list[tuple[str, str]]:
    """(question, answer) pairs: every phrasing for the demo packages, one for a sample of the others."""
    summaries = {}
    for dist in md.distributions():
        name, summary = dist.metadata["Name"], (dist.metadata["Summary"] or "").strip()
        if name and 10 <= len(summary) <= 160 and "\n" not in summary:
            summaries[name.lower()] = (name, summary)
    demo = [summaries[p.lower()] for p in DEMO_PACKAGES if p.lower() in summaries]
    others = sorted(v for k, v in summaries.items() if v not in demo)
    rng = random.Random(config.seed)
    rng.shuffle(others)
    pairs = [(q.format(p=name), f"{name}: {summary}") for name, summary in demo for q in QUESTIONS]
    pairs += [(rng.choice(QUESTIONS).format(p=name), f"{name}: {summary}")
              for name, summary in others[:config.other_packages]]
    rng.shuffle(pairs)
    return pairs


def train(base_model_dir: str, out_dir: Path, config: DemoAdapterConfig = DemoAdapterConfig(),
          echo: Callable[[str], None] = print) -> dict[str, float]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    rows = []
    for question, answer in examples(config):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                               add_generation_prompt=True, return_dict=False)
        full = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": answer}], tokenize=True,
                                             return_dict=False)
        rows.append((full, len(prompt)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    steps = config.epochs * ((len(rows) + config.batch_size - 1) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=steps,
                                                    pct_start=0.1, anneal_strategy="cos")
    model.train()
    started, step, loss_value = time.monotonic(), 0, float("nan")
    for epoch in range(config.epochs):
        random.Random(epoch).shuffle(rows)
        for i in range(0, len(rows), config.batch_size):
            batch = rows[i:i + config.batch_size]
            width = max(len(ids) for ids, _ in batch)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
            labels = input_ids.clone()
            for row, (ids, prompt_len) in enumerate(batch):
                labels[row, :prompt_len] = -100  # completion-only loss
                labels[row, len(ids):] = -100
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            loss_value = loss.item()
            if step % 10 == 0 or step == steps:
                elapsed = time.monotonic() - started
                echo(f"  step {step}/{steps}  loss {loss_value:.3f}  {elapsed:.0f} s "
                     f"(ETA {elapsed / step * (steps - step):.0f} s)")
    model.save_pretrained(out_dir)
    return {"final_loss": round(loss_value, 4), "steps": step, "examples": len(rows),
            "train_seconds": round(time.monotonic() - started, 1)}


def ensure(store: AdapterStore, base_model_dir: str, base_model: str,
           echo: Callable[[str], None] = print) -> AdapterRef:
    """The demo adapter from the store, trained and published first if it is not there."""
    ref = store.get(NAME)
    if ref is not None:
        return ref
    config = DemoAdapterConfig()
    echo(f"training the demo adapter {NAME!r} (LoRA r={config.rank} on {base_model}; once, about 3 minutes on "
         "2 CPU cores) ...")
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train(base_model_dir, Path(tmp) / NAME, config, echo)
        metadata = {"base_model": base_model, "task": "package facts: 'What is X?' -> 'X: <summary>'",
                    "config": asdict(config), "metrics": metrics, "created": time.time(),
                    "trained_by": "cluster.demo_adapter"}
        ref = store.put(NAME, Path(tmp) / NAME, metadata)
    echo(f"published adapter {ref.name}@{ref.version}: {json.dumps(metrics)}")
    return ref
