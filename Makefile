# The two quick-start commands: `make demo` (set up, then run the main job end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m training.run --preset demo --out-dir runs/demo
	$(PY) -m export.to_onnx --run-dir runs/demo --model-dir models
	$(PY) -m serving.demo --model-dir models/srgan --image runs/demo/test_images/lr/00.png --out results
	$(PY) benchmarks/latency.py --model-dir models/srgan --out results/latency

test: setup
	$(PY) -m pytest -q
