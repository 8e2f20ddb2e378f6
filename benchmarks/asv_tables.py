"""Markdown tables from asv's raw results: every implementation beside the plain-torch baseline, one file per suite.

Usage::

    python benchmarks/asv_tables.py                  # newest result file of this machine under .asv/results
    python benchmarks/asv_tables.py --commit 1a2b3c  # the results of one commit (a hash prefix)
    python benchmarks/asv_tables.py --from-raw       # re-render from results/asv/{raw.csv,meta.json}; no asv needed

Writes ``results/asv/raw.csv`` (one row per benchmark x parameter cell: value, status and spread), ``meta.json``
(machine, torch version, commit, dates, the command) and ``<suite>.md`` for each ``bench_<suite>.py``. In the
tables the ``impl="torch"`` column holds the baseline's own value and every other column the ratio to it in the same
parameter cell; in time tables the fastest implementation of each row is bold. A cell asv skipped (the combination
cannot run here, e.g. no GPU or a dense basis over the limit) reads ``skipped``, a failed one ``failed``; cells
outside a metric's scope (a CPU metric on ``device="cuda"``, an equivariance error for the plain baseline) are
left out.

asv imports every module under ``benchmarks/`` during discovery: this one only defines names asv ignores, imports
asv itself inside functions (asv is not installed in its own benchmark environments) and does its work under
``__main__``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "asv"
BASELINE = "torch"
COMMAND = "make asv-results ASV_OUT={out} (in make results and make results-full: asv on the working tree, then this)"
#: The environment variables that choose asv's grid (``_asv_common``): shown before the command when set.
GRID_VARIABLES = ("SYMM_BENCH_FULL", "SYMM_BENCH_SMALL")
#: Metric titles in display order; metrics not listed are appended in name order.
TITLES = {
    "time_eval_forward": "eval forward, CPU",
    "time_train_step": "forward + backward, CPU",
    "time_construction": "construction, CPU",
    "peakmem_forward": "peak host memory (RSS) over an eval forward",
    "track_param_bytes": "parameter bytes",
    "track_buffer_bytes": "buffer bytes",
    "track_cuda_eval_forward_ms": "eval forward, CUDA",
    "track_cuda_train_step_ms": "forward + backward, CUDA",
    "track_cuda_forward_peak_bytes": "peak CUDA memory over an eval forward",
    "track_equivariance_error": "equivariance error (max relative, float32)",
}
#: What ``benchmarks/_asv_common.py`` sets as asv's ``timer`` (written into meta.json; older runs: wall clock).
TIMER = ("the calling thread's CPU time (time.thread_time) for time_train_step and time_eval_forward, the wall clock "
         "for time_construction")  # fmt: skip
RAW_FIELDS = ["suite_file", "suite", "metric", "unit", "params", "value", "status", "q_25", "q_75", "repeat"]


# ----------------------------------------------------------------------------------------------- reading asv
def _asv_paths() -> tuple[Path, str | None]:
    """asv's results folder (from asv.conf.json) and the name of this machine (``None`` if not configured)."""
    from asv.config import Config
    from asv.machine import Machine

    conf = Config.load(str(REPO / "asv.conf.json"))
    results_dir = (REPO / conf.results_dir).resolve()
    try:
        machine = Machine.load(interactive=False).machine
    except Exception:  # no ~/.asv-machine.json: fall back to whatever machine has results
        machine = None
    return results_dir, machine


def _run_started(result) -> float:
    """When a result file's benchmarks ran (ms since the epoch; 0 when asv did not record it)."""
    return max((v for v in result.started_at.values() if v is not None), default=0)


def load_result(commit: str | None, machine: str | None):
    """The asv ``Results`` of ``commit`` (a hash prefix) or, by default, the newest run on this machine."""
    from asv.results import iter_results, iter_results_for_machine

    results_dir, configured = _asv_paths()
    machine = machine or configured
    found = list(iter_results_for_machine(str(results_dir), machine) if machine else iter_results(str(results_dir)))
    if commit is not None:
        found = [r for r in found if r.commit_hash.startswith(commit)]
    if not found:
        where = f"machine {machine!r}" if machine else "any machine"
        sys.exit(f"no asv results for {where}{f' at commit {commit}' if commit else ''} under {results_dir}")
    return max(found, key=_run_started), results_dir


def _benchmark_meta(results_dir: Path) -> dict:
    path = results_dir / "benchmarks.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _unit(name: str, meta: dict) -> str:
    if "unit" in meta:
        return meta["unit"]
    return "seconds" if name.split(".")[-1].startswith("time_") else "bytes"


