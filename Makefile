# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs napari-sff and opens napari with the sample case and the widgets docked
#   make test   creates .venv, installs napari-sff with its test extras and runs lint + the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: 2.13.0 is the CPU wheel on disk here; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
XVFB := $(shell command -v xvfb-run >/dev/null 2>&1 && [ -z "$$DISPLAY" ] && echo "xvfb-run -a -s '-screen 0 1600x1000x24'")

.PHONY: venv demo test lint figures clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[testing]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(XVFB) $(BIN)/python -m napari_sff.demo $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check napari_sff training tests benchmarks

test: lint
	$(XVFB) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
