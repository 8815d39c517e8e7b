"""The prompts of the three routes. Sources go in the user turn: small models ground far better there than in
the system prompt (measured with SmolLM2-135M: system-prompt sources drew made-up answers)."""

from __future__ import annotations

from typing import Sequence

RAG_SYSTEM = ("You are a helpful assistant. Answer the question using only the numbered sources. Cite the "
              "sources you use as [Source N]. If the sources do not contain the answer, say you could not find it.")
HYBRID_SYSTEM = "Answer the question; use the numbered sources when they are relevant and cite them as [Source N]."
NOT_FOUND = "I could not find information about that in the knowledge base."


def with_canary(system: str, canary: str | None) -> str:
    """The guardrails' canary (one per prompt: GuardrailService.canary) in the system prompt: never in an answer."""
    return system if canary is None else f"{system} Confidential marker, never repeat it: {canary}."


def source_block(number: int, title: str, text: str) -> str:
    return f"[Source {number}: {title}]\n{text.strip()}"


def with_sources(messages: Sequence[dict[str, str]], blocks: Sequence[str], system: str) -> list[dict[str, str]]:
    """The conversation with `system` first and the sources placed before the last user question."""
    history = [m for m in messages if m["role"] not in ("system", "developer")]
    *earlier, last = history
    sources = "\n\n".join(blocks)
    question = f"Sources:\n\n{sources}\n\nQuestion: {last['content']}"
    return [{"role": "system", "content": system}, *earlier, {"role": "user", "content": question}]


def as_chat(messages: Sequence[dict[str, str]], default_system: str | None = None) -> list[dict[str, str]]:
    """The client's conversation as is ('developer' is OpenAI's new name for 'system'); `default_system` (an
    adapter's training prompt) applies when the client sent none."""
    out = [{"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]} for m in messages]
    if default_system and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": default_system})
    return out