def flatten(result, results_dir: Path) -> list[dict]:
    """One row per (benchmark, parameter cell) of ``result``, in asv's parameter order.

    ``status`` is ``ok``, ``skipped`` (asv recorded NaN: the setup raised ``NotImplementedError`` or the benchmark is
    skipped on this machine), ``failed`` (asv recorded no value) or ``out of scope`` (the cell is in the benchmark's
    ``skip_params``). ``params`` is a JSON object ``{name: value}``.
    """
    benchmarks, rows = _benchmark_meta(results_dir), []
    for name in sorted(result.get_all_result_keys()):
        meta = benchmarks.get(name, {})
        suite_file, suite, metric = name.split(".")
        param_names = meta.get("param_names", [])
        grid = result.get_result_params(name)
        if len(param_names) != len(grid):  # benchmarks.json comes from another benchmark version
            param_names = [f"param{i + 1}" for i in range(len(grid))]
        out_of_scope = {tuple(c) for c in meta.get("skip_params", [])}
        values = result.get_result_value(name, grid)
        stats = result.get_result_stats(name, grid)
        for cell, value, stat in zip(itertools.product(*grid), values, stats, strict=True):
            params = [ast.literal_eval(v) for v in cell]
            if value is not None and not math.isnan(value):
                status = "ok"
            elif tuple(params) in out_of_scope:
                status = "out of scope"
            else:
                status = "failed" if value is None else "skipped"
            stat = stat or {}
            rows.append({
                "suite_file": suite_file, "suite": suite, "metric": metric, "unit": _unit(name, meta),
                "params": json.dumps(dict(zip(param_names, params, strict=True))),
                "value": value if status == "ok" else "", "status": status,
                "q_25": stat.get("q_25", ""), "q_75": stat.get("q_75", ""), "repeat": stat.get("repeat", ""),
            })  # fmt: skip
    return rows


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _iso(ms: float | None) -> str:
    if not ms:
        return "unknown"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(timespec="seconds")


def _grid_prefix() -> str:
    """``"SYMM_BENCH_SMALL=1 "`` and the like: the grid variables of this process (``make asv-results`` passes its
    environment to asv and to this script alike)."""
    return "".join(f"{name}=1 " for name in GRID_VARIABLES if os.environ.get(name) == "1")


