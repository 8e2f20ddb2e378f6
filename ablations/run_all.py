"""Regenerate every study (sweep, figures, table) and the strategy guide ``<DIR>/README.md``.

    python -m ablations.run_all [--full] [--only basis_expansion ...] [--backend local|ray|serial] [--workers N]
        [--ray-address ADDR] [--gpus G] [--threads T] [--device cpu|cuda] [--results DIR] [--plan]

``--results DIR`` (default ``results/``, the published folder; ``--out`` is an alias) is where the studies and the
guide are written: ``make results`` passes the git-ignored ``results-quick/``, ``make results-full`` ``results/``.
Studies resume: finished runs are kept under ``<DIR>/<study>/runs/`` and skipped when the same command runs again
(a tuned study resumes its tuning stage too), so an interrupted ``--full`` run continues where it stopped.
With the local backend the studies whose runs share worker processes train together in one pool
(:func:`ablations.sweep.interleave`: each study moves to its next stage on its own, a study that reads another's
results starts once that one is written), and each study's tables and figures are written as soon as its runs are
saved; the studies that run every job in a fresh process (their memory columns) train afterwards, one at a time,
with nothing beside them. Other backends run the studies one after the other.
``--plan`` trains and writes nothing: it prints, per study, how many runs are saved and how many are left to train
(for a tuned study whose tuning stage is unfinished, the later stages only as upper bounds), and the worker-hours
those take, estimated from saved runs of the same configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import time
from pathlib import Path
from statistics import median

from . import guide
from .common import RESULTS, STUDY_MODULES, ProtocolConfig, main, make_config
from .common import _parser as study_parser  # the study scripts' own command line, so a plan sees their jobs
from .frames import display_path
from .sweep import BACKENDS, PlanStage, Track, interleave, run_seconds, run_sweep, tuned_sweep


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
    parser.add_argument("--plan", action="store_true", help="train nothing: count the runs saved and left per study")
    parser.add_argument("--results", "--out", dest="results", type=Path, default=RESULTS,
                        help="output root (default: the published results/)")  # fmt: skip
    return parser


def run(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    forwarded = ["--backend", args.backend, "--workers", str(args.workers), "--threads", str(args.threads),
                 "--gpus", str(args.gpus), "--device", args.device]  # fmt: skip
    forwarded += (["--full"] if args.full else []) + (["--no-progress"] if args.no_progress else [])
    forwarded += ["--ray-address", args.ray_address] if args.ray_address else []
    if args.plan:
        plan(args.only, forwarded, args.results)
        return
    begin = time.perf_counter()
    profile = "full" if args.full else "quick"
    alone = [study for study in args.only if args.backend != "local" or _fresh(study)]
    together = [study for study in args.only if study not in alone]
    if together:
        print(f"[together] {', '.join(together)} ({profile} profile): one pool of {args.workers} workers", flush=True)
        tracks = [_track(study, forwarded, args.results, begin) for study in together]
        interleave(tracks, workers=args.workers, threads=args.threads, progress=not args.no_progress)
    for index, study in enumerate(alone, 1):
        print(f"[{index}/{len(alone)}] {study} ({profile} profile)", flush=True)
        start = time.perf_counter()
        out = _main(study, forwarded, args.results)
        print(f"{study}: {time.perf_counter() - start:.0f} s -> {display_path(out)}", flush=True)
    print(display_path(guide.write(args.results)))
    print(f"{len(args.only)} studies in {time.perf_counter() - begin:.0f} s", flush=True)


def _dry_run(module, config, jobs: list, out: Path) -> list[PlanStage]:
    """The stages the study's own sweep would run now (``plan=`` of :func:`~ablations.sweep.tuned_sweep` or
    :func:`~ablations.sweep.run_sweep`): trains and writes nothing."""
    stages = []
    if isinstance(config, ProtocolConfig):
        tuned_sweep(jobs, module.run, out, config.lr_grid, config.tune_seeds, plan=stages)
    else:
        run_sweep(jobs, module.run, out, plan=stages)
    return stages


def _fresh(study: str) -> bool:
    """Whether ``study`` runs every job in a new process (its memory columns): it then trains with nothing beside it."""
    return bool(getattr(importlib.import_module(STUDY_MODULES[study]).Config, "MEMORY_IN_FRESH_PROCESS", False))


def _argv(module, forwarded: list[str], results: Path) -> list[str]:
    return [*forwarded, *_reads(module, results), "--out", str(results / module.STUDY)]


def _main(study: str, forwarded: list[str], results: Path) -> Path:
    """The study's own command (train what is left, then its tables and figures); returns its folder."""
    module = importlib.import_module(STUDY_MODULES[study])
    return main(module.STUDY, module.Config, module.jobs, module.run, _argv(module, forwarded, results))


