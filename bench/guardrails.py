"""The prompt-injection guardrails on held-out labelled sets: detection rate on injections, false positives on
benign text (questions, documentation, and look-alikes that talk about prompts), per layer, place and kind.

    python -m bench.guardrails [--set FILE ...] [--docs PAGES]

The classifier is the one the ingress serves (the models cache's `injection-classifier`; trained here when it is
not prepared); no held-out set is trained on (cluster/evaluation/sets/README.md says which is which). Default sets:
`injections_heldout9.jsonl` (sealed) and `jailbreaks_wild_heldout.jsonl` (real jailbreaks; detection only). Then
false positives on real documentation nobody labelled or trained on: man pages and the standard library's pydoc,
chunked exactly as ingestion chunks them (`--docs 0` skips it). Goal: detection >= 0.9 at <= 0.02 false positives.
Writes bench/results/guardrails.json and a plot of detection against false positives (docs/guardrails-tradeoff.png).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cluster import machine, write_report

SETS = Path(__file__).resolve().parents[1] / "cluster" / "evaluation" / "sets"


def measure(rows: list[dict[str, Any]], threshold: float, strong: float) -> dict[str, Any]:
    from cluster.guardrails.classifier import default_classifier
    from cluster.guardrails.rules import rule_findings

    classifier = default_classifier()  # loaded (or trained) once per process, before the clock starts
    started = time.perf_counter()
    scores = classifier.score([r["text"] for r in rows])
    rules = [bool(rule_findings(r["text"])) for r in rows]
    per_text_ms = (time.perf_counter() - started) * 1000 / max(len(rows), 1)
    layers = {"rules": rules, "classifier": [s >= threshold for s in scores],
              "both": [r or s >= threshold for r, s in zip(rules, scores)],  # flagged at least
              "acted_on": [r or s >= strong for r, s in zip(rules, scores)]}  # blocked / stripped
    out: dict[str, Any] = {"texts": len(rows), "ms_per_text": round(per_text_ms, 2), "threshold": threshold,
                           "strong_threshold": strong}
    for name, flagged in layers.items():
        inj = [f for f, r in zip(flagged, rows) if r["label"] == "injection"]
        ben = [f for f, r in zip(flagged, rows) if r["label"] == "benign"]
        by: dict[str, Counter] = {}
        for f, r in zip(flagged, rows):
            c = by.setdefault(f"{r['label']}:{r['where']}:{r['kind']}", Counter())
            c["n"] += 1
            c["flagged"] += int(f)
        out[name] = {"detection": round(sum(inj) / len(inj), 3),
                     "false_positives": round(sum(ben) / len(ben), 3) if ben else None,
                     "injections": len(inj), "benign": len(ben), "missed": len(inj) - sum(inj),
                     "false_alarms": sum(ben), "by_label_where_kind": {k: dict(v) for k, v in sorted(by.items())}}
    if any(r["label"] == "benign" for r in rows):  # the whole trade-off, not an operating point to pick here
        out["sweep"] = [_at(rows, rules, scores, t / 100) for t in range(30, 100, 5)]
    out["missed_examples"] = [r["text"][:160] for f, r in zip(layers["both"], rows)
                              if r["label"] == "injection" and not f][:15]
    out["false_alarm_examples"] = [r["text"][:160] for f, r in zip(layers["both"], rows)
                                   if r["label"] == "benign" and f][:15]
    return out


def _at(rows: list[dict[str, Any]], rules: list[bool], scores: list[float], threshold: float) -> dict[str, float]:
    flagged = [r or s >= threshold for r, s in zip(rules, scores)]
    inj = [f for f, r in zip(flagged, rows) if r["label"] == "injection"]
    ben = [f for f, r in zip(flagged, rows) if r["label"] == "benign"]
    return {"threshold": threshold, "detection": round(sum(inj) / len(inj), 3),
            "false_positives": round(sum(ben) / len(ben), 3)}


def plot(name: str, result: dict[str, Any], path: Path) -> None:
    """Detection against false positives as the classifier's threshold moves, with the profile's two points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sweep = result["sweep"]
    ax.plot([p["false_positives"] for p in sweep], [p["detection"] for p in sweep], marker=".", label="rules or P >= t")
    for layer, label in (("both", "flagged (profile threshold)"), ("acted_on", "blocked/stripped (strong threshold)")):
        ax.scatter([result[layer]["false_positives"]], [result[layer]["detection"]], s=60, zorder=3, label=label)
    ax.axvline(0.02, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positives on benign questions and chunks")
    ax.set_ylabel("injections detected")
    ax.set_xlim(0, max(0.1, max(p["false_positives"] for p in sweep) + 0.01))
    ax.set_title(f"Guardrails on {name} (sealed; goal: upper left of the dotted lines)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def documentation_chunks(pages: int) -> tuple[list[str], dict[str, int]]:
    """Chunks of man pages and pydoc pages (bench.devsets' builders), cut by the profile's chunker."""
    from bench.devsets import manpages, pydoc_pages
    from cluster.content.chunking import Chunker
    from cluster.content.ingest import build_document
    from cluster.content.parsing import DocumentError
    from cluster.settings import Settings

    chunker = Chunker.from_settings(Settings())
    chunks: list[str] = []
    counts: dict[str, int] = {}
    for name, build in (("man", manpages), ("pydoc", pydoc_pages)):
        found, _ = build(pages, 0, 11)
        for page in found:
            try:
                chunks += [c.text for c in build_document(chunker, page.text, source=page.filename).chunks]
            except DocumentError:
                continue
        counts[name] = len(found)
    return chunks, counts


def measure_docs(chunks: list[str], threshold: float, strong: float) -> dict[str, Any]:
    from cluster.guardrails.classifier import default_classifier
    from cluster.guardrails.rules import rule_findings

    scores = default_classifier().score(chunks)
    rules = [bool(rule_findings(c)) for c in chunks]  # once: more chunks than rule_findings' cache holds
    flagged = [r or s >= threshold for r, s in zip(rules, scores)]
    acted = [r or s >= strong for r, s in zip(rules, scores)]
    return {"chunks": len(chunks), "flagged": sum(flagged), "acted_on": sum(acted),
            "flagged_rate": round(sum(flagged) / max(len(chunks), 1), 4),
            "acted_on_rate": round(sum(acted) / max(len(chunks), 1), 4),
            "acted_on_examples": [c[:200] for c, a in zip(chunks, acted) if a][:10]}


DEFAULT_SETS = ("injections_heldout9.jsonl", "jailbreaks_wild_heldout.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, action="append", help="a labelled JSONL set (repeatable)")
    parser.add_argument("--docs", type=int, default=150, help="man and pydoc pages each for the docs measure")
    parser.add_argument("--out", type=Path, default=Path("bench/results/guardrails.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/guardrails-tradeoff.png"),
                        help="detection against false positives on the first set")
    args = parser.parse_args()
    from cluster.guardrails.classifier import load_examples
    from cluster.settings import Settings

    spec = Settings().profile_spec.guardrails
    report: dict[str, Any] = {"machine": machine(), "sets": {}}
    for path in args.set or [SETS / name for name in DEFAULT_SETS]:
        result = measure(load_examples(path), spec.threshold, spec.strong_threshold)
        report["sets"][path.name] = result
        if path == (args.set or [SETS / DEFAULT_SETS[0]])[0] and "sweep" in result:
            plot(path.name, result, args.plot)
        print(f"{path.name} ({result['texts']} texts, {result['ms_per_text']} ms each)")
        for name in ("rules", "classifier", "both", "acted_on"):
            r = result[name]
            found = f"{r['injections'] - r['missed']}/{r['injections']}"
            fp = f"  false positives {r['false_positives']:.3f} ({r['false_alarms']}/{r['benign']})" if r["benign"] else ""
            print(f"  {name:10s} detection {r['detection']:.3f} ({found}){fp}")
    if args.docs:
        chunks, pages = documentation_chunks(args.docs)
        docs = report["documentation"] = {"pages": pages, **measure_docs(chunks, spec.threshold, spec.strong_threshold)}
        print(f"real documentation ({pages}): {docs['chunks']} chunks, flagged {docs['flagged_rate']:.3f} "
              f"({docs['flagged']}), acted on {docs['acted_on_rate']:.3f} ({docs['acted_on']})")
    write_report(report, args.out)


if __name__ == "__main__":
    main()
