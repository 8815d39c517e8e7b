"""Parsing and chunking hostile documents at the 2 MB limit, each against an ordinary document of the same size
parsed in the same run (README-like Markdown prose): the ratio says how much worse than normal the worst input
is. Before the linear parsers, one heading line of 2 KB took 5.6 s and 2 MB would not have finished.

    python -m bench.parsing [--repeats 3]

No cluster: the ingest pipeline's parse + chunk step (`build_document`) with the profile's real tokenizer.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.cluster import machine, write_report
from cluster.content.chunking import Chunker
from cluster.content.ingest import build_document
from cluster.content.parsing import DocumentError
from cluster.settings import Settings
from tests.support.hostile import LIMIT, WORST_CASES

ORDINARY = "# Guide\n\n" + "".join(
    f"## Section {i}\n\nThe `client` sends a request with a timeout; retries back off exponentially. "
    f"See the reference for options such as `--threshold` and `lru_cache` (item {i}).\n\n"
    for i in range(LIMIT // 200))[:LIMIT - 20]


def seconds(chunker: Chunker, kind: str, text: str, repeats: int) -> tuple[float, str]:
    times, outcome = [], ""
    limits = Settings().ingest
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            built = build_document(chunker, text, content_type=kind, max_chunks=limits.max_chunks_per_document)
            outcome = f"{len(built.chunks)} chunks"
        except DocumentError as exc:
            outcome = f"refused: {str(exc)[:60]}"
        times.append(time.perf_counter() - started)
    return statistics.median(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/parsing.json"))
    args = parser.parse_args()
    chunker = Chunker.from_settings(Settings())
    base, base_outcome = seconds(chunker, "text/markdown", ORDINARY, args.repeats)
    print(f"machine: {machine()}\nbaseline: ordinary Markdown, {len(ORDINARY.encode())} bytes: {base:.3f} s "
          f"({base_outcome})")
    rows = []
    for name, (kind, text) in WORST_CASES.items():
        took, outcome = seconds(chunker, kind, text, args.repeats)
        rows.append({"case": name, "content_type": kind, "bytes": len(text.encode()), "seconds": round(took, 3),
                     "ratio": round(took / base, 2), "outcome": outcome})
        print(f"  {name:<32} {took:6.3f} s  {took / base:5.2f}x  {outcome}", flush=True)
    write_report({"machine": machine(), "baseline_seconds": round(base, 3), "baseline_bytes": len(ORDINARY.encode()),
                  "cases": rows}, args.out)


if __name__ == "__main__":
    main()
