"""Prompt-injection guardrails: on the user's input, on every retrieved chunk before it enters a prompt (injection
planted in an ingested document), and on the output (a canary token from the system prompt must never appear).

Layers, each reported by name in the decision: the rules (`cluster/guardrails/rules.py`), the classifier
(`cluster/guardrails/classifier.py`, built by `ragtune models prepare`, loaded when the ingress starts), and a
canary: a token placed in the system prompt; its appearance in an answer means the prompt leaked. It is an HMAC of
the prompt under the cluster's canary key: unguessable, yet the same request gets the same prompt (a random token
per request made two identical greedy requests diverge).

Policy per route (profile `guardrails`): block (400 `content_policy`), strip the chunk, or flag (answer, and say
so in the response's `guardrails` field). Measured in docs/guardrails.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from cluster.guardrails.classifier import Classifier, default_classifier
from cluster.guardrails.rules import Finding, rule_findings

Action = Literal["pass", "flag", "strip", "block"]


@dataclass(frozen=True)
class Decision:
    action: Action
    findings: tuple[Finding, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "findings": [f.as_dict() for f in self.findings]}


@dataclass
class Detector:
    """Rules, then the classifier: a finding from either is an injection."""

    threshold: float = 0.5
    classifier: Classifier | None = field(default=None)

    def findings(self, texts: list[str]) -> list[list[Finding]]:
        out = [list(rule_findings(t)) for t in texts]
        if self.classifier is not None and texts:
            for found, p in zip(out, self.classifier.score(texts)):
                if p >= self.threshold:
                    found.append(Finding("classifier", "injection", p))
        return out


def canary_for(key: bytes, material: str) -> str:
    return "rt-canary-" + hmac.new(key, material.encode(), hashlib.sha256).hexdigest()[:12]


class GuardrailService:
    """The profile's policy over the detector, per route; counts every decision (`count(where, action, kind)`)."""

    def __init__(self, spec: Any, count: Any = lambda where, action, kind: None,
                 classifier: Classifier | None = None, canary_key: bytes | None = None) -> None:
        self.spec, self.count = spec, count
        self.canary_key = canary_key or secrets.token_bytes(32)  # the ingress passes the cluster's (state_dir)
        if spec.enabled and spec.classifier and classifier is None:
            classifier = default_classifier()
        self.detector = Detector(spec.threshold, classifier if spec.classifier else None)

    def _policy(self, route: str) -> Any:
        return self.spec.routes.get(route) if self.spec.enabled else None

    def check_input(self, route: str, messages: list[dict[str, str]]) -> Decision:
        """The client's turns (a system message is the application's, and checked too: it is client input here).
        Raises a 400 `content_policy` when the route blocks."""
        policy = self._policy(route)
        if policy is None or policy.input == "off":
            return Decision("pass")
        findings = tuple(f for found in self.detector.findings([m["content"] for m in messages]) for f in found)
        decision = Decision(self._action(findings, policy.input), findings)
        if decision.action != "pass":
            self._count("input", decision)
        if decision.action == "block":
            from serve.services.errors import ApiError

            kinds = ", ".join(sorted({f"{f.layer}: {f.kind}" for f in findings}))
            raise ApiError(400, f"the request was refused: the prompt-injection guardrails found an injection in "
                                f"the messages ({kinds})", param="messages", code="content_policy")
        return decision

    def check_chunks(self, route: str, texts: list[str]) -> list[Decision]:
        """One decision per retrieved chunk: pass, flag or strip (raises a 400 when the route blocks)."""
        policy = self._policy(route)
        if policy is None or policy.chunks == "off" or not texts:
            return [Decision("pass") for _ in texts]
        decisions = [Decision(self._action(found, policy.chunks), tuple(found))
                     for found in self.detector.findings(texts)]
        for d in decisions:
            if d.action != "pass":
                self._count("chunk", d)
        if any(d.action == "block" for d in decisions):
            from serve.services.errors import ApiError

            raise ApiError(400, "the request was refused: a retrieved document carries a prompt injection",
                           code="content_policy")
        return decisions

    def _action(self, findings: Any, policy: str) -> Action:
        """The route's action for a confident detection (a rule, or the classifier at `strong_threshold`); a weaker
        one is only flagged: refusing or stripping on it would cost more benign text than it saves."""
        if not findings:
            return "pass"
        strong = any(f.layer == "rule" or (f.score or 0) >= self.spec.strong_threshold for f in findings)
        return policy if strong else "flag"  # type: ignore[return-value]

    def canary(self, route: str, prompt: str) -> str | None:
        """The marker for this prompt (what the model is shown, minus the marker) on the retrieving routes."""
        if not (self.spec.enabled and self.spec.canary and route in ("rag", "hybrid")):
            return None
        return canary_for(self.canary_key, f"{route}\n{prompt}")

    def leaked(self) -> None:
        self.count("output", "block", "canary")

    def _count(self, where: str, decision: Decision) -> None:
        for kind in sorted({f.kind for f in decision.findings}):
            self.count(where, decision.action, kind)
