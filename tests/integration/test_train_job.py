"""The training job (jobs/train.py) on the tiny Llama, in-process: LoRA and the 4-bit QLoRA path on CPU,
refusals before any model is loaded, and nothing published when training fails."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cluster.store.adapters import AdapterStore
from jobs import train as train_job


NAMES = ["Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Heidi"]
CITIES = ["Paris", "Berlin", "Rome", "Oslo", "Lima", "Cairo"]


def write_dataset(path: Path, n: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            name, city = rng.choice(NAMES), rng.choice(CITIES)
            fh.write(json.dumps({"instruction": "Extract name and city as JSON.", "input": f"{name} lives in {city}.",
                                 "output": json.dumps({"name": name, "city": city})}) + "\n")
    return path


@pytest.fixture()
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AdapterStore:
    monkeypatch.setenv("RAGTUNE_ADAPTER_STORE", str(tmp_path / "adapters"))
    return AdapterStore(str(tmp_path / "adapters"), tmp_path / "cache")


def config(dataset: Path, **overrides: Any) -> train_job.TrainConfig:
    values: dict[str, Any] = dict(dataset=str(dataset), base_model="local:tiny-llama", suffix="t", max_steps=12,
                                  batch_size=4, learning_rate=1e-3, logging_steps=2, eval_steps=6)
    return train_job.TrainConfig(**(values | overrides))


def test_lora_job_publishes_an_adapter_with_its_metadata(tmp_path: Path, stores: AdapterStore,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    plan = train_job.plan(config(write_dataset(tmp_path / "d.jsonl"), method="lora", job_id="ftjob-abc123def456",
                                 system_prompt="Answer in JSON."))
    assert (len(plan.train), len(plan.eval)) == (36, 4) and plan.adapter_name == "ft:tiny-llama:t:abc123de"
    ref = train_job.run(plan)
    out = capsys.readouterr().out
    assert "plan: method=lora (full-precision base" in out
    progress = [line for line in out.splitlines() if line.startswith("progress ")]
    assert any("event=train" in line and "tokens_per_s=" in line and "eta_s=" in line for line in progress)
    assert any("event=eval" in line and "eval_loss=" in line for line in progress)

    assert [r.name for r in stores.list()] == [ref.name] and ref.rank == 16
    meta = ref.metadata
    metrics = meta["metrics"]
    assert meta["method"] == "lora" and meta["quantization"] is None and meta["job_id"] == "ftjob-abc123def456"
    assert meta["base_model"] == "local:tiny-llama" and meta["base_model_revision"].startswith("local-")
    assert meta["dataset"]["train_examples"] == 36 and len(meta["dataset"]["sha256"]) == 64
    assert meta["hyperparameters"]["rank"] == 16 and meta["hyperparameters"]["alpha"] == 32
    assert meta["hyperparameters"]["lr_scheduler"] == "cosine" and meta["system_prompt"] == "Answer in JSON."
    assert metrics["steps"] == 12 and metrics["final_loss"] < metrics["first_loss"] - 0.5
    assert metrics["eval_loss"] is not None and metrics["trained_tokens"] > 0
    config_json = json.loads((Path(stores.local_copy(ref.name, ref.version)) / "adapter_config.json").read_text())
    assert set(config_json["target_modules"]) == set(train_job.PROJECTIONS) and config_json["lora_dropout"] == 0.05


class LoraGradients:
    """Records the norm of every LoRA gradient just before each optimizer step."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.quantized_layers = 0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
                import bitsandbytes as bnb

                outer.quantized_layers = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
                grads = [p.grad.float().norm().item() for n, p in model.named_parameters()
                         if "lora_" in n and p.grad is not None]
                outer.norms.append(sum(grads))

        return _Callback()


def test_qlora_4bit_nf4_trains_on_cpu(tmp_path: Path, stores: AdapterStore,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The production QLoRA path (4-bit nf4 base, double quantization) on CPU, without evaluating first."""
    plan = train_job.plan(config(write_dataset(tmp_path / "d.jsonl"), method="qlora", eval_fraction=0.0))
    assert plan.method == "qlora" and not plan.eval
    grads = LoraGradients()
    ref = train_job.run(plan, callbacks=[grads.callback()])
    assert "plan: method=qlora (4-bit nf4 base, double quant" in capsys.readouterr().out
    assert grads.quantized_layers == 4 * 7  # every projection of the 4 layers is a bitsandbytes 4-bit layer
    assert len(grads.norms) == 12 and all(n > 0 for n in grads.norms)
    metrics = ref.metadata["metrics"]
    assert metrics["final_loss"] < metrics["first_loss"] - 0.5
    assert ref.metadata["quantization"] == {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True}


def test_a_bad_dataset_is_refused_before_any_model_loads(tmp_path: Path, stores: AdapterStore,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\nnot json\n')
    code = train_job.main(["--dataset", str(bad), "--base_model", "local:tiny-llama"])
    err = capsys.readouterr().err
    assert code == train_job.EXIT_REFUSED
    assert "line 2: missing field 'output'" in err and "line 3: not valid JSON" in err
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"instruction": "word " * 300, "output": "x"}) + "\n")
    assert train_job.main(["--dataset", str(long), "--base_model", "local:tiny-llama", "--max_length", "64"]) == 2
    assert "line 1: " in (err := capsys.readouterr().err) and "exceeds max_length 64" in err
    assert stores.list() == []


def test_a_failed_run_publishes_nothing(tmp_path: Path, stores: AdapterStore) -> None:
    from transformers import TrainerCallback

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if state.global_step == 3:
                raise RuntimeError("simulated failure mid-training")

    plan = train_job.plan(config(write_dataset(tmp_path / "d.jsonl"), method="lora"))
    with pytest.raises(RuntimeError, match="simulated failure"):
        train_job.run(plan, callbacks=[Boom()])
    assert stores.list() == [] and not (tmp_path / "adapters").exists()
