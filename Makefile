# Two commands are the contract, both work on a machine with nothing but python3 (3.11 to 3.13, with venv):
#   make demo   create .venv, install, run the demo (QKeras model -> HGQ2 -> fine-tune -> hls4ml + da4ml)
#   make test   create .venv, install with test extras and the QKeras reference, run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REF    := .qkeras-ref
REF3   := .qkeras-v3-ref
REFO   := .onnx-ref
REFH   := .hgq1-ref
# HGQ1 0.2.6 needs TensorFlow 2.15 (Python <= 3.11); its venv is made with this interpreter.
HGQ1_PYTHON ?= python3.11

.PHONY: demo test test-fast install qkeras-ref lint wheel-smoke fixtures fixtures-check bench bench-export clean

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

# qkeras-v3 (QKeras for Keras 3, the reference for .keras files), likewise in its own folder.
$(REF3)/.installed: fixtures/qkeras_v3/requirements.txt | $(STAMP)
	rm -rf $(REF3)
	$(BIN)/python -m pip install --quiet --no-deps --target $(REF3) -r fixtures/qkeras_v3/requirements.txt
	touch $@

# torch (the ONNX exporter) and qonnx (the QONNX executor), likewise in their own folder.
$(REFO)/.installed: fixtures/onnx/requirements.txt | $(STAMP)
	rm -rf $(REFO)
	$(BIN)/python -m pip install --quiet --no-deps --target $(REFO) -r fixtures/onnx/requirements.txt
	touch $@

# The real HGQ1 (HGQ 0.2.6) with its own TensorFlow 2.15 / Keras 2.15 / numpy 1.26, in a venv of its own (it cannot
# share a Python with Keras 3), used only in subprocesses.
$(REFH)/.installed: fixtures/hgq1/requirements.txt
	rm -rf $(REFH)
	$(HGQ1_PYTHON) -m venv $(REFH)
	$(REFH)/bin/python -m pip install --quiet --no-deps -r fixtures/hgq1/requirements.txt
	touch $@

qkeras-ref: $(REF)/.installed $(REF3)/.installed $(REFO)/.installed $(REFH)/.installed

demo: install
	$(BIN)/hgqbridge demo

# Each step is timed (.ci/timed); the table at the end shows the install, every pytest group and the wheel smoke test.
test:
	@rm -rf .timings
	@.ci/timed 'install (venv + references)' $(MAKE) --no-print-directory install qkeras-ref
	@.ci/timed 'lint and types' $(MAKE) --no-print-directory lint
	@.ci/timed pytest $(BIN)/python -m pytest
	@.ci/timed 'wheel smoke test' $(MAKE) --no-print-directory wheel-smoke
	@$(BIN)/python .ci/timings.py

# ruff (lint and format) and mypy over every tracked Python file: zero findings.
lint: install
	$(BIN)/ruff check $$(git ls-files '*.py')
	$(BIN)/ruff format --check $$(git ls-files '*.py')
	.ci/typecheck

# Build the sdist and wheel, install the wheel into a fresh venv, run it outside the source tree.
wheel-smoke: install
	PYTHON=$(PYTHON) .ci/wheel-smoke

# Locally, without the slow cases (C++ compilation, the QKeras re-run); CI always runs `make test`.
test-fast: install
	$(BIN)/python -m pytest -m 'not slow'

fixtures: qkeras-ref
	TF_USE_LEGACY_KERAS=1 PYTHONPATH=$(REF) $(BIN)/python fixtures/qkeras/make_fixtures.py
	TF_USE_LEGACY_KERAS=1 PYTHONPATH=$(REF) $(BIN)/python fixtures/qkeras_peers/make_fixtures.py
	PYTHONPATH=$(REF3) $(BIN)/python fixtures/qkeras_v3/make_fixtures.py
	TF_USE_LEGACY_KERAS=1 PYTHONPATH=$(REF) $(BIN)/python fixtures/keras/make_fixtures.py --keras 2
	$(BIN)/python fixtures/keras/make_fixtures.py --keras 3
	PYTHONPATH=$(REFO) $(BIN)/python fixtures/onnx/make_fixtures.py
	$(REFH)/bin/python fixtures/hgq1/make_fixtures.py

# Re-check every committed QKeras peer golden against the real QKeras (make test re-checks hls4ml's and the sweep's).
fixtures-check: qkeras-ref
	TF_USE_LEGACY_KERAS=1 PYTHONPATH=$(REF) $(BIN)/python fixtures/qkeras_peers/make_fixtures.py --check > /dev/null

bench: install
	$(BIN)/python bench/finetune.py
	$(BIN)/python bench/export_scaling.py

# Export time and memory against model size, per target and phase (default sizes: minutes; --large: hours).
bench-export: install
	$(BIN)/python bench/export_scaling.py

clean:
	rm -rf $(VENV) $(REF) $(REF3) $(REFO) $(REFH) .pytest_cache .timings build dist demo-out-*
