# The two quick-start commands: `make demo` (set up, then run the main job end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo serve test test-fast

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The short demo run proves the training pipeline and its export (model srgan_demo), and the deployment gate
# refuses it (exit status 3: below bicubic; kept in models/srgan_demo/.rejected/). The models served and scored are
# the two trained generators that ship in training/pretrained/: photos (model srgan, PSNR-oriented, gated by PSNR)
# and photos-gan (model srgan_gan, the GAN, gated by NIQE against srgan), both blessed; the latency is srgan's.
demo: setup
	$(PY) -m training.run --preset demo --run-dir runs/demo
	$(PY) -m export.to_onnx --run-dir runs/demo --repository models --model-name srgan_demo || test $$? -eq 3
	$(PY) -m export.to_onnx --weights training/pretrained/photos --repository models
	$(PY) -m export.to_onnx --weights training/pretrained/photos-gan --repository models --model-name srgan_gan
	$(PY) -m workflows.demo --model-dir models/srgan --model-dir models/srgan_gan --out results
	$(PY) benchmarks/quality.py --model-dir models/srgan --model-dir models/srgan_gan --out results/quality
	$(PY) benchmarks/latency.py --model-dir models/srgan --out results/latency
	@echo "Try the models on your own photograph in a browser: make serve (then open the address it prints)."

# The demo's models (MODELS_CONFIG, written by make demo) on TF Serving's ports, with the web page on the
# REST port (--enable_ui, off by default). Ctrl-C stops it.
MODELS_CONFIG ?= results/models.config
GRPC_PORT ?= 8500
REST_PORT ?= 8501
serve: setup
	@test -f $(MODELS_CONFIG) || { echo "no $(MODELS_CONFIG): run make demo first"; exit 2; }
	$(PY) -m serving.server --model_config_file $(MODELS_CONFIG) --port $(GRPC_PORT) --rest_api_port $(REST_PORT) --enable_ui

test: setup
	$(PY) -m pytest -q --durations=25

test-fast: setup
	$(PY) -m pytest -q -m "not slow"
