# Two commands are the contract, both work on a machine with nothing but python3 (>= 3.10, with venv):
#   make demo   create .venv, install, run the demo (QKeras model -> HGQ2 -> fine-tune -> hls4ml + da4ml)
#   make test   create .venv, install with test extras and the QKeras reference, run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REF    := .qkeras-ref

.PHONY: demo test test-fast install qkeras-ref fixtures bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# The real QKeras 0.9.0, in its own --target folder, used only in subprocesses (never next to hgq2).
$(REF)/.installed: fixtures/qkeras/requirements.txt | $(STAMP)
	rm -rf $(REF)
	$(BIN)/python -m pip install --quiet --no-deps --target $(REF) -r fixtures/qkeras/requirements.txt
	touch $@

qkeras-ref: $(REF)/.installed

demo: install
	$(BIN)/hgqbridge demo

test: install qkeras-ref
	$(BIN)/python -m pytest

# Locally, without the slow cases (C++ compilation, the QKeras re-run); CI always runs `make test`.
test-fast: install
	$(BIN)/python -m pytest -m 'not slow'

fixtures: qkeras-ref
	TF_USE_LEGACY_KERAS=1 PYTHONPATH=$(REF) $(BIN)/python fixtures/qkeras/make_fixtures.py

bench: install
	$(BIN)/python bench/finetune.py

clean:
	rm -rf $(VENV) $(REF) .pytest_cache demo-out-*
