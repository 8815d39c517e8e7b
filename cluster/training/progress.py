"""The training job's log lines that the fine-tuning dispatcher reads back: written by `jobs/train.py`, parsed
into job events by the dispatcher. Writer and parser live here together so they cannot drift apart.

    progress event=train step=10 total=36 loss=0.4012 lr=1.8e-04 tokens=5120 tokens_per_s=67.1 eta_s=330
    progress event=eval step=12 total=36 eval_loss=0.3900 ...
    plan: method=lora (...) on CPU; base ...; adapter ...
    dataset: <uri> sha256 ...: 144 train / 16 eval examples, 9120 tokens
    refused: <why the dataset or config was refused>
    failed: <why training stopped, e.g. a loss that went non-finite>

Each parsed event carries a dedupe key (`step:10`, `eval:12`, `plan`, `dataset`, `refused`, `failed`): the dispatcher
may read the same lines again after a restart, and the keys make replays add nothing. Their meaning must not change.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from cluster.ops.redaction import redact

Note = Literal["plan", "dataset", "refused", "failed"]

_PROGRESS = re.compile(r"^progress (.*)$")
_NOTE = re.compile(r"^(plan|dataset|refused|failed): (.*)$")
_KV = re.compile(r"(\w+)=(\S+)")
# progress field -> event data field (the names OpenAI's fine-tuning events use where it has one)
_DATA = (("loss", "train_loss"), ("eval_loss", "valid_loss"), ("tokens_per_s", "tokens_per_s"), ("eta_s", "eta_s"),
         ("lr", "learning_rate"), ("tokens", "tokens"))


def _fmt(value: float | int | str) -> str:
    if isinstance(value, (int, str)):
        return str(value)
    return f"{value:.3e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}" if abs(value) < 100 else f"{value:.0f}"


def progress_line(fields: dict[str, Any]) -> str:
    """One `progress k=v ...` line; fields that are None are left out."""
    return "progress " + " ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)


def note_line(kind: Note, text: str) -> str:
    return f"{kind}: {text}"


def _number(text: str) -> float | None:
    """A logged number; None for what is not a finite one (`nan`, `inf`: JSON has no such numbers)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_events(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Job log lines -> (dedupe key, event) pairs; replaying the same lines yields the same keys."""
    events: list[tuple[str, dict[str, Any]]] = []
    for line in lines:
        line = line.strip()
        if m := _PROGRESS.match(line):
            kv = dict(_KV.findall(m.group(1)))
            step, total = int(_number(kv.get("step", "0")) or 0), int(_number(kv.get("total", "0")) or 0)
            data: dict[str, Any] = {"step": step, "total_steps": total}
            data.update({name: _number(kv[key]) for key, name in _DATA if key in kv})
            if kv.get("event") == "eval":
                events.append((f"eval:{step}", {"type": "metrics", "data": data,
                                                "message": f"Step {step}/{total}: validation loss={kv['eval_loss']}"}))
            else:
                events.append((f"step:{step}", {"type": "metrics", "data": data,
                                                "message": f"Step {step}/{total}: training loss={kv.get('loss')}"}))
        elif m := _NOTE.match(line):
            kind, text = m.groups()
            text = redact(text)  # events are read by API clients: the job's file paths stay in its log
            line = f"{kind}: {text}"
            if kind == "refused":
                events.append(("refused", {"message": f"Training data refused: {text}", "level": "error"}))
            elif kind == "failed":
                events.append(("failed", {"message": f"Training stopped: {text}", "level": "error"}))
            else:
                events.append((kind, {"message": line}))
    return events
