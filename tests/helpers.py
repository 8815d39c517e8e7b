"""Assertions and fixtures' helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import httpx


def api_error(response: httpx.Response, status: int) -> dict:
    """Assert an error response in OpenAI's shape with this status; return its `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def make_adapters(base_model_dir: str, out_root: Path, seeds: list[int], rank: int = 8) -> list[Path]:
    """LoRA adapters with random (non-zero) weights on every projection: they change outputs, built in seconds."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    paths = []
    for seed in seeds:
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False, task_type="CAUSAL_LM",
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj"])
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(out_root / f"seed-{seed}")
        model = peft_model.unload()
        paths.append(out_root / f"seed-{seed}")
    return paths
