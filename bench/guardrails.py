"""The prompt-injection guardrails on a held-out labelled set: detection rate on injections, false positives on
benign text (questions, documentation, and look-alikes that talk about prompts), per layer, place and kind.

    python -m bench.guardrails [--set cluster/evaluation/sets/injections_heldout.jsonl]

The classifier is trained on `injections_train.jsonl` exactly as the ingress trains it at start-up; the held-out
set was written separately and is never trained on. Goal: detection >= 0.9 at <= 0.02 false positives.
Writes bench/results/guardrails.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cluster import machine, write_report

SETS = Path(__file__).resolve().parents[1] / "cluster" / "evaluation" / "sets"


def measure(rows: list[dict[str, Any]], threshold: float, strong: float) -> dict[str, Any]:
    from serve.services.guardrails import default_classifier, rule_findings

    started = time.perf_counter()
    scores = default_classifier().score([r["text"] for r in rows])
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
        out[name] = {"detection": round(sum(inj) / len(inj), 3), "false_positives": round(sum(ben) / len(ben), 3),
                     "injections": len(inj), "benign": len(ben), "missed": len(inj) - sum(inj),
                     "false_alarms": sum(ben), "by_label_where_kind": {k: dict(v) for k, v in sorted(by.items())}}
    out["missed_examples"] = [r["text"][:160] for f, r in zip(layers["both"], rows)
                              if r["label"] == "injection" and not f][:15]
    out["false_alarm_examples"] = [r["text"][:160] for f, r in zip(layers["both"], rows)
                                   if r["label"] == "benign" and f][:15]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=SETS / "injections_heldout.jsonl")
    parser.add_argument("--out", type=Path, default=Path("bench/results/guardrails.json"))
    args = parser.parse_args()
    from cluster.settings import Settings

    rows = [json.loads(line) for line in args.set.read_text().splitlines() if line.strip()]
    spec = Settings().profile_spec.guardrails
    report = {"machine": machine(), "set": args.set.name, **measure(rows, spec.threshold, spec.strong_threshold)}
    for name in ("rules", "classifier", "both", "acted_on"):
        r = report[name]
        print(f"{name:10s} detection {r['detection']:.3f} ({r['injections'] - r['missed']}/{r['injections']})  "
              f"false positives {r['false_positives']:.3f} ({r['false_alarms']}/{r['benign']})")
    write_report(report, args.out)


if __name__ == "__main__":
    main()
