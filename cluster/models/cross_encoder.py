"""Build a real cross-encoder reranker offline: no PyPI package ships cross-encoder weights.

Training pairs are mined from real text (installed packages' documentation, split into sections):
a query is a section's heading (when it says something) or its first sentence, the positive is the section
(without that sentence), and hard negatives are the embedder's nearest other sections. A held-out set of
sections measures MRR@10 of embedder-only ranking against embedder-then-reranker ranking on the same
candidates, and both numbers go into the model's manifest (and docs/benchmarks-history.md).
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ragtune.models.cross_encoder")

SEED = 13
MAX_PASSAGE_CHARS = 1200
CANDIDATES = 10  # re-ranked per held-out query, and the MRR cut-off


@dataclass(frozen=True)
class Example:
    query: str
    passage: str
    doc: str


def _first_sentence(text: str) -> tuple[str, str]:
    match = re.match(r"(.{25,300}?[.!?])\s+(.+)", text, re.S)
    return (match.group(1).strip(), match.group(2).strip()) if match else ("", text)


def mine_examples() -> list[Example]:
    """One (query, positive) example per section of every installed package's documentation."""
    from cluster.content.package_docs import package_docs
    from cluster.content.parsing import DocumentError, parse_document

    examples: list[Example] = []
    for doc in package_docs():
        try:
            parsed = parse_document(doc.content, doc.content_type)
        except DocumentError:
            continue
        for section in parsed.sections:
            body = "\n\n".join(p for p in section.paragraphs if not p.startswith(("```", "    ", ">>>", "|", "[!")))
            body = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", body)  # Markdown links -> their text
            body = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()  # and no HTML tags
            if len(body.split()) < 25:
                continue
            heading = section.heading.strip("# ").strip()
            if len(heading.split()) >= 3:
                query, passage = heading, body
            else:
                query, passage = _first_sentence(body)
                if len(query.split()) < 6 or len(passage.split()) < 20:
                    continue
            examples.append(Example(query=query, passage=passage[:MAX_PASSAGE_CHARS], doc=doc.package))
    return examples


def _mrr(ranked_ids: list[list[int]], positives: list[int], cutoff: int) -> float:
    total = 0.0
    for ids, pos in zip(ranked_ids, positives):
        if pos in ids[:cutoff]:
            total += 1.0 / (ids.index(pos) + 1)
    return total / max(1, len(positives))


def _dedupe(examples: list[Example], passage_emb, threshold: float = 0.95) -> list[int]:
    """Indices of examples whose passage is not a near-copy of an earlier one (forks ship the same README)."""
    keep: list[int] = []
    for i in range(len(examples)):
        if not keep or float((passage_emb[keep] @ passage_emb[i]).max()) < threshold:
            keep.append(i)
    return keep


