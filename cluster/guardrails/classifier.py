"""The guardrails' classifier: TF-IDF word and character n-grams plus the rules' findings, logistic regression,
P(injection). Trained deterministically from the labelled sets in `cluster/evaluation/sets/` (which are trained on:
the README there) and real documentation paragraphs as benign text, by `ragtune models prepare` (recipe
`injection-classifier`, about 20 s; rebuilt whenever the sets, the rules or this file change) and loaded by the
ingress, so a replica starts in about three seconds instead of training for seventeen.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from cluster.guardrails.rules import rule_features

SETS = Path(__file__).resolve().parents[1] / "evaluation" / "sets"
# Held-out sets 1 to 8 were each run once as sealed measurements, then used for error analysis: now they are training
# data (the README in SETS); set 9 and the wild-jailbreak hold-out are never trained on.
TRAINING_SETS = tuple(SETS / name for name in ("injections_train.jsonl", "jailbreaks_wild_train.jsonl",
                                               "injections_heldout.jsonl", "injections_heldout2.jsonl",
                                               "injections_heldout3.jsonl", "injections_heldout4.jsonl",
                                               "injections_heldout5.jsonl", "injections_heldout6.jsonl",
                                               "injections_heldout7.jsonl", "injections_heldout8.jsonl"))
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
        # C = 32, chosen on folds that each hold one new author's texts out of the fit (held-out 5 and four training
        # authors; held-out 6 added once it was spent): pooled 0.773 detection at 0.018 false positives at P >= 0.75,
        # against 0.761 at 0.017 with C = 16 (the 28-language author's 0.31 pulls both down).
        self.model = make_pipeline(features, LogisticRegression(C=32.0, class_weight="balanced", max_iter=2000,
                                                                solver="liblinear", random_state=0))
        self.model.fit([t for t, _ in examples], [y for _, y in examples])

    def score(self, texts: list[str]) -> list[float]:
        return [float(p) for p in self.model.predict_proba(texts)[:, 1]]

    def save(self, path: Path) -> None:
        import joblib

        joblib.dump(self.model, path)

    @classmethod
    def load(cls, path: Path) -> "Classifier":
        """A classifier `build` wrote (a pickle: only ever one from our own models cache)."""
        import joblib

        loaded = cls.__new__(cls)
        loaded.model = joblib.load(path)
        return loaded


def load_examples(path: Path) -> list[dict[str, Any]]:
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 inside the wild jailbreaks' texts.
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


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


MODEL_FILE = "classifier.joblib"


def inputs_digest() -> str:
    """What a build reads from this repository: the labelled sets, the rules and this code (and scikit-learn's
    version, which a saved model is tied to). Not the documentation paragraphs: they come from the installed
    packages, which the lock file pins, and what a process sees installed can differ (tests add distributions)."""
    import sklearn

    from cluster.guardrails import rules

    digest = hashlib.sha256(sklearn.__version__.encode())
    for path in (*TRAINING_SETS, Path(rules.__file__), Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build(target: Path) -> dict[str, Any]:
    """The models-cache recipe: train on everything and save; the manifest gets the training set's size."""
    started = time.monotonic()
    examples = training_examples()
    Classifier(examples).save(target / MODEL_FILE)
    return {"examples": len(examples), "injections": sum(y for _, y in examples),
            "train_seconds": round(time.monotonic() - started, 1)}


def load_prepared(model_dir: str | Path) -> Classifier:
    return Classifier.load(Path(model_dir) / MODEL_FILE)


@lru_cache(maxsize=1)
def default_classifier() -> Classifier:
    """The prepared classifier when the models cache has it (what the ingress serves), else one trained here."""
    from cluster.models.cache import ModelNotPrepared, resolve
    from cluster.settings import Settings

    settings = Settings()
    try:
        return load_prepared(resolve(settings.profile_spec.guardrails.model, settings.models_dir))
    except ModelNotPrepared:
        return Classifier(training_examples())
