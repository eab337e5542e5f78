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
$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,test]'
	$(BIN)/python -m annotation install-server
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/python -m align.demo

clean:
	rm -rf $(VENV) demo-output
