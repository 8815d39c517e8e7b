"""The guardrails' classifier: TF-IDF word and character n-grams plus the rules' findings, logistic regression,
P(injection). Trained in about two seconds, deterministically, from the labelled sets in `cluster/evaluation/sets/`
(which are trained on: the README there) and real documentation paragraphs as benign text.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from cluster.guardrails.rules import rule_features

SETS = Path(__file__).resolve().parents[1] / "evaluation" / "sets"
# Held-out sets 1 and 2 were each run once as sealed measurements, then used for error analysis: now they are training
# data (the README in SETS); set 3 and the wild-jailbreak hold-out are never trained on.
TRAINING_SETS = tuple(SETS / name for name in ("injections_train.jsonl", "jailbreaks_wild_train.jsonl",
                                               "injections_heldout.jsonl", "injections_heldout2.jsonl"))
DOC_PARAGRAPHS = 1500  # benign documentation paragraphs from the installed packages' descriptions


class Classifier:
    """TF-IDF word and character n-grams + the rules' findings, logistic regression: P(injection)."""

    def __init__(self, examples: list[tuple[str, int]]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        features = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)),
            # Character n-grams across word boundaries: they see "ignore your", "l33t", "s y s t e m" and words
            # glued together (5-fold CV: 0.856 detection at 0.02 false positives, against 0.814 within words).
            ("chars", TfidfVectorizer(analyzer="char", ngram_range=(3, 6), sublinear_tf=True, min_df=2)),
            ("rules", FunctionTransformer(rule_features)),  # what the rules found, weighed by the regression
        ])
        self.model = make_pipeline(features, LogisticRegression(C=16.0, class_weight="balanced", max_iter=2000,
                                                                solver="liblinear", random_state=0))
        self.model.fit([t for t, _ in examples], [y for _, y in examples])

    def score(self, texts: list[str]) -> list[float]:
        return [float(p) for p in self.model.predict_proba(texts)[:, 1]]


def load_examples(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]  # not splitlines: U+2028 in texts


def documentation_paragraphs(limit: int = DOC_PARAGRAPHS) -> list[str]:
    """Real documentation as benign text: the installed packages' descriptions, paragraph by paragraph (their
    imperatives for the human reader, "ignore the warning", "skip this step", are what a docs corpus is full of).
    A fixed sample: the same packages give the same classifier."""
    import random

    from cluster.content.package_docs import package_docs
    from cluster.content.parsing import DocumentError, parse_document

    paragraphs: dict[str, None] = {}
    for doc in package_docs():
        try:
            sections = parse_document(doc.content, doc.content_type).sections
        except DocumentError:
            continue
        for section in sections:
            for paragraph in section.paragraphs:
                if len(paragraph.split()) >= 8 and not paragraph.startswith(("```", "    ", ">>>", "|")):
                    paragraphs.setdefault(paragraph[:1200])
    texts = sorted(paragraphs)
    return random.Random(0).sample(texts, min(limit, len(texts)))


def training_examples() -> list[tuple[str, int]]:
    """(text, 1 if injection): the labelled sets, then documentation paragraphs as benign."""
    rows = [(e["text"], int(e["label"] == "injection")) for path in TRAINING_SETS for e in load_examples(path)]
    return rows + [(text, 0) for text in documentation_paragraphs()]


@lru_cache(maxsize=1)
def default_classifier() -> Classifier:
    return Classifier(training_examples())
