# Two entry points for a fresh machine: `make demo` and `make test`. Setup is idempotent: the venv is
# (re)built only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medsynth-installed

NNUNET_STAMP := .nnunet-deps/.installed
# nnU-Net's own dataset check runs in the tests; nnunetv2's dependencies would pull a CUDA torchvision,
# so only what `verify_dataset_integrity` imports is installed, without dependencies, beside the venv.
NNUNET_PKGS := nnunetv2 batchgenerators acvl-utils SimpleITK pandas python-dateutil pytz tzdata six yacs \
	blosc2 numexpr msgpack ndindex py-cpuinfo connected-components-3d requests httpx httpcore h11 anyio sniffio

.PHONY: setup demo test test-all test-gpu lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	# The ocr extra (burned-in text in the audit) is installed so that the tests cover it.
	$(BIN)/python -m pip install -q -e ".[dev,ocr]"
	touch $(STAMP)

setup: $(STAMP)

$(NNUNET_STAMP): $(STAMP)
	# A stale link or a half-finished install is removed first (a link here once pointed at itself).
	rm -rf .nnunet-deps
	$(BIN)/python -m pip install -q --no-deps --target .nnunet-deps $(NNUNET_PKGS)
	touch $(NNUNET_STAMP)

demo: setup
	$(BIN)/medsynth demo --out demo-output --overwrite

test: setup $(NNUNET_STAMP)
	$(BIN)/ruff check medsynth tests benchmarks
	$(BIN)/python -m pytest

test-all: setup $(NNUNET_STAMP)
	$(BIN)/python -m pytest -m "not gpu"

# The CUDA paths (tests/gpu, docs/gpus.md); fails, not skips, on a machine without a visible GPU.
test-gpu: setup $(NNUNET_STAMP)
	$(BIN)/python -m pytest -m gpu

lint: setup
	$(BIN)/ruff check medsynth tests benchmarks

clean:
	rm -rf $(VENV) .nnunet-deps demo-output
