# Two commands do everything on a fresh machine:
#   make results   the whole pipeline at the quick default size (CPU) into results-quick/ (git-ignored)
#   make test      run the test suite
# make results-full regenerates the published results/ from one commit (hours; rerun it to resume).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: results results-full test lint clean-venv asv-machine asv-results asv-ci gpu-results
QUICK := results-quick

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps escnn==1.0.11
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Never writes results/: everything goes to $(QUICK)/ (ignored by git; asv's raw data to .asv/, the Ant rollouts to
# data/). 28 min in a fresh clone on the shared 2-core machine, set-up included: asv on its small grid
# (SYMM_BENCH_SMALL=1), the quick profile of every script (linear_family and decision_maps on a narrower grid), the
# ablation studies. Last, asv and linear_family.py are compared on the cells both measure (benchmarks/agreement.py:
# fails only if a cell differs by more than 25 % in the first pass and on the same side in all 3 rechecks; asv's
# small grid has one round, so the first pass often flags a few cells).
results: $(STAMP) asv-machine
	@echo "== make results [1/6] asv, small grid (asv prints its progress)"
	SYMM_BENCH_SMALL=1 $(MAKE) --no-print-directory asv-results ASV_OUT=$(QUICK)/asv
	@echo "== make results [2/6] linear_family.py"
	$(PY) benchmarks/linear_family.py --profile quick --groups C8 D8 --dims 64 256 --batches 8 256 \
	  --out $(QUICK)/linear_family
	@echo "== make results [3/6] layer_family.py"
	$(PY) benchmarks/layer_family.py --profile quick --out $(QUICK)/layer_family
	@echo "== make results [4/6] decision_maps.py"
	$(PY) benchmarks/decision_maps.py --profile quick --groups C8 D8-irreps --out $(QUICK)/decision_maps
	@echo "== make results [5/6] ablation studies"
	$(PY) -m ablations.run_all --results $(QUICK)
	@echo "== make results [6/6] asv vs linear_family agreement"
	$(PY) benchmarks/agreement.py --asv $(QUICK)/asv --family $(QUICK)/linear_family --rechecks 3 --recheck-gap 30

# Everything published in results/, from one commit (a clean tree). Resumes: a benchmark step whose output is
# already from HEAD is skipped (benchmarks/up_to_date.py), and the ablation sweeps keep every finished run.
results-full: $(STAMP) asv-machine
	@git diff --quiet HEAD -- . ':!results' ':!*.md' || { echo "make results-full: commit your changes first:" \
	  "results/ must come from one commit"; exit 1; }
	$(PY) benchmarks/up_to_date.py results/asv || $(MAKE) --no-print-directory asv-results ASV_OUT=results/asv
	$(PY) benchmarks/up_to_date.py results/linear_family --profile full || \
	  $(PY) benchmarks/linear_family.py --profile full --out results/linear_family
	$(PY) benchmarks/up_to_date.py results/layer_family --profile full || \
	  $(PY) benchmarks/layer_family.py --profile full --out results/layer_family
	$(PY) benchmarks/up_to_date.py results/decision_maps --profile full || \
	  $(PY) benchmarks/decision_maps.py --profile full --out results/decision_maps
	$(PY) -m ablations.run_all --full --results results
	$(PY) benchmarks/agreement.py --asv results/asv --family results/linear_family

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

# The quick grid on the working tree, saved as the results of the newest code commit (outside results/, not *.md) (.asv/results), then $(ASV_OUT)/*.md. asv's default
# sampling: calls per sample calibrated to >= 10 ms, warm-up, up to 5 samples in each of 2 rounds (no single-call
# samples, which time call overhead and cold caches). Failed benchmarks still reach the tables (as "failed") before
# make reports the failure.
ASV_OUT ?= $(QUICK)/asv
asv-results: asv-machine
	$(ASV) run --python=same --set-commit-hash $$(git rev-list -1 HEAD -- . ':!results' ':!*.md') || status=$$?; \
	$(PY) benchmarks/asv_tables.py --out $(ASV_OUT) && exit $${status:-0}

# CI: the suites import and are well-formed, and one small slice runs (no results saved, no timing checked).
asv-ci: asv-machine
	$(ASV) check --python=same
	$(ASV) run --python=same --quick --bench "$(ASV_CI_BENCH)"

# On a GPU machine (fresh: only Python; installs what is missing, from .whl/ if present): <= 8 min, results/gpu/.
gpu-results:
	benchmarks/gpu_run.sh

clean-venv:
	rm -rf $(VENV)
