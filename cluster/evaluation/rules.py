"""The article's flowchart ("fine-tune vs RAG vs both") as explicit rules over measured numbers and the answers a
measurement cannot give. Each rule that removes or picks a route says why, naming the number it rests on.

Order: the latency budget removes routes that miss it; knowledge that changes more often than monthly, or
required citations, keep only the retrieving routes; no one to maintain a training pipeline removes the adapter
routes, and so do fewer than 500 labelled examples (RAG first) unless the measurement already shows the adapter
significantly better than every other route; among what is left the best quality wins, unless a
simpler route is not significantly worse (bootstrap interval of the paired difference includes 0): then the
simpler one. Simplicity: plain < rag < finetuned < hybrid (each adds infrastructure or a training pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cluster.evaluation.stats import Difference

Change = Literal["daily", "weekly", "monthly", "quarterly", "rarely"]
SIMPLICITY = ("plain", "rag", "finetuned", "hybrid")
RETRIEVING = frozenset({"rag", "hybrid"})
ADAPTER = frozenset({"finetuned", "hybrid"})
MIN_LABELLED = 500


@dataclass(frozen=True)
class Declared:
    """What only the team can say (flags of `ragtune eval`, with these defaults)."""

    knowledge_changes: Change = "monthly"
    citations_required: bool = False
    latency_budget_ms: float | None = None  # p95 of a whole answer; None: no budget
    labelled_examples: int = 0
    can_maintain_training: bool = True


@dataclass(frozen=True)
class Measured:
    """One answering route's numbers: its primary quality metric's mean and its p95 latency."""

    route: str
    metric: str
    quality: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class Recommendation:
    route: str | None
    reasons: list[str] = field(default_factory=list)


def _q(m: Measured) -> str:
    return f"{m.metric} {m.quality:.3f}" if m.quality is not None else f"{m.metric} n/a"


def recommend(measured: list[Measured], declared: Declared,
              differences: dict[tuple[str, str], Difference | None]) -> Recommendation:
    """`differences[(a, b)]` is the paired difference b - a of the primary metric (either order may be given)."""
    routes = {m.route: m for m in measured if m.route in SIMPLICITY}
    reasons: list[str] = []
    if not routes:
        return Recommendation(None, ["no answering route was measured (rag, finetuned, hybrid or plain)"])

    def drop(names: set[str], why: str) -> None:
        for name in sorted(names & set(candidates)):
            reasons.append(f"not {name}: {why}")
            candidates.remove(name)

    candidates = sorted(routes, key=SIMPLICITY.index)
    if declared.latency_budget_ms is not None:
        over = {r for r, m in routes.items() if m.p95_ms is not None and m.p95_ms > declared.latency_budget_ms}
        for name in sorted(over):
            reasons.append(f"not {name}: p95 {routes[name].p95_ms:.0f} ms exceeds the "
                           f"{declared.latency_budget_ms:.0f} ms budget")
        candidates = [c for c in candidates if c not in over]
        if not candidates:
            fastest = min((m for m in routes.values() if m.p95_ms is not None), key=lambda m: m.p95_ms or 0)
            reasons.append(f"every route misses the budget; {fastest.route} is the fastest "
                           f"(p95 {fastest.p95_ms:.0f} ms)")
            return Recommendation(fastest.route, reasons)
    if declared.knowledge_changes in ("daily", "weekly") or declared.citations_required:
        why = (f"the knowledge changes {declared.knowledge_changes} (more often than monthly)"
               if declared.knowledge_changes in ("daily", "weekly") else "citations are required")
        drop(set(candidates) - RETRIEVING, f"{why}: only a retrieving route stays current and cites")
    if not declared.can_maintain_training:
        drop(set(candidates) & ADAPTER, "no one can maintain a training pipeline")
    elif declared.labelled_examples < MIN_LABELLED and set(candidates) & ADAPTER and set(candidates) - ADAPTER:
        # RAG first: an adapter stays only if the measurement already shows it clearly better than every other.
        others = [c for c in candidates if c not in ADAPTER and routes[c].quality is not None]
        for name in sorted(set(candidates) & ADAPTER):
            wins = [_difference(differences, other, name) for other in others]
            if others and all(d is not None and d.significant and d.mean > 0 for d in wins):
                low = min(d.low for d in wins if d is not None)
                reasons.append(f"keeping {name} although {declared.labelled_examples} labelled examples are fewer "
                               f"than {MIN_LABELLED}: it is significantly better than every other route (by at "
                               f"least {low:+.3f})")
            else:
                drop({name}, f"{declared.labelled_examples} labelled examples (fewer than {MIN_LABELLED}) and no "
                             "significant gain measured: RAG first")
    elif declared.labelled_examples < MIN_LABELLED and candidates and not set(candidates) - ADAPTER:
        reasons.append(f"keeping the adapter routes although {declared.labelled_examples} labelled examples are "
                       f"fewer than {MIN_LABELLED}: nothing else is left")
    if not candidates:
        return Recommendation(None, reasons + ["no route is left"])

    scored = [c for c in candidates if routes[c].quality is not None]
    if not scored:
        choice = candidates[0]
        reasons.append(f"{choice}: no quality was measured (no expected answers); the simplest route left")
        return Recommendation(choice, reasons)
    best = max(scored, key=lambda c: (routes[c].quality, -SIMPLICITY.index(c)))
    reasons.append(f"{best}: the best quality left ({_q(routes[best])})")
    for simpler in scored:  # simplest first
        if SIMPLICITY.index(simpler) >= SIMPLICITY.index(best):
            break
        diff = _difference(differences, simpler, best)
        if diff is None:
            continue
        if not diff.significant:
            reasons.append(f"{simpler} instead: {best} - {simpler} = {diff.mean:+.3f} [{diff.low:+.3f}, "
                           f"{diff.high:+.3f}] over {diff.cases} cases, no significant difference, and {simpler} "
                           "is simpler")
            return Recommendation(simpler, reasons)
        reasons.append(f"{best} over {simpler}: {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] over "
                       f"{diff.cases} cases, significant")
    return Recommendation(best, reasons)


def _difference(differences: dict[tuple[str, str], Difference | None], a: str, b: str) -> Difference | None:
    """b - a, from either key order."""
    if (a, b) in differences:
        return differences[(a, b)]
    d = differences.get((b, a))
    return None if d is None else Difference(mean=-d.mean, low=-d.high, high=-d.low, cases=d.cases)
