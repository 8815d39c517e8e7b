"""Fine-tuning datasets: JSONL parsed, validated with line numbers, and turned into chat prompt/completion pairs.

Two line formats (one per file):
- `{"instruction": ..., "input": ..., "output": ...}` (`input` optional): the user turn is
  `instruction + "\\n\\n" + input`, the assistant turn is `output`;
- `{"messages": [{"role": ..., "content": ...}, ...]}` ending with an assistant turn, which is the completion.

Both become a conversational prompt/completion pair, so trl formats them with the base model's chat template and
computes the loss on the completion only, and the fine-tuned route sends a client's messages through the same
template and the same system prompt. The ingress (on upload), the CLI (before submitting) and the training job
(before loading any model) all run this same validation, so a bad dataset costs no GPU time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

ROLES = ("system", "user", "assistant")
MAX_REPORTED = 20


class Tokenizer(Protocol):
    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Example:
    line: int
    prompt: tuple[dict[str, str], ...]      # system?, user, (assistant, user)*
    completion: tuple[dict[str, str], ...]  # the one assistant turn the loss is computed on

    def as_record(self) -> dict[str, list[dict[str, str]]]:
        """trl's conversational prompt-completion format."""
        return {"prompt": [dict(m) for m in self.prompt], "completion": [dict(m) for m in self.completion]}


@dataclass(frozen=True)
class Problem:
    line: int | None  # None: the file as a whole
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class DatasetError(ValueError):
    """A dataset that must not be trained on; `problems` name the offending lines."""

    def __init__(self, problems: Sequence[Problem], name: str = "dataset") -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:MAX_REPORTED])
        more = f" (and {len(self.problems) - MAX_REPORTED} more)" if len(self.problems) > MAX_REPORTED else ""
        super().__init__(f"{name} is invalid: {shown}{more}")


def _text(obj: dict[str, Any], key: str, required: bool) -> str | None | Problem:
    value = obj.get(key)
    if value is None:
        return Problem(0, f"missing field {key!r}") if required else None
    if not isinstance(value, str):
        return Problem(0, f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        return Problem(0, f"field {key!r} is empty")
    return value


def _from_instruction(obj: dict[str, Any], line: int, system_prompt: str | None) -> Example | Problem:
    fields = {k: _text(obj, k, k != "input") for k in ("instruction", "input", "output")}
    for value in fields.values():
        if isinstance(value, Problem):
            return Problem(line, value.message)
    user = fields["instruction"] + (f"\n\n{fields['input']}" if fields["input"] else "")  # type: ignore[operator]
    prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
        [{"role": "user", "content": user}]
    completion = {"role": "assistant", "content": str(fields["output"])}
    return Example(line, tuple(prompt), (completion,))


def _from_messages(messages: Any, line: int, system_prompt: str | None) -> Example | Problem:
    if not isinstance(messages, list) or not messages:
        return Problem(line, "field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return Problem(line, f"messages[{i}] must be {{'role': one of {'/'.join(ROLES)}, 'content': string}}")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        return Problem(line, "the last message must be a non-empty assistant turn (the completion)")
    if not any(m["role"] == "user" for m in messages[:-1]):
        return Problem(line, "messages need a user turn before the final assistant turn")
    if any(m["role"] == "system" for m in messages[1:]):
        return Problem(line, "a system message may only come first")
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    if system_prompt and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": system_prompt})
    return Example(line, tuple(prompt), ({"role": "assistant", "content": messages[-1]["content"]},))


def json_lines(data: bytes, name: str = "dataset") -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    """A JSONL file's objects with their line numbers, and a Problem for each line that is not a JSON object
    (blank lines are skipped). Training files and evaluation test sets both read through here."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError([Problem(None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")], name) from None
    objects: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            problems.append(Problem(number, f"not valid JSON ({exc})"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(number, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        objects.append((number, obj))
    return objects, problems


def parse(data: bytes, system_prompt: str | None = None, name: str = "dataset") -> list[Example]:
    """Every line parsed; raises DatasetError naming each bad line (blank lines are allowed and skipped)."""
    objects, problems = json_lines(data, name)
    examples: list[Example] = []
    for number, obj in objects:
        if "messages" in obj:
            parsed = _from_messages(obj["messages"], number, system_prompt)
        elif "instruction" in obj or "output" in obj:
            parsed = _from_instruction(obj, number, system_prompt)
        else:
            parsed = Problem(number, "expected {instruction, input?, output} or {messages}; "
                                     f"found keys {sorted(obj)}")
        (problems if isinstance(parsed, Problem) else examples).append(parsed)  # type: ignore[arg-type]
    problems.sort(key=lambda p: p.line or 0)
    if not examples and not problems:
        problems.append(Problem(None, "no examples (the file is empty)"))
    if problems:
        raise DatasetError(problems, name)
    return examples


def token_lengths(examples: Sequence[Example], tokenizer: Tokenizer) -> list[int]:
    """Tokens of each formatted example (prompt + completion through the chat template), as training sees it."""
    return [len(tokenizer.apply_chat_template([*e.prompt, *e.completion], tokenize=True, return_dict=False))
            for e in examples]


def check_lengths(examples: Sequence[Example], tokenizer: Tokenizer, max_length: int,
                  name: str = "dataset") -> list[int]:
    """Token lengths; raises DatasetError for each example longer than `max_length` (it would be truncated,
    and the truncated part is its completion)."""
    lengths = token_lengths(examples, tokenizer)
    too_long = [Problem(e.line, f"{n} tokens exceeds max_length {max_length}")
                for e, n in zip(examples, lengths) if n > max_length]
    if too_long:
        raise DatasetError(too_long, name)
    return lengths


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
