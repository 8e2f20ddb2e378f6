#!/usr/bin/env bash
# One-shot GPU run of every suite: install what is missing, then measure within a time budget into results/gpu/.
#
#   benchmarks/gpu_run.sh                 # GPU machine: install, then <= 8 min of measuring, writes results/gpu/
#   benchmarks/gpu_run.sh --dry-run       # any machine: CPU, tiny sizes, a temporary folder (make test runs it)
#   benchmarks/gpu_run.sh --download-wheels   # fill .whl/ (Python 3.12, manylinux x86_64) for a machine offline
#
# Options: --out DIR (default results/gpu), --budget-s N (measuring budget, default 480), --no-install,
#          --keep (dry run: keep the temporary folder and print it).
# Environment: PYTHON (default python3; the dry run: .venv/bin/python when it exists), SYMM_COMMIT (the commit to
#          record when the tree is a copy without .git), LOGS (default .gpu_run/logs: full logs, kept out of
#          results/ because tracebacks hold machine paths).
#
# Installing: only modules that do not import are installed. With a .whl/ folder pip installs from it alone
# (--no-index --find-links .whl), else from the registry. An existing torch is kept whatever its version (a GPU
# image's own CUDA build); a missing one is installed as torch==2.13.0 (the registry's CUDA build on Linux).
#
# Measuring, each step in its own process under `timeout` (a hang costs at most its box; the steps' rows are
# written as they are measured, so a step cut short still leaves its partial output), in this order:
#   meta           device, driver, CUDA, torch, escnn versions, commit, command -> meta.json
#   equivariance   every layer x strategy x group, float32 / tf32 / float64 -> equivariance/
#   asv            the asv suites' track_cuda_* benchmarks over their cuda cells (python -m benchmarks.device_run
#                  suites: the suites' own methods in one process, see its docstring for why not `asv run`) -> asv/
#   linear_*       benchmarks/linear_family.py --device cuda, float32 / tf32 / bfloat16 -> linear_family/<dtype>/
#   layer_*        benchmarks/layer_family.py --device cuda, float32 / tf32 / bfloat16 -> layer_family/<dtype>/
#   ablation       python -m ablations.study_cache --device cuda (2 seeds, 100 steps) -> ablation/weight_cache/
#   summary        README.md (every step's exit status and time) and any table a cut-short step did not render
# Exit status: 0 when every step exited 0; the outputs are written either way.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

