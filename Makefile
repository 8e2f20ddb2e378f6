# Two commands do everything on a fresh machine:
#   make results   regenerate results/ (CPU, quick default size)
#   make test      run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: results test lint clean-venv asv-machine asv-results asv-ci gpu-results

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps escnn==1.0.11
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

results: $(STAMP) asv-results
	$(PY) benchmarks/linear_family.py --profile quick --out results/linear_family
	$(PY) benchmarks/layer_family.py --profile quick --out results/layer_family
	$(PY) -m ablations.run_all

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow"
	$(MAKE) --no-print-directory asv-ci
	PYTHON=$(PY) benchmarks/gpu_run.sh --dry-run

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# asv (benchmarks/bench_*.py). asv asks once per machine for a description; --yes takes the defaults.
ASV := $(VENV)/bin/asv
ASV_CI_BENCH := bench_linear\.Linear\..*'C8', 64,

asv-machine: $(STAMP)
	@test -f $(HOME)/.asv-machine.json || $(ASV) machine --yes

# The quick grid on the working tree, saved as HEAD's results (.asv/results), then results/asv/*.md. Each time is
# the median of 7 single calls (asv's --quick times one call, whose hiccups on a shared machine reached 20x; this
# costs ~5 min too). Failed benchmarks still reach the tables (as "failed") before make reports the failure.
ASV_TABLE_SAMPLES := -a repeat=7 -a number=1 -a warmup_time=0 -a rounds=1
asv-results: asv-machine
	$(ASV) run --python=same $(ASV_TABLE_SAMPLES) --set-commit-hash $$(git rev-parse HEAD) || status=$$?; \
	$(PY) benchmarks/asv_tables.py && exit $${status:-0}

# CI: the suites import and are well-formed, and one small slice runs (no results saved, no timing checked).
asv-ci: asv-machine
	$(ASV) check --python=same
	$(ASV) run --python=same --quick --bench "$(ASV_CI_BENCH)"

# On a GPU machine (fresh: only Python; installs what is missing, from .whl/ if present): <= 8 min, results/gpu/.
gpu-results:
	benchmarks/gpu_run.sh

clean-venv:
	rm -rf $(VENV)
