# `make demo`, `make test` and `make bench` create .venv on first use and install tfreid into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfreid-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint bench install clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,onnx,search]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out=demo_out

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache
