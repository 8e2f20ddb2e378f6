"""Regenerate every study (sweep, figures, table) and the strategy guide ``<DIR>/README.md``.

    python -m ablations.run_all [--full] [--only basis_expansion ...] [--backend local|ray|serial] [--workers N]
        [--ray-address ADDR] [--gpus G] [--threads T] [--device cpu|cuda] [--results DIR]

``--results DIR`` (default ``results/``, the published folder; ``--out`` is an alias) is where the studies and the
guide are written: ``make results`` passes the git-ignored ``results-quick/``, ``make results-full`` ``results/``.
Studies resume: finished runs are kept under ``<DIR>/<study>/runs/`` and skipped when the same command runs again
(a tuned study resumes its tuning stage too), so an interrupted ``--full`` run continues where it stopped.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from . import guide
from .common import RESULTS, STUDY_MODULES, main
from .frames import display_path
from .sweep import BACKENDS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ablations.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="publication-size profile of every study")
    parser.add_argument("--only", nargs="+", choices=list(STUDY_MODULES), default=list(STUDY_MODULES))
    parser.add_argument("--backend", choices=BACKENDS, default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray job (needs --device cuda)")
    parser.add_argument("--device", default="cpu", help="where every run trains: cpu or cuda")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--results", "--out", dest="results", type=Path, default=RESULTS,
                        help="output root (default: the published results/)")  # fmt: skip
    return parser


def run(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    forwarded = ["--backend", args.backend, "--workers", str(args.workers), "--threads", str(args.threads),
                 "--gpus", str(args.gpus), "--device", args.device]  # fmt: skip
    forwarded += (["--full"] if args.full else []) + (["--no-progress"] if args.no_progress else [])
    forwarded += ["--ray-address", args.ray_address] if args.ray_address else []
    begin = time.perf_counter()
    for index, study in enumerate(args.only, 1):
        print(f"[{index}/{len(args.only)}] {study} ({'full' if args.full else 'quick'} profile)", flush=True)
        module = importlib.import_module(STUDY_MODULES[study])
        start = time.perf_counter()
        argv = [*forwarded, "--out", str(args.results / study)]
        out = main(module.STUDY, module.Config, module.jobs, module.run, argv)
        print(f"{study}: {time.perf_counter() - start:.0f} s -> {display_path(out)}", flush=True)
    print(display_path(guide.write(args.results)))
    print(f"{len(args.only)} studies in {time.perf_counter() - begin:.0f} s", flush=True)


if __name__ == "__main__":
    run()
