"""Prompt-injection guardrails: on the user's input, on every retrieved chunk before it enters a prompt (injection
planted in an ingested document), and on the output (a canary token from the system prompt must never appear).

Layers, each reported by name in the decision:
- rules: known patterns (instruction overrides, role-play jailbreaks, system-prompt extraction, exfiltration),
  matched on the text and on what it hides: HTML/Markdown comments, base64/hex runs decoded, ROT13, leetspeak and
  spaced-out letters folded back;
- classifier: a TF-IDF (word and character n-grams) logistic regression trained at start-up on the labelled set
  `cluster/evaluation/sets/injections_train.jsonl` (well under a second; deterministic), for what the rules do
  not spell out;
- canary: a random token placed in the system prompt; its appearance in an answer means the prompt leaked.

Policy per route (profile `guardrails`): block (400 `content_policy`), strip the chunk, or flag (answer, and say
so in the response's `guardrails` field). Measured in docs/guardrails.md.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Action = Literal["pass", "flag", "strip", "block"]
TRAINING_SET = Path(__file__).resolve().parents[2] / "cluster" / "evaluation" / "sets" / "injections_train.jsonl"

_AI = r"(?:ai|assistant|model|llm|chatbot|bot|language model|gpt|claude|system)"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|former|original|initial|all|any|your|the|these|those|system)"
_RULE_WORDS = r"(?:instructions?|directives?|rules?|guidelines?|guidance|prompts?|constraints?|restrictions?|" \
              r"polic(?:y|ies)|programming|safeguards?|filters?)"
RULES: tuple[tuple[str, str], ...] = (
    ("override", rf"\b(?:ignore|disregard|forget|skip|bypass|override|overrule|drop|abandon|set aside|put aside|"
                 rf"throw out|discard|nevermind|never mind)\b[\w\s,'-]{{0,40}}?\b{_PRIOR}\b[\w\s,'-]{{0,30}}?"
                 rf"\b{_RULE_WORDS}"),
    ("override", r"\b(?:new|updated|real|actual|revised|secret|hidden)\s+(?:system\s+)?(?:instructions?|rules?|"
                 r"directives?|prompt)\s*[:\-]"),
    ("override", r"\bfrom now on,?\s+(?:you|your|the assistant|ignore|always|never|respond|answer|act)"),
    ("override", r"(?:^|\n|\s)(?:system|assistant|developer)\s*(?:prompt|message|override)?\s*:\s*(?:ignore|you "
                 r"(?:are|must|will)|override|new)"),
    ("override", rf"\b(?:note|message|instruction|attention)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?{_AI}s?\b"),
    ("override", rf"\b{_AI}s?\s+(?:reading|processing|summari[sz]ing|parsing|that reads?)\s+(?:this|these)\b"),
    ("override", r"\bwhen (?:asked|summari[sz]ing|answering)[^.]{0,80}\b(?:do not|don't|never) (?:mention|reveal|"
                 r"tell)\b[^.]{0,40}\b(?:this|these) (?:note|instruction|message|text)"),
    ("roleplay", r"\b(?:you are|you're|act as|pretend (?:to be|you are)|roleplay as|role-play as|play the role of|"
                 r"behave like|simulate)\b[^.]{0,60}\b(?:no|without|free of|unbound by|not bound by|unrestricted|"
                 r"uncensored|unfiltered|jailbroken|any) (?:restrictions?|rules?|limits?|filters?|guidelines?|"
                 r"censorship|morals?|ethics|policies)"),
    ("roleplay", r"\b(?:you are|you're|as|act as|become|pretend to be)\s+(?:now\s+)?(?:dan|do anything now|evil ?bot|"
                 r"an? (?:unrestricted|uncensored|unfiltered|jailbroken|evil) (?:ai|assistant|model|chatbot))\b"),
    ("roleplay", r"\b(?:god|jailbreak(?:ed)?|unrestricted|dan) mode\b"),
    ("roleplay", r"\b(?:enable|activate|enter|switch to)\s+(?:the\s+)?(?:god|jailbreak|dan|unrestricted)\s+mode\b"),
    ("roleplay", r"\bjailbreak\b[^.]{0,30}\b(?:yourself|you|this (?:ai|model|assistant)|the (?:ai|model))\b"),
    ("extraction", r"\b(?:print|reveal|show|output|repeat|display|tell me|give me|share|leak|dump|write out|recite|"
                   r"disclose|spell out|echo|return)\b[^.?]{0,40}\b(?:your|the|its|my|any)\s+(?:full\s+|entire\s+|"
                   r"exact\s+|original\s+|hidden\s+|initial\s+|secret\s+|internal\s+)*(?:system\s+prompt|"
                   r"(?:initial|original|hidden|secret|system|internal)\s+(?:instructions?|prompt|message|rules)|"
                   r"instructions you (?:were|have been) given|canary|prompt above)"),
    ("extraction", r"\b(?:repeat|print|output|copy|recite|echo)\b[^.?]{0,30}\b(?:everything|all|the (?:text|words|"
                   r"content|messages?)|what(?:ever)? (?:is|was) written)\b[^.?]{0,30}\b(?:above|before|prior|"
                   r"preceding|earlier|so far)\b"),
    ("extraction", r"\bwhat (?:were|are|was|is) your (?:initial|original|first|hidden|secret|system|exact) "
                   r"(?:instructions?|prompt|rules|message)"),
    ("extraction", r"\bstarting with ['\"]?you are\b"),
    ("exfiltration", r"!\[[^\]]*\]\(\s*https?://[^)]*(?:\{|%7b|\?|=)[^)]*\)"),
    ("exfiltration", r"\b(?:send|post|forward|upload|append|transmit|exfiltrate|leak|include|embed|encode)\b[^.]{0,60}"
                     r"\b(?:conversation|chat history|the user'?s? (?:question|message|data|password|input)|api "
                     r"keys?|secrets?|credentials|tokens?|system prompt|the context)\b[^.]{0,60}\b(?:to|into|in|at)"
                     r"\s+(?:https?://|a url|the url|this url|an? (?:webhook|endpoint|server|image|link))"),
    ("exfiltration", r"\b(?:call|hit|visit|fetch|request|ping)\s+(?:the\s+)?(?:webhook|url|endpoint)\b[^.]{0,40}"
                     r"https?://"),
    ("exfiltration", r"\btell (?:the )?users? to (?:visit|go to|open|click|enter|log ?in|sign in)\b"),
)
_COMPILED = tuple((kind, re.compile(pattern, re.I)) for kind, pattern in RULES)
_COMMENT = re.compile(r"<!--(.*?)-->|\[//\]: # \((.*?)\)|/\*(.*?)\*/", re.S)
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[\s:]?){12,}\b")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_SPACED = re.compile(r"\b(?:[A-Za-z][ .\-_*]){4,}[A-Za-z]\b")


@dataclass(frozen=True)
class Finding:
    layer: Literal["rule", "classifier", "canary"]
    kind: str  # override | roleplay | extraction | exfiltration | encoded (a rule on decoded text) | injection
    score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "kind": self.kind, **({"score": round(self.score, 3)} if self.score else {})}


@dataclass(frozen=True)
class Decision:
    action: Action
    findings: tuple[Finding, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "findings": [f.as_dict() for f in self.findings]}


def _views(text: str) -> list[tuple[str, bool]]:
    """The text as written and as it hides instructions: (view, whether it was decoded from something)."""
    plain = unicodedata.normalize("NFKC", text)
    plain = "".join(ch for ch in plain if unicodedata.category(ch) not in ("Cf", "Mn"))  # zero-width, accents
    views = [(plain, False)]
    for m in _COMMENT.finditer(plain):
        views.append((next(g for g in m.groups() if g is not None), False))
    for m in _B64.finditer(plain):
        try:
            decoded = base64.b64decode(m.group(0) + "=" * (-len(m.group(0)) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable() and " " in decoded:
            views.append((decoded, True))
    for m in _HEX.finditer(plain):
        try:
            decoded = bytes.fromhex(re.sub(r"[\s:]", "", m.group(0))).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if decoded.isprintable() and " " in decoded:
            views.append((decoded, True))
    views.append((codecs.decode(plain, "rot13"), True))
    leet = plain.translate(_LEET)
    if leet != plain:
        views.append((leet, True))
    spaced = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), plain)
    if spaced != plain:
        views.append((spaced, True))
    return views


_QUOTED = re.compile(r"'[^'\n]{3,80}'|\"[^\"\n]{3,80}\"|“[^”\n]{3,80}”|`[^`\n]{3,80}`")


@lru_cache(maxsize=4096)
def rule_findings(text: str) -> tuple[Finding, ...]:
    """What the rules find; a quoted phrase ("text such as 'ignore all previous instructions'") is a mention, not an
    instruction, and is left to the classifier. Cached: the detector and the classifier's rule features both ask
    for the same text, and every view (decodings, foldings) costs a full pass of the rules."""
    found: dict[str, Finding] = {}
    for view, decoded in _views(_QUOTED.sub(" ", text)):
        for kind, pattern in _COMPILED:
            if pattern.search(view):
                name = "encoded" if decoded else kind
                found.setdefault(name, Finding("rule", name))
    return tuple(found.values())


class Classifier:
    """TF-IDF n-grams + logistic regression over the labelled training set: P(injection)."""

    def __init__(self, examples: list[tuple[str, int]]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline

        from sklearn.preprocessing import FunctionTransformer

        features = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)),
            ("rules", FunctionTransformer(_rule_features)),  # what the rules found, weighed by the regression
        ])
        self.model = make_pipeline(features, LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000,
                                                                solver="liblinear", random_state=0))
        self.model.fit([t for t, _ in examples], [y for _, y in examples])

    def score(self, texts: list[str]) -> list[float]:
        return [float(p) for p in self.model.predict_proba(texts)[:, 1]]


RULE_KINDS = ("override", "roleplay", "extraction", "exfiltration", "encoded")


def _rule_features(texts: list[str]) -> Any:
    import numpy as np

    rows = [{f.kind for f in rule_findings(t)} for t in texts]
    return np.array([[3.0 * (k in kinds) for k in RULE_KINDS] for kinds in rows])


def load_examples(path: Path = TRAINING_SET) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@lru_cache(maxsize=1)
def default_classifier() -> Classifier:
    return Classifier([(e["text"], int(e["label"] == "injection")) for e in load_examples()])


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


def new_canary() -> str:
    return f"rt-canary-{secrets.token_hex(6)}"


class GuardrailService:
    """The profile's policy over the detector, per route; counts every decision (`count(where, action, kind)`)."""

    def __init__(self, spec: Any, count: Any = lambda where, action, kind: None,
                 classifier: Classifier | None = None) -> None:
        self.spec, self.count = spec, count
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

    def canary(self, route: str) -> str | None:
        return new_canary() if self.spec.enabled and self.spec.canary and route in ("rag", "hybrid") else None

    def leaked(self) -> None:
        self.count("output", "block", "canary")

    def _count(self, where: str, decision: Decision) -> None:
        for kind in sorted({f.kind for f in decision.findings}):
            self.count(where, decision.action, kind)
