"""LoRA adapters with random weights: built in seconds, for tests and benchmarks (not a store concern)."""

from __future__ import annotations

from pathlib import Path


def random_adapters(base_model_dir: str, out_root: Path, seeds: list[int], rank: int = 8) -> list[Path]:
    """LoRA adapters with random (non-zero) weights on every projection: they change outputs and cost what a
    trained adapter of the same rank costs to serve."""
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