def describe(result, results_dir: Path, out: Path = OUT) -> dict:
    """Provenance of one result file: machine, versions, commit, dates, environment and the regenerating command."""
    import asv

    machine_file = results_dir / result.params.get("machine", "") / "machine.json"
    machine = json.loads(machine_file.read_text()) if machine_file.exists() else {}
    machine.pop("version", None)
    existing = result.env_name.startswith("existing")
    grid = _grid_prefix() if existing else ""
    shown = out.resolve().relative_to(REPO).as_posix() if out.resolve().is_relative_to(REPO) else f".../{out.name}"
    if existing:  # --python=same: asv used its own interpreter, the one running this script in `make results`
        import importlib.metadata

        torch_version = f"{importlib.metadata.version('torch')} (the environment running asv and this script)"
    else:  # asv built a virtualenv from the matrix's pins
        torch_version = f"{result._requirements.get('torch', 'unknown')} (asv's virtualenv {result.env_name})"
    return {
        "machine": machine,
        "torch": torch_version,
        "python": platform.python_version() if existing else result._python,  # never the interpreter's path
        "asv": asv.__version__,
        "commit": result.commit_hash,
        "commit_subject": _git("log", "-1", "--format=%s", result.commit_hash),
        "commit_date": _iso(result.date),
        "run_date": _iso(_run_started(result)),
        "environment": "the working tree in the current environment (--python=same)" if existing
        else f"a clean checkout of the commit in asv's virtualenv {result.env_name}",
        "command": grid + COMMAND.format(out=shown) if existing else f"asv run {result.commit_hash[:8]}^! && python "
        f"benchmarks/asv_tables.py --commit {result.commit_hash[:8]} --out {shown}",
        "rerender": f"python benchmarks/asv_tables.py --from-raw --out {shown}",
        "timer": TIMER,
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------- formatting
def _scaled(value: float, steps: list[tuple[float, str]], fmt: str) -> str:
    for scale, suffix in steps:
        if abs(value) >= scale:
            return f"{value / scale:{fmt}} {suffix}"
    scale, suffix = steps[-1]
    return f"{value / scale:{fmt}} {suffix}"


def fmt_value(value: float, unit: str) -> str:
    if unit == "seconds":
        return _scaled(value, [(1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")], ".3g")
    if unit == "ms":
        return _scaled(value * 1e-3, [(1, "s"), (1e-3, "ms"), (1e-6, "µs")], ".3g")
    if unit == "bytes":
        return _scaled(value, [(2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")], ".3g")
    return f"{value:.1e}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.3g}×"


def markdown_table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def metric_kind(metric: str, unit: str) -> str:
    """``time`` (ratio, fastest bold), ``memory`` (ratio) or ``absolute`` (no meaningful ratio to torch)."""
    if unit in ("seconds", "ms"):
        return "time"
    if unit == "bytes":
        return "memory"
    return "absolute"


# ----------------------------------------------------------------------------------------------- tables
def _impl_order(rows: list[dict]) -> list[str]:
    seen = dict.fromkeys(r["params"]["impl"] for r in rows)
    return [BASELINE] * (BASELINE in seen) + [i for i in seen if i != BASELINE]


def metric_section(metric: str, rows: list[dict]) -> tuple[str, dict[str, list[float]]]:
    """One metric's Markdown (a table per device) and, per implementation, its ratios to torch over the cells."""
    unit, kind = rows[0]["unit"], metric_kind(metric, rows[0]["unit"])
    title = TITLES.get(metric, metric.replace("_", " "))
    parts, ratios = [f"### {title} (`{metric}`, {unit})"], {}
    per_device = {}
    for r in rows:
        if r["status"] != "out of scope":
            per_device.setdefault(r["params"].get("device", ""), []).append(r)
    measured = [d for d, cells in per_device.items() if any(r["status"] != "skipped" for r in cells)]
    for device, cells in per_device.items():
        if device not in measured:
            parts.append(f"`device={device}`: all {len(cells)} cells skipped (not available on this machine).")
            continue
        impls = _impl_order(cells)
        keys = [k for k in cells[0]["params"] if k not in ("impl", "device")]
        by_cell: dict[tuple, dict[str, dict]] = {}
        for r in cells:
            by_cell.setdefault(tuple(r["params"][k] for k in keys), {})[r["params"]["impl"]] = r
        body = []
        for cell, per_impl in by_cell.items():
            base = per_impl.get(BASELINE)
            base_value = base["value"] if base and base["status"] == "ok" else None
            ok = {i: r["value"] for i, r in per_impl.items() if r["status"] == "ok"}
            fastest = min(ok, key=ok.get) if kind == "time" and len(ok) > 1 else None
            line = [str(v) for v in cell]
            for impl in impls:
                r = per_impl.get(impl)
                if r is None:
                    text = "–"
                elif r["status"] != "ok":
                    text = r["status"]
                elif impl == BASELINE or kind == "absolute" or not base_value:
                    text = fmt_value(r["value"], unit)
                else:
                    ratio = r["value"] / base_value
                    ratios.setdefault(impl, []).append(ratio)
                    text = fmt_ratio(ratio)
                line.append(f"**{text}**" if impl == fastest else text)
            body.append(line)
        header = keys + [f"{i} (abs.)" if i == BASELINE and kind != "absolute" else i for i in impls]
        if len(measured) > 1:
            parts.append(f"`device={device}`")
        parts.append(markdown_table(header, body, numeric_from=len(keys)))
    return "\n\n".join(parts), ratios


def summary_table(summary: dict[str, dict[str, list[float]]]) -> str:
    """Geometric mean (min–max, number of cells) of each implementation's ratios to torch, per metric."""
    impls = list(dict.fromkeys(i for per_impl in summary.values() for i in per_impl))
    body = []
    for metric, per_impl in summary.items():
        line = [f"`{metric}`"]
        for impl in impls:
            r = per_impl.get(impl)
            if not r:
                line.append("–")
                continue
            gmean = math.exp(statistics.fmean(math.log(x) for x in r))
            line.append(f"{fmt_ratio(gmean)} ({min(r):.2f}–{max(r):.2f}, n={len(r)})")
        body.append(line)
    return markdown_table(["metric", *impls], body, numeric_from=1)


def header(suite_file: str, meta: dict, rows: list[dict]) -> str:
    m = meta["machine"]
    ram = f"{int(m['ram']) / 2**30:.0f} GiB RAM" if str(m.get("ram", "")).isdigit() else ""
    machine = ", ".join(
        x for x in (m.get("machine"), m.get("cpu"), f"{m.get('num_cpu', '?')} cores", ram, m.get("os")) if x
    )
    dirty = " + uncommitted changes" if "uncommitted" in meta["commit"] else ""
    commit = f"`{meta['commit'][:12]}{dirty}`" + (f" ({meta['commit_subject']})" if meta.get("commit_subject") else "")
    samples = [int(float(r["repeat"])) for r in rows if r["unit"] == "seconds" and r["status"] == "ok" and r["repeat"]]
    per_cell = f"the median of {statistics.median(samples):.0f}" if samples else "an unknown number of"
    return "\n".join([
        f"# asv: `benchmarks/{suite_file}.py`",
        "",
        f"- machine: {machine}",
        f"- torch {meta['torch']}, Python {meta['python']}, asv {meta['asv']}",
        f"- commit {commit}, committed {meta['commit_date']}; measured {meta['run_date']} on "
        f"{meta['environment']}",
        f"- regenerate: `{meta['command']}`; re-render only: `{meta['rerender']}`",
        "",
        "Baseline columns (`torch (abs.)`) hold the plain-torch twin's own value; every other column is the ratio to "
        "it in the same row (below 1: faster or smaller than torch). Bold: the fastest implementation of the row. "
        "`skipped`: asv skipped the cell (cannot run here), `failed`: asv recorded no value, `–`: no such cell.",
        meta.get("timing") or f"CPU times: one torch thread, float32, {per_cell} samples per cell (asv's "
        "calibrated timing) on a machine that may be shared; read single ratios as ±20 % and isolated outliers as "
        f"noise. Clock: {meta.get('timer', 'wall clock (asv default)')}.",
    ])  # fmt: skip


def render(rows: list[dict], meta: dict, out: Path) -> list[Path]:
    """Write ``<suite>.md`` for every suite file in ``rows``; returns the paths written."""
    for r in rows:
        r["params"] = json.loads(r["params"]) if isinstance(r["params"], str) else r["params"]
        r["value"] = float(r["value"]) if r["status"] == "ok" else None
    written = []
    for suite_file in dict.fromkeys(r["suite_file"] for r in rows):
        of_file = [r for r in rows if r["suite_file"] == suite_file]
        sections = [header(suite_file, meta, of_file)]
        for suite in dict.fromkeys(r["suite"] for r in of_file):
            of_suite = [r for r in of_file if r["suite"] == suite]
            metrics = sorted(dict.fromkeys(r["metric"] for r in of_suite), key=_metric_rank)
            blocks, summary = [], {}
            for metric in metrics:
                text, ratios = metric_section(metric, [r for r in of_suite if r["metric"] == metric])
                blocks.append(text)
                if ratios:
                    summary[metric] = ratios
            sections.append(f"## {suite}")
            if summary:
                sections.append("Ratio to torch, geometric mean over the rows below (min–max, rows):\n\n"
                                + summary_table(summary))  # fmt: skip
            sections.extend(blocks)
        path = out / f"{suite_file.removeprefix('bench_')}.md"
        path.write_text("\n\n".join(sections) + "\n")
        written.append(path)
    return written


def _metric_rank(metric: str) -> tuple[int, str]:
    order = list(TITLES)
    return (order.index(metric) if metric in order else len(order), metric)


# ----------------------------------------------------------------------------------------------- main
def save_raw(rows: list[dict], meta: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "raw.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RAW_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_raw(out: Path) -> tuple[list[dict], dict]:
    with open(out / "raw.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((out / "meta.json").read_text())


def main(argv: list[str] | None = None) -> None:
    doc = __doc__.split("\n\n")[0]
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--commit", help="a hash prefix of the results to tabulate (default: the newest run)")
    p.add_argument("--machine", help="asv machine name (default: this machine's, from ~/.asv-machine.json)")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (default %(default)s)")
    p.add_argument("--from-raw", action="store_true", help="re-render the tables from OUT/raw.csv and OUT/meta.json")
    args = p.parse_args(argv)
    if args.from_raw:
        rows, meta = load_raw(args.out)
    else:
        result, results_dir = load_result(args.commit, args.machine)
        rows, meta = flatten(result, results_dir), describe(result, results_dir, args.out)
        save_raw(rows, meta, args.out)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    for path in render(rows, meta, args.out):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    print(f"commit {meta['commit'][:12]}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + " cells")


if __name__ == "__main__":
    main()