def _track(study: str, forwarded: list[str], results: Path, begin: float) -> Track:
    """``study`` as a :class:`~ablations.sweep.Track`: its stages planned by the dry run that ``--plan`` prints,
    its tables and figures written by its own command once all its runs are saved."""
    module = importlib.import_module(STUDY_MODULES[study])
    config = make_config(module.Config, study_parser(study, module.Config).parse_args(_argv(module, forwarded,
                                                                                           results)))  # fmt: skip
    out, jobs = results / study, functools.cache(lambda: module.jobs(config))

    def todo() -> list:
        return [job for stage in _dry_run(module, config, jobs(), out) if not stage.bound for job in stage.jobs]

    def finish() -> None:
        _main(study, forwarded, results)
        print(f"{study}: done at {time.perf_counter() - begin:.0f} s -> {display_path(out)}", flush=True)

    waits = (lambda: module.waits_for(config)) if hasattr(module, "waits_for") else list
    return Track(study, todo, module.run, out / "runs", finish, waits)


def plan(studies: list[str], forwarded: list[str], results: Path) -> list[PlanStage]:
    """Print what ``run`` with the same options would train, study by study, with the training time it would take
    where saved runs of the same configurations tell it, and return every study's stages."""
    every, now, later = [], (0.0, 0, 0), (0.0, 0, 0)
    for study in studies:
        module = importlib.import_module(STUDY_MODULES[study])
        parsed = study_parser(study, module.Config).parse_args([*forwarded, *_reads(module, results)])
        config = make_config(module.Config, parsed)
        if hasattr(module, "waits_for") and (missing := module.waits_for(config)):
            print(f"{study}: waits for {', '.join(missing)} (it retrains configurations they choose)", flush=True)
            continue
        out = results / study
        stages = _dry_run(module, config, module.jobs(config), out)
        print(f"{study}: {describe(stages)}", flush=True)
        if any(stage.todo for stage in stages):
            seconds = run_seconds(out)
            now = _add(now, _estimate([job for stage in stages if not stage.bound for job in stage.jobs], seconds))
            later = _add(later, _estimate([job for stage in stages if stage.bound for job in stage.jobs], seconds))
        every += stages
    then = f", then up to {later[2]} more once tuning finishes ({_time(*later)})" if later[2] else ""
    print(f"to train: {now[2]} runs ({_time(*now)}){then}")
    return every


def _reads(module, results: Path) -> list[str]:
    """``--results DIR`` for a study that reads other studies' data (its ``Config`` has a ``results`` field), with
    ``DIR`` relative to the repository where it lies inside it (it is saved in the study's ``config.json``)."""
    if "results" not in {field.name for field in dataclasses.fields(module.Config)}:
        return []
    path = Path(results).resolve()
    return ["--results", path.relative_to(RESULTS.parent).as_posix() if path.is_relative_to(RESULTS.parent)
            else str(path)]  # fmt: skip


def _estimate(jobs: list, seconds: dict[tuple[str, str], list[float]]) -> tuple[float, int, int]:
    """Training hours of ``jobs`` (each at the median of the saved runs with its label and step budget), how many
    of them have such runs, and how many there are."""
    keys = [(job.label, str(job.params.get("steps", ""))) for job in jobs]
    known = [median(seconds[key]) for key in keys if key in seconds]
    return sum(known) / 3600, len(known), len(keys)


def _add(a: tuple, b: tuple) -> tuple:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _time(hours: float, estimated: int, runs: int) -> str:
    """An estimate in words: worker-hours (one run at a time per worker) and which runs it covers."""
    if not estimated:
        return "no saved run of these configurations to estimate the time from" if runs else "none"
    cover = "" if estimated == runs else f" for the {estimated} whose configuration has saved runs"
    return f"≈ {hours:.1f} worker-hours of training{cover}"


def describe(stages: list[PlanStage]) -> str:
    """One study's plan in words."""
    if not any(stage.todo for stage in stages):
        counts = ", ".join(f"{stage.table}: {stage.runs} runs" for stage in stages)
        return f"nothing to train ({counts}, all saved)"
    known = [f"{stage.table}: {stage.todo} of {stage.runs} runs to train" for stage in stages
             if not stage.bound and stage.todo]  # fmt: skip
    what = {"tuning.csv": "tuning runs at rates past the grid", "metrics.csv": "final-stage runs"}
    bounds = [f"up to {stage.todo} {what.get(stage.table, stage.table)}" for stage in stages if stage.bound]
    return "; ".join(known) + (f"; then {' and '.join(bounds)}" if bounds else "")


if __name__ == "__main__":
    run()
