# Two commands do everything on a fresh machine:
#   make results   regenerate results/ (CPU, quick default size)
#   make test      run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: results test lint clean-venv

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps escnn==1.0.11
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

results: $(STAMP)
	$(PY) benchmarks/linear_family.py --profile quick --out results/linear_family
	$(PY) benchmarks/layer_family.py --profile quick --out results/layer_family

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