DRY=0 INSTALL=1 KEEP=0 BUDGET="" OUT="" DOWNLOAD=0
while (($#)); do
    case $1 in
    --dry-run) DRY=1 ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;
    --budget-s) BUDGET=$2; shift ;;
    --out) OUT=$2; shift ;;
    --download-wheels) DOWNLOAD=1 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((DRY)) && [[ -z ${PYTHON:-} && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python3}
# Module -> pip requirement, for everything the steps import (escnn itself goes separately, with --no-deps).
REQUIREMENTS="torch=torch==2.13.0 numpy=numpy<2 scipy=scipy sympy=sympy joblib=joblib autograd=autograd
pymanopt=pymanopt lie_learn=lie_learn==0.0.2 pandas=pandas tabulate=tabulate matplotlib=matplotlib seaborn=seaborn
tqdm=tqdm asv_runner=asv_runner"

pip_install() {
    local args=(-m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
    [[ -d .whl ]] && args+=(--no-index --find-links .whl)
    "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' \
        && [[ -z ${VIRTUAL_ENV:-} ]] && args+=(--break-system-packages)
    timeout 900 "$PY" "${args[@]}" "$@"
}

if ((DOWNLOAD)); then
    specs=() && for pair in $REQUIREMENTS; do [[ ${pair%%=*} == torch ]] || specs+=("${pair#*=}"); done
    "$PY" -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl "${specs[@]}" || exit 1
    "$PY" -m pip download --only-binary=:all: --no-deps -d .whl escnn==1.0.11 || exit 1
    echo "gpu_run.sh: .whl/ holds $(du -sh .whl | cut -f1) (torch excluded: a GPU image brings its own, or the" \
        "registry's CUDA build is installed); carry only what the machine lacks."
    exit 0
fi

# ------------------------------------------------------------------------------------------------ install
missing=$("$PY" - "$REQUIREMENTS" <<'EOF'
import importlib.util, sys
pairs = [p.split("=", 1) for p in sys.argv[1].split()] + [["escnn", "escnn==1.0.11"]]
print(" ".join(spec for module, spec in pairs if importlib.util.find_spec(module) is None))
EOF
) || { echo "gpu_run.sh: $PY does not run" >&2; exit 1; }
if [[ -n $missing ]]; then
    if ((DRY || !INSTALL)); then
        echo "gpu_run.sh: missing in $PY: $missing (the dry run installs nothing: run make first)" >&2
        exit 1
    fi
    echo "[gpu_run] installing: $missing$([[ -d .whl ]] && echo ' (from .whl/ only)')"
    "$PY" -m pip --version >/dev/null 2>&1 || "$PY" -m ensurepip --upgrade || exit 1
    deps=() && for spec in $missing; do [[ $spec == escnn* ]] || deps+=("$spec"); done
    if ((${#deps[@]})); then pip_install "${deps[@]}" || exit 1; fi
    if [[ $missing == *escnn* ]]; then pip_install --no-deps escnn==1.0.11 || exit 1; fi
fi

# ------------------------------------------------------------------------------------------------ plan
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
commit=$(git rev-parse HEAD 2>/dev/null) && export SYMM_COMMIT=$commit
if ((DRY)); then
    DEVICE=cpu OUT=${OUT:-$(mktemp -d)} LOGS=${LOGS:-$OUT/logs}
    suites_opts=(--groups C8 --smallest --min-run-s 0.005 --deadline-s 30)
    equiv_opts=(--groups C8 --layers Linear InvariantBias --deadline-s 20)
    linear_opts=(--profile smoke --groups C8 --dims 16 --batches 8)
    layer_opts=(--profile smoke --groups C8 --families norm mlp)
    ablation_opts=(--seeds 1 --steps 4 --eval-every 2 --train-size 32 --eval-size 16)
    boxes=(meta=30 equivariance=40 asv=50 linear=30 layer=30 ablation=60 summary=30)
    BUDGET=${BUDGET:-300} linear_dtypes="float32 bfloat16" layer_dtypes="tf32"  # the dtype code is shared: one each is enough
else
    DEVICE=cuda OUT=${OUT:-results/gpu} LOGS=${LOGS:-.gpu_run/logs}
    "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
        || { echo "gpu_run.sh: torch sees no CUDA device (use --dry-run on a CPU machine)" >&2; exit 1; }
    suites_opts=(--deadline-s 120)
    equiv_opts=(--deadline-s 45)
    linear_opts=(--profile short)
    layer_opts=(--profile short)
    ablation_opts=(--seeds 2 --steps 100 --eval-every 25)
    boxes=(meta=30 equivariance=60 asv=150 linear=45 layer=45 ablation=45 summary=20)
    BUDGET=${BUDGET:-480} linear_dtypes="float32 tf32 bfloat16" layer_dtypes=$linear_dtypes
    rm -rf "$OUT"
fi
box() { local b; for b in "${boxes[@]}"; do [[ ${b%%=*} == "$1" ]] && echo "${b#*=}"; done; }
mkdir -p "$OUT" "$LOGS"
: >"$OUT/steps.tsv"
started=$(date +%s) failed=0

# step NAME BOX COMMAND...: run COMMAND under `timeout`, shortened to what is left of the budget; record the result.
step() {
    local name=$1 limit=$2 left t0 rc
    shift 2
    left=$((BUDGET - ($(date +%s) - started)))
    if ((left < 5)); then
        printf '%s\t125\t0\t0\n' "$name" >>"$OUT/steps.tsv"
        echo "[gpu_run] $name: not started (budget spent)"
        failed=1
        return
    fi
    ((limit > left)) && limit=$left
    echo "[gpu_run] $name (time box ${limit} s)"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$limit" >>"$OUT/steps.tsv"
    if ((rc != 0)); then
        failed=1
        echo "[gpu_run] $name: exit $rc; last lines of its log:"
        tail -n 8 "$LOGS/$name.log" | sed 's/^/    /'
    fi
}

command="benchmarks/gpu_run.sh$( ((DRY)) && echo ' --dry-run')"
step meta "$(box meta)" "$PY" -m benchmarks.device_run meta --device "$DEVICE" --out "$OUT" --command "$command"
step equivariance "$(box equivariance)" "$PY" -m benchmarks.device_run equivariance --device "$DEVICE" \
    --out "$OUT/equivariance" "${equiv_opts[@]}"
step asv "$(box asv)" "$PY" -m benchmarks.device_run suites --device "$DEVICE" --out "$OUT/asv" "${suites_opts[@]}"
for dtype in $linear_dtypes; do
    extra=() && [[ $dtype != float32 ]] && ((!DRY)) && extra=(--groups D8)
    step "linear_$dtype" "$(box linear)" "$PY" benchmarks/linear_family.py --device "$DEVICE" --dtype "$dtype" \
        --out "$OUT/linear_family/$dtype" "${linear_opts[@]}" "${extra[@]}"
done
for dtype in $layer_dtypes; do
    extra=() && [[ $dtype != float32 ]] && ((!DRY)) && extra=(--groups D8)
    step "layer_$dtype" "$(box layer)" "$PY" benchmarks/layer_family.py --device "$DEVICE" --dtype "$dtype" \
        --out "$OUT/layer_family/$dtype" "${layer_opts[@]}" "${extra[@]}"
done
step ablation "$(box ablation)" "$PY" -m ablations.study_cache --device "$DEVICE" --backend serial --no-progress \
    --out "$OUT/ablation/weight_cache" "${ablation_opts[@]}"
BUDGET=$((BUDGET + $(box summary)))  # the summary always runs
step summary "$(box summary)" "$PY" -m benchmarks.device_run summary --device "$DEVICE" --out "$OUT"

echo "[gpu_run] $(($(date +%s) - started)) s; steps (name, exit, seconds, box):"
sed 's/^/    /' "$OUT/steps.tsv"
if ((DRY)); then
    for f in meta.json README.md asv/raw.csv asv/linear.md equivariance/equivariance.md \
        linear_family/bfloat16/table.md layer_family/tf32/table.md ablation/weight_cache/table.md; do
        [[ -s $OUT/$f ]] || { echo "[gpu_run] dry run: $f was not written" >&2; failed=1; }
    done
    if ((KEEP || failed)); then echo "[gpu_run] dry-run output kept in $OUT"; else rm -rf "$OUT"; fi
fi
((failed == 0)) && echo "[gpu_run] all steps passed" || echo "[gpu_run] some steps failed (see above)" >&2
exit "$failed"