def train_cross_encoder(base_model: Path, output_dir: Path, train_queries: int = 250, eval_queries: int = 100,
                        negatives: int = 3, epochs: int = 1, loss: str = "bce", max_length: int = 128,
                        passage_chars: int = 500, learning_rate: float = 2e-4, batch_size: int = 32) -> dict:
    """Defaults are sized for a few CPU minutes (about 9 pairs/s here); see docs/benchmarks-history.md for what that buys."""
    import numpy as np
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MultipleNegativesRankingLoss

    started = time.monotonic()
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    examples = [Example(e.query, e.passage[:passage_chars], e.doc) for e in mine_examples()]
    embedder = SentenceTransformer(str(base_model), device="cpu")
    passage_emb = embedder.encode([e.passage for e in examples], batch_size=32, normalize_embeddings=True,
                                  show_progress_bar=False)
    keep = _dedupe(examples, passage_emb)
    order = rng.sample(keep, len(keep))
    examples, passage_emb = [examples[i] for i in order], passage_emb[order]
    held_out = examples[:eval_queries]
    train = examples[eval_queries:eval_queries + train_queries]
    passages = [e.passage for e in examples]  # the pool every query ranks against
    print(f"mined {len(order)} distinct sections; training on {len(train)} queries, holding out {len(held_out)}",
          flush=True)
    query_emb = embedder.encode([e.query for e in examples[:eval_queries + train_queries]], batch_size=64,
                                normalize_embeddings=True, show_progress_bar=False)
    nearest = np.argsort(-(query_emb @ passage_emb.T), axis=1)[:, :max(CANDIDATES, negatives + 1) + 1]
    print(f"embedded {len(passages)} passages in {time.monotonic() - started:.0f} s", flush=True)

    model = CrossEncoder(str(base_model), num_labels=1, max_length=max_length, device="cpu")
    if loss == "mnrl":
        # (query, positive, hard negatives...) tuples; the loss also uses in-batch passages as negatives.
        rows: dict[str, list] = {"query": [], "positive": []} | {f"negative_{k}": [] for k in range(negatives)}
        for i, ex in enumerate(train, start=eval_queries):
            hard = [int(j) for j in nearest[i] if int(j) != i][:negatives]
            rows["query"].append(ex.query), rows["positive"].append(ex.passage)
            for k, j in enumerate(hard):
                rows[f"negative_{k}"].append(passages[j])
        train_loss = MultipleNegativesRankingLoss(model, num_negatives=2)
    else:
        rows = {"query": [], "passage": [], "label": []}
        for i, ex in enumerate(train, start=eval_queries):
            hard = [int(j) for j in nearest[i] if int(j) != i][:negatives]
            rows["query"].append(ex.query), rows["passage"].append(ex.passage), rows["label"].append(1.0)
            for j in hard + [rng.randrange(len(passages))]:
                if j != i:
                    rows["query"].append(ex.query), rows["passage"].append(passages[j]), rows["label"].append(0.0)
        train_loss = BinaryCrossEntropyLoss(model)
    dataset = Dataset.from_dict(rows).shuffle(seed=SEED)
    args = CrossEncoderTrainingArguments(
        output_dir=str(output_dir / "_trainer"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=0.1, seed=SEED, use_cpu=True, logging_steps=10,
        save_strategy="no", report_to=[], disable_tqdm=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=train_loss)
    train_started = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - train_started
    print(f"trained on {len(dataset)} examples ({loss}) in {train_seconds:.0f} s", flush=True)

    # Held-out: the embedder's top CANDIDATES for each query, then the reranker's order of those same ids.
    embed_ranked = [[int(j) for j in nearest[i][:CANDIDATES]] for i in range(len(held_out))]
    rerank_ranked = []
    for ex, ids in zip(held_out, embed_ranked):
        scores = model.predict([(ex.query, passages[j]) for j in ids], batch_size=32, show_progress_bar=False)
        rerank_ranked.append([ids[k] for k in np.argsort(-np.asarray(scores))])
    positives = list(range(len(held_out)))
    metrics = {
        "mined_sections": len(examples), "train_queries": len(train), "train_examples": len(dataset),
        "loss": loss, "max_length": max_length, "learning_rate": learning_rate, "epochs": epochs,
        "heldout_queries": len(held_out), "candidates": CANDIDATES,
        "embedder_mrr_at_10": round(_mrr(embed_ranked, positives, 10), 4),
        "reranker_mrr_at_10": round(_mrr(rerank_ranked, positives, 10), 4),
        "recall_at_10_candidates": round(sum(p in ids for p, ids in zip(positives, embed_ranked)) / len(held_out), 4),
        "train_seconds": round(train_seconds, 1),
    }
    print(f"held-out MRR@10: embedder {metrics['embedder_mrr_at_10']}, reranker {metrics['reranker_mrr_at_10']}",
          flush=True)
    model.save_pretrained(str(output_dir))
    import shutil

    shutil.rmtree(output_dir / "_trainer", ignore_errors=True)
    return metrics
