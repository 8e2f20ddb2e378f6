"""The measurements of the one-shot GPU run (``benchmarks/gpu_run.sh``), one subcommand per step.

    python -m benchmarks.device_run meta --out results/gpu --command "benchmarks/gpu_run.sh"
    python -m benchmarks.device_run suites --device cuda --out results/gpu/asv [--deadline-s 150]
    python -m benchmarks.device_run equivariance --device cuda --dtypes float32 tf32 float64 --out results/gpu/...
    python -m benchmarks.device_run summary --out results/gpu

``suites`` runs the ``track_cuda_*`` benchmarks of the asv suites (``bench_*.py``) over their ``device="cuda"``
parameter cells, calling what asv calls (the suite's ``setup``, the method's own ``setup`` from its scope, the
method) in this one process, and writes ``raw.csv``/``meta.json`` in ``asv_tables``' format, which then renders the
per-suite tables. It does not go through ``asv run --python=same`` because on a fresh GPU machine that needs asv
and a machine file, a git checkout (a copied working tree has none), and one process per benchmark (a CUDA context
and the torch/escnn imports each time, seconds per cell over ~150 cells), and asv writes a result file only when a
whole benchmark's grid is done, so a run cut short by its time box would keep nothing. Here each cell is written the
moment it is measured, cells past ``--deadline-s`` are recorded as ``not run``, and the figures are the suites' own.
With ``--device cpu`` (the dry run) the same code runs on the CPU: the timers still work, the CUDA memory metric is
left out.

``equivariance`` measures the relative equivariance error of every equivariant layer (one cell per suite, group and
strategy, plus ``InvariantBias`` and ``eAffine``) on the device in each dtype (``tf32``: float32 tensors with TF32
matmuls allowed); every element of each group is checked. Rows are written as they land.

A module under ``benchmarks/`` that asv imports during discovery: it defines no benchmark names and works only
under ``__main__``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib
import importlib.metadata
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from .common import DTYPES, GROUP_ORDERS, REPO, Placement, display_path, run_commit

SUITE_MODULES = ("bench_linear", "bench_norms", "bench_attention", "bench_models")
EQUIVARIANCE_FIELDS = ["layer", "impl", "group", "D", "device", "dtype", "max_rel", "max_abs", "status", "note"]


# ----------------------------------------------------------------------------------------------- provenance
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return platform.processor() or "unknown"


def _nvidia_driver() -> str:
    """The NVIDIA driver version (nvidia-smi, else /proc/driver/nvidia/version), or "unknown"."""
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        proc = subprocess.run(query, capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return "unknown"
    words = text.split()
    return next((w for w in words if w[:1].isdigit() and "." in w), "unknown")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def environment(device: str) -> dict:
    """Device, driver, CUDA and library versions, commit and date; no machine paths."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": run_commit(),
        "torch": torch.__version__,
        "escnn": _version("escnn"),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update({
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "driver": _nvidia_driver(),
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        })  # fmt: skip
    else:
        info.update({"gpu": None, "driver": None, "cuda_runtime": torch.version.cuda})
    return info


def cmd_meta(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {**environment(args.device), "command": args.command, "dry_run": args.device == "cpu"}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


# ----------------------------------------------------------------------------------------------- suites
def suite_classes() -> list[tuple[str, type]]:
    """``(module name, class)`` of every asv suite class in ``bench_*.py``, in file order."""
    from ._asv_common import FamilySuite

    found = []
    for name in SUITE_MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, FamilySuite) and value.__module__ == module.__name__:
                found.append((name, value))
    return found


def device_cells(suite: type, groups: list[str], device: str, smallest: bool = False) -> list[tuple]:
    """The suite's ``device="cuda"`` parameter cells for ``groups``, with ``device`` put in place of ``"cuda"``;
    ``smallest``: only those at the first value of every numeric axis (sizes)."""
    names = suite.param_names
    first = {n: v[0] for n, v in zip(names, suite.params, strict=True) if isinstance(v[0], int)}
    cells = []
    for combo in itertools.product(*suite.params):
        spec = dict(zip(names, combo, strict=True))
        if smallest and any(spec[n] != v for n, v in first.items()):
            continue
        if spec["device"] == "cuda" and spec.get("group", groups[0]) in groups:
            cells.append(tuple(device if n == "device" else v for n, v in zip(names, combo, strict=True)))
    return cells


