"""Builds the grounded-answering LoRA adapter (`models prepare`, once; checksummed in the models cache like every
built model): examples synthesised from the demo corpus (cluster/training/grounded.py), trained by the one
training job (`python -m jobs.train`, reached by name as cluster code reaches jobs) into a private adapter store,
then copied into the cache. `ragtune up` publishes it to the cluster's adapter store (`publish`), and the RAG
route answers with it where the profile names it (`answer_adapter`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster.settings import Settings
    from cluster.store.adapters import AdapterRef

ADAPTER_NAME = "ragtune-grounded"
EXAMPLES = 160
# Version 1 said "not found" in a fifth of its examples and then declined 40% of held-out pydoc questions
# (docs/eval.md); one in ten is enough to learn the sentence.
UNANSWERABLE_SHARE = 0.1
WORDS_PER_SOURCE = 50
HELD_OUT = 0.1
SEED = 5
# Training on 2 CPU cores runs at about 95 tokens/s whatever the length (docs/eval.md): one epoch of 160 examples
# of about 400 tokens (three sources trimmed to ~50 words) is 36 steps at batch 4, about 10 minutes.
TRAIN_FLAGS = ("--epochs", "1", "--batch_size", "4", "--learning_rate", "4e-4", "--max_length", "1536",
               "--rank", "16", "--alpha", "32", "--eval_fraction", str(HELD_OUT), "--eval_steps", "10000",
               "--logging_steps", "6",
               "--seed", str(SEED))


def training_examples(settings: "Settings", n: int = EXAMPLES, seed: int = SEED) -> list[dict[str, Any]]:
    """Every installed package's documentation (the demo corpus and about 200 more: varied text, so the
    behaviour is not tied to the demo's documents) chunked as ingestion chunks it, then synthesised into
    grounded-answer examples."""
    from cluster.content.chunking import Chunker
    from cluster.content.package_docs import package_docs
    from cluster.content.parsing import parse_document
    from cluster.training.grounded import passages, synthesize

    chunker = Chunker.from_settings(settings)
    documents = []
    for doc in package_docs():
        parsed = parse_document(doc.titled(), doc.content_type)
        documents.append((doc.filename, parsed.title, [c.text for c in chunker.chunk(parsed)]))
    return synthesize(passages(documents), n, seed, words_per_source=WORDS_PER_SOURCE,
                      unanswerable_share=UNANSWERABLE_SHARE)


def build(target: Path, models_dir: Path) -> dict[str, Any]:
    from cluster.settings import Settings
    from cluster.store.adapters import AdapterStore

    settings = Settings(models_dir=models_dir, llm_variant="default")
    examples = training_examples(settings)
    with tempfile.TemporaryDirectory(prefix="ragtune-grounded-") as tmp:
        data = Path(tmp) / "grounded.jsonl"
        data.write_text("".join(json.dumps(e) + "\n" for e in examples))
        store = Path(tmp) / "store"
        env = {**os.environ, "RAGTUNE_MODELS_DIR": str(models_dir), "RAGTUNE_ADAPTER_STORE": str(store),
               "RAGTUNE_LLM_VARIANT": "default", "HF_HUB_OFFLINE": "1"}
        print(f"  training on {len(examples)} synthesised examples (progress lines follow)", flush=True)
        subprocess.run([sys.executable, "-m", "jobs.train", "--dataset", str(data), "--adapter_name", ADAPTER_NAME,
                        *TRAIN_FLAGS], env=env, check=True)
        AdapterStore(str(store), Path(tmp) / "cache").export(ADAPTER_NAME, target)
    metadata = json.loads((target / "ragtune.json").read_text())
    metrics = metadata.get("metrics", {})
    return {"examples": len(examples), "dataset_sha256": metadata["dataset"]["sha256"],
            **{k: metrics.get(k) for k in ("steps", "first_loss", "final_loss", "eval_loss", "train_seconds")}}


def publish(settings: "Settings") -> "AdapterRef | None":
    """Put the profile's answer adapter into the cluster's adapter store unless that exact version is there."""
    from cluster.models.cache import resolve
    from cluster.store.adapters import AdapterStore, directory_version

    ref = settings.profile_spec.answer_adapter
    if ref is None:
        return None
    built = Path(resolve(ref, settings.models_dir))
    store = AdapterStore.from_settings(settings)
    current = store.get(ADAPTER_NAME)
    if current is not None and current.version == directory_version(built):
        return current
    return store.put(ADAPTER_NAME, built, json.loads((built / "ragtune.json").read_text()))