def measure_cell(suite: type, metric: str, params: tuple) -> tuple[str, float | None, str]:
    """``(status, value, error)`` of one metric in one cell, called the way asv calls it."""
    try:
        instance = suite()
        instance.setup(*params)
        method = getattr(instance, metric)
        if hasattr(method, "setup"):
            method.setup(*params)
        return "ok", float(method(*params)), ""
    except NotImplementedError as err:  # the suite's own skip (dense basis over the limit, heads split an irrep)
        return "skipped", None, str(err)
    except Exception:  # a failure in one cell (e.g. out of memory) must not stop the run; the row says "failed"
        return "failed", None, traceback.format_exc(limit=3)


def suites_meta(args: argparse.Namespace) -> dict:
    """``meta.json`` in ``asv_tables``' format, so that its renderer writes the tables."""
    env = environment(args.device)
    hardware = Placement(args.device).describe()
    return {
        "machine": {"machine": hardware, "cpu": env["cpu"], "num_cpu": env["cores"], "os": platform.system()},
        "torch": f"{env['torch']} (CUDA {env['cuda_runtime']}, driver {env.get('driver')})",
        "python": env["python"],
        "asv": "not used: python -m benchmarks.device_run suites calls the suites' methods",
        "commit": env["commit"],
        "commit_subject": "",
        "commit_date": "unknown",
        "run_date": env["date"],
        "environment": "the working tree, one process (benchmarks/device_run.py)",
        "command": " ".join(["python -m benchmarks.device_run suites", *args.argv_echo]),
        "rerender": f"python benchmarks/asv_tables.py --from-raw --out {display_path(args.out)}",
        "timing": f"{hardware} times: `torch.utils.benchmark.Timer.blocked_autorange` (synchronises the device), "
        f"median over at least {args.min_run_s:g} s of calls per cell; memory: `torch.cuda.max_memory_allocated` "
        "over one eval forward, module and inputs included.",
    }


def cmd_suites(args: argparse.Namespace) -> int:
    from . import _asv_common, asv_tables

    start = time.perf_counter()
    _asv_common.CUDA_MIN_RUN_S = args.min_run_s
    args.out.mkdir(parents=True, exist_ok=True)
    meta = suites_meta(args)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    errors = open(args.out / "errors.txt", "w")  # noqa: SIM115 (closed below; written as cells fail)
    counts: dict[str, int] = {}
    with open(args.out / "raw.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=asv_tables.RAW_FIELDS)
        writer.writeheader()
        for module, suite in suite_classes():
            metrics = sorted(n for n in dir(suite) if n.startswith("track_cuda_"))
            if not args.device.startswith("cuda"):  # the dry run: no CUDA memory statistics on the CPU
                metrics = [m for m in metrics if not m.endswith("_bytes")]
            cells = device_cells(suite, args.groups, args.device, args.smallest)
            for params in cells:
                late = time.perf_counter() - start > args.deadline_s
                for metric in metrics:
                    status, value, error = ("not run", None, "") if late else measure_cell(suite, metric, params)
                    counts[status] = counts.get(status, 0) + 1
                    if error and status == "failed":
                        errors.write(f"{suite.__name__}.{metric}{params}:\n{error}\n")
                        errors.flush()
                    writer.writerow({
                        "suite_file": module, "suite": suite.__name__, "metric": metric,
                        "unit": getattr(getattr(suite, metric), "unit", ""),
                        "params": json.dumps(dict(zip(suite.param_names, params, strict=True))),
                        "value": "" if value is None else value, "status": status,
                        "q_25": "", "q_75": "", "repeat": "",
                    })  # fmt: skip
                    f.flush()
                _asv_common.case_for.cache_clear()
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            print(f"[{time.perf_counter() - start:6.1f}s] {suite.__name__}: {len(cells)} cells", flush=True)
    errors.close()
    rows, meta = asv_tables.load_raw(args.out)
    for path in asv_tables.render(rows, meta, args.out):
        print(f"wrote {display_path(path)}")
    print("cells: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)
    return 1 if counts.get("failed") else 0


# ----------------------------------------------------------------------------------------------- equivariance
def _extra_layers(device: str) -> dict[str, object]:
    """Layers outside the asv suites: name -> ``rep -> module``."""
    from symm_layers import InvariantBias, eAffine

    return {
        "InvariantBias": lambda rep: InvariantBias(rep, device=device, init_scheme="uniform"),
        "eAffine": lambda rep: eAffine(rep, init_scheme="random", device=device),
    }


def equivariance_cells(groups: list[str], device: str, layers: list[str] | None = None):
    """``(layer, impl, group, build)`` with ``build() -> Case`` for one cell per suite, group and strategy;
    ``layers``: only the suites (class names) and extra layers named there."""
    from ._asv_common import BASELINE, make_case, randn, regular_rep

    for _, suite in suite_classes():
        if layers and suite.__name__ not in layers:
            continue
        names = suite.param_names
        first = {n: v[0] for n, v in zip(names, suite.params, strict=True)}
        impls = [i for i in suite.params[names.index("impl")] if i != BASELINE]
        others = [n for n in names if n not in ("impl", "group", "device")]
        variants = [n for n in others if isinstance(first[n], str)]  # e.g. the norm or position kind: all of them
        for combo in itertools.product(*(suite.params[names.index(n)] for n in variants)):
            label = " ".join([suite.__name__, *combo])
            for group, impl in itertools.product(groups, impls):
                spec = {**first, **dict(zip(variants, combo, strict=True)), "impl": impl, "group": group,
                        "device": device}  # fmt: skip
                yield label, impl, group, lambda spec=spec, suite=suite: suite.make_case(**spec)
    for name, factory in _extra_layers(device).items():
        for group in groups if not layers or name in layers else ():
            rep = regular_rep(group, 64)

            def build(rep=rep, factory=factory):
                call = lambda module, x: module(x)  # noqa: E731
                x = randn(8, rep.size, device=device)
                return make_case(lambda: factory(rep), call, (x,), on_features=call, probe=x, reps=(rep, rep))

            yield name, "equivariant", group, build


def cmd_equivariance(args: argparse.Namespace) -> int:
    from symm_layers.testing import equivariance_error, group_elements

    start, failed = time.perf_counter(), 0
    args.out.mkdir(parents=True, exist_ok=True)
    dtypes = sorted(args.dtypes, key=lambda d: d == "float64")  # cast the module to float64 last
    with open(args.out / "equivariance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EQUIVARIANCE_FIELDS)
        writer.writeheader()
        for layer, impl, group, build in equivariance_cells(args.groups, args.device, args.layers):
            base = {"layer": layer, "impl": impl, "group": group, "device": args.device}
            if time.perf_counter() - start > args.deadline_s:
                writer.writerows({**base, "dtype": d, "status": "not run"} for d in dtypes)
                continue
            try:
                case = build()
            except NotImplementedError as err:
                writer.writerows({**base, "dtype": d, "status": "skipped", "note": str(err)} for d in dtypes)
                continue
            except Exception as err:  # recorded, the run goes on
                failed += 1
                writer.writerows({**base, "dtype": d, "status": "failed", "note": repr(err)[:200]} for d in dtypes)
                continue
            case.module.eval()
            elements = group_elements(case.in_rep.group)
            for dtype in dtypes:
                place = Placement(args.device, dtype)
                place.apply_precision()
                row = {**base, "D": case.in_rep.size, "dtype": dtype}
                try:
                    place.module(case.module)
                    err = equivariance_error(case.on_features, case.in_rep, case.out_rep, place.tensor(case.probe),
                                             elements=elements)  # fmt: skip
                    row.update(max_rel=err.max_rel, max_abs=err.max_abs, status="ok")
                except Exception as err:  # recorded, the run goes on
                    failed += 1
                    row.update(status="failed", note=repr(err)[:200])
                writer.writerow(row)
                f.flush()
            Placement(args.device).apply_precision()
            print(f"[{time.perf_counter() - start:6.1f}s] {layer} {impl} {group}", flush=True)
    write_equivariance_table(args.out)
    return 1 if failed else 0


def write_equivariance_table(out: Path) -> Path:
    """``equivariance.md``: one row per (layer, strategy, group), one column per dtype."""
    with open(out / "equivariance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        text = f"{float(r['max_rel']):.1e}" if r["status"] == "ok" else r["status"]
        cells.setdefault((r["layer"], r["impl"], r["group"], r["D"] or "–"), {})[r["dtype"]] = text
    lines = ["| layer | strategy | group | D | " + " | ".join(dtypes) + " |", "|---" * (4 + len(dtypes)) + "|"]
    lines += [f"| {' | '.join(key)} | " + " | ".join(v.get(d, "–") for d in dtypes) + " |" for key, v in cells.items()]
    worst = {
        d: max((float(r["max_rel"]) for r in rows if r["dtype"] == d and r["status"] == "ok"), default=float("nan"))
        for d in dtypes
    }
    device = rows[0]["device"] if rows else "?"
    head = [
        f"# Equivariance error of every layer on `{device}`",
        "",
        "Largest relative error `max_g |f(g x) - g f(x)| / max |f(x)|` over every element of the group, on the asv "
        "suites' probe inputs, eval mode, no gradients. `tf32`: float32 tensors with TF32 matmuls allowed; "
        "`float64`: the float32-built module cast to float64. Largest per dtype: "
        + ", ".join(f"{d} {v:.1e}" for d, v in worst.items())
        + ".",
        "",
    ]
    path = out / "equivariance.md"
    path.write_text("\n".join(head + lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------------- summary
def render_missing(out: Path) -> None:
    """Render the tables of steps that were cut short after saving raw data but before writing their tables."""
    from . import asv_tables, layer_family, linear_family

    asv = out / "asv"
    if (asv / "raw.csv").exists() and not list(asv.glob("*.md")):
        asv_tables.render(*asv_tables.load_raw(asv), asv)
    if (out / "equivariance" / "equivariance.csv").exists() and not (out / "equivariance" / "equivariance.md").exists():
        write_equivariance_table(out / "equivariance")
    for script in (linear_family, layer_family):
        for folder in sorted((out / script.__name__.rsplit(".", 1)[-1]).glob("*")):
            if (folder / "raw.csv").exists() and not (folder / "table.md").exists():
                (folder / "table.md").write_text(script.render(folder))


def cmd_summary(args: argparse.Namespace) -> int:
    """``README.md`` of the run: the meta header, every step's status and time, links to the outputs."""
    render_missing(args.out)
    meta_path = args.out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    steps = []
    if (args.out / "steps.tsv").exists():
        for line in (args.out / "steps.tsv").read_text().splitlines():
            name, rc, seconds, box = line.split("\t")
            steps.append({"step": name, "exit": int(rc), "seconds": int(seconds), "time_box_s": int(box)})
    meta["steps"] = steps
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    status = {
        0: "ok",
        124: "timed out (partial output kept)",
        137: "killed after its time box",
        125: "not started (budget spent)",
    }
    lines = [
        f"# GPU run: `{meta.get('gpu') or meta.get('device', '?')}`",
        "",
        f"- device: {meta.get('gpu')} ({meta.get('gpu_memory_gib', '?')} GiB, compute capability "
        f"{meta.get('compute_capability', '?')}), driver {meta.get('driver')}, CUDA runtime {meta.get('cuda_runtime')}"
        f", cuDNN {meta.get('cudnn', '?')}",
        f"- torch {meta.get('torch')}, escnn {meta.get('escnn')}, Python {meta.get('python')}; host CPU "
        f"{meta.get('cpu')} ({meta.get('cores')} cores)",
        f"- commit `{meta.get('commit')}`, {meta.get('date')}; command `{meta.get('command')}`",
        "",
        "| step | exit | seconds | time box (s) |",
        "|---|---:|---:|---:|",
        *(f"| {s['step']} | {status.get(s['exit'], s['exit'])} | {s['seconds']} | {s['time_box_s']} |" for s in steps),
        "",
        "Outputs: `asv/` (the suites' `track_cuda_*` benchmarks, one table per suite), `equivariance/`, "
        "`linear_family/<dtype>/`, `layer_family/<dtype>/` and `ablation/` (each with its own header).",
    ]
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    return 0 if all(s["exit"] == 0 for s in steps) else 1


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_run", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)
    for name in ("meta", "suites", "equivariance", "summary"):
        q = sub.add_parser(name)
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--device", default="cuda")
        q.add_argument("--groups", nargs="+", choices=list(GROUP_ORDERS), default=list(GROUP_ORDERS))
        q.add_argument("--deadline-s", type=float, default=float("inf"), help="start no new cell after this")
    sub.choices["meta"].add_argument("--command", default="benchmarks/gpu_run.sh")
    sub.choices["suites"].add_argument("--min-run-s", type=float, default=0.2, help="timed seconds per cell")
    sub.choices["suites"].add_argument("--smallest", action="store_true", help="only the smallest sizes (dry run)")
    sub.choices["equivariance"].add_argument("--dtypes", nargs="+", choices=list(DTYPES),
                                             default=["float32", "tf32", "float64"])  # fmt: skip
    sub.choices["equivariance"].add_argument("--layers", nargs="+", help="suite classes / extra layers (default all)")
    args = p.parse_args(argv)
    args.argv_echo = [a if not Path(a).is_absolute() else display_path(a) for a in argv[1:]]
    if args.step != "summary" and args.device != "cpu":
        Placement(args.device)  # a clear error when CUDA is missing
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return {"meta": cmd_meta, "suites": cmd_suites, "equivariance": cmd_equivariance, "summary": cmd_summary}[
        args.step
    ](args) or 0


if __name__ == "__main__":
    sys.exit(main())
