"""Run a study's (config, seed) jobs as independent tasks, save each finished run at once, resume on restart.

A job is a plain description (:class:`Job`); a job function ``fn(job) -> list[dict]`` trains one model and returns
long-form rows ``{"step", "wall_time", "metric", "value"}``. The driver, never a worker, writes each run's rows to
``<out>/runs/<run_id>.csv`` (written to a temporary name, then renamed) as soon as that run finishes, so an
interrupted sweep loses only the runs in flight, and a restarted one skips every saved run.
``run_id`` hashes the study, the job's parameters, the seed and the git commit, so a changed configuration never
reuses a stale run; a run tagged with another commit is reused only when that commit's training files for the job
function are identical to HEAD's (:mod:`ablations.provenance`), so editing a figure or the guide keeps the runs and
editing what a run computes re-runs it. When every job is done the runs are concatenated into
``<out>/metrics.csv`` (or the ``table`` given), and ``<out>/provenance.json`` records, per table, the commits its
runs were trained at.

A run is *saved* when its file is in ``runs/`` or its rows are in one of the study's tables (a ``*.csv`` of
``<out>`` with a ``run_id`` column). Once a table is written it holds its runs, verbatim, and their files are
removed; a run that a rewritten table drops, and no other table holds, goes back to its file (as the tuning stage's
first pass drops the runs at rates past the grid). So ``runs/`` keeps only the runs no table holds, and no run is
ever lost. Both are meant to be committed, so a study that takes several sittings resumes from a fresh clone, and
``make results-full`` on a clone of the published results reuses every run they hold.

Backends:

- ``"local"`` (default): a pool of ``workers`` spawned processes on this machine, ``threads`` torch threads each;
- ``"ray"``: one Ray task per job, requesting ``threads`` CPUs and ``gpus`` GPUs; connects to the cluster at
  ``ray_address`` (e.g. ``"auto"`` or ``"ray://head:10001"``) or starts a local instance with ``workers`` CPUs;
  the ``ablations`` and ``symm_layers`` packages are shipped to the workers (their Python needs torch and escnn);
- ``"serial"``: in this process, one job after the other (debugging, tests).

``fresh_process=True`` runs every job in a new process (local pool: ``max_tasks_per_child=1``; Ray:
``max_calls=1``; serial: a one-process pool), so that a run's resident-memory measurements see no allocation or
lazy import left behind by an earlier run in the same worker. Locally the processes are forked from a forkserver
that imported torch, escnn, the library and the study once (:data:`FORKSERVER_PRELOAD`), so a run costs no
interpreter start; a Ray task pays one (about 6 s with the imports).

:func:`tuned_sweep` adds the learning-rate protocol on top: a tuning stage runs the first ``tune_seeds`` seeds of
every configuration at every learning rate of a grid, picks per configuration the rate with the lowest mean best
validation loss (trying rates past the grid while the pick is at an edge of those tried), then runs all seeds at
that rate (reusing the tuning runs that match). The grid and the choice are columns of ``metrics.csv``
(``lr_grid``, ``lr``) and rows of ``lr_selection.csv``.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import io
import json
import math
import multiprocessing
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .provenance import reusable_commits

BACKENDS = ("local", "ray", "serial")
ROW_KEYS = ("step", "wall_time", "metric", "value")


@dataclass(frozen=True)
class Job:
    """One training run: ``label`` names the configuration (the hue in figures), ``params`` holds its settings."""

    study: str
    label: str
    seed: int
    params: dict = field(default_factory=dict)
    commit: str = "unknown"

    @property
    def run_id(self) -> str:
        text = json.dumps([self.study, self.label, self.seed, self.params, self.commit], sort_keys=True)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.label)
        return f"{safe}__seed{self.seed}__{digest}"


@dataclass(frozen=True)
class PlanStage:
    """One sweep of a dry run (``plan=`` of :func:`run_sweep` and :func:`tuned_sweep`): the table it writes, how
    many runs it needs and how many of those are not saved yet (``todo``; ``jobs`` holds them). ``bound`` marks a
    stage that depends on runs not trained yet: ``todo`` is then an upper bound, and ``jobs`` the configurations
    that may have to run (their rate is not known yet)."""

    table: str
    runs: int
    todo: int
    bound: bool = False
    jobs: tuple = field(default=(), compare=False, repr=False)


#: What results depend on: every tracked file outside ``results/`` except documentation (``*.md``), so committing
#: results as they land, or editing the README or a note, keeps the commit a run is tagged with.
CODE_PATHSPEC = ("--", ".", ":!results", ":!*.md")


def git_commit(repo: Path | None = None) -> str:
    """The newest commit that changed code (anything in :data:`CODE_PATHSPEC`), ``"-dirty"`` appended for
    uncommitted changes to tracked files there.

    Outside a git checkout: ``$SYMM_COMMIT`` when set, else ``"unknown"``.
    """
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        code = ["git", "rev-list", "-1", "HEAD", *CODE_PATHSPEC]
        sha = subprocess.run(code, cwd=cwd, capture_output=True, text=True, check=True)
        status = ["git", "status", "--porcelain", "--untracked-files=no", *CODE_PATHSPEC]
        dirty = subprocess.run(status, cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SYMM_COMMIT", "unknown")  # a copied tree without .git (benchmarks/gpu_run.sh)
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# ----------------------------------------------------------------------------------------------- workers
def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _call(fn: Callable[[Job], list[dict]], job: Job, threads: int) -> list[dict]:
    _set_threads(threads)
    return fn(job)


def _serial(fn, jobs, threads, fresh_process=False, **_) -> Iterator[tuple[Job, list[dict] | BaseException]]:
    if fresh_process:
        yield from _local(fn, jobs, threads, workers=1, fresh_process=True)
        return
    for job in jobs:
        try:
            yield job, _call(fn, job, threads)
        except Exception as error:  # reported by run_sweep once every other job has run
            yield job, error


#: What a fresh process per run is forked from (besides the study's own module): modules that every run imports,
#: some lazily inside its first optimizer step or evaluation, which would otherwise cost each run their import time.
#: The server starts once per Python process, so when one command runs several such studies it holds the first
#: study's module; a later study's module is then imported by each run before it starts (outside its measurements).
FORKSERVER_PRELOAD = ("torch", "torch._dynamo", "escnn.group", "symm_layers")


def _local(fn, jobs, threads, workers, fresh_process=False, **_) -> Iterator[tuple[Job, list | BaseException]]:
    if fresh_process:
        # One new process per run, forked from a server process that imported the modules once and never ran a
        # torch op (so no thread pool or lock to inherit): every run starts from the same state, without paying
        # an interpreter start and the imports (~6 s a run, against ~2 s of training in the quick profiles).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*FORKSERVER_PRELOAD, fn.__module__])
        fresh = {"max_tasks_per_child": 1}
    else:
        context, fresh = multiprocessing.get_context("spawn"), {}  # no inherited torch thread pools or locks
    with futures.ProcessPoolExecutor(workers, mp_context=context, **fresh) as pool:
        pending = {pool.submit(_call, fn, job, threads): job for job in jobs}
        try:
            for done in futures.as_completed(pending):
                error = done.exception()
                yield pending[done], error if error is not None else done.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _ray(fn, jobs, threads, workers, ray_address=None, gpus=0.0, fresh_process=False,
         **_) -> Iterator[tuple[Job, list | BaseException]]:  # fmt: skip
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("backend 'ray' needs the ray package: pip install 'ray==2.60.*'") from error
    import ablations
    import symm_layers

    started_here = not ray.is_initialized()
    if started_here:
        local = {} if ray_address else {"num_cpus": workers}
        ray.init(address=ray_address, runtime_env={"py_modules": [ablations, symm_layers]}, include_dashboard=False,
                 log_to_driver=False, **local)  # fmt: skip
    try:
        fresh = {"max_calls": 1} if fresh_process else {}
        task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0, **fresh)(_call)
        pending = {task.remote(fn, job, threads): job for job in jobs}
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done)
            try:
                yield job, ray.get(done)
            except Exception as error:
                yield job, error
    finally:
        if started_here:
            ray.shutdown()


_BACKENDS = {"local": _local, "ray": _ray, "serial": _serial}


# ----------------------------------------------------------------------------------------------- driver
def _write_run(job: Job, rows: list[dict], runs_dir: Path) -> None:
    frame = pd.DataFrame(rows)
    missing = set(ROW_KEYS) - set(frame.columns)
    if missing:
        raise ValueError(f"job {job.run_id} returned rows without {sorted(missing)}")
    frame.insert(0, "run_id", job.run_id)
    frame.insert(1, "label", job.label)
    frame.insert(2, "seed", job.seed)
    for offset, (name, value) in enumerate(sorted(job.params.items())):
        frame.insert(3 + offset, name, value if not isinstance(value, (list, dict)) else json.dumps(value))
    _write_text(frame, runs_dir / f"{job.run_id}.csv")


def run_sweep(
    jobs: Sequence[Job],
    fn: Callable[[Job], list[dict]],
    out_dir: Path | str,
    *,
    backend: str = "local",
    workers: int = 2,
    threads: int = 1,
    ray_address: str | None = None,
    gpus: float = 0.0,
    progress: bool = True,
    fresh_process: bool = False,
    table: str = "metrics.csv",
    desc: str | None = None,
    plan: list[PlanStage] | None = None,
) -> pd.DataFrame | None:
    """Run every job not finished yet, save each run as it finishes, and return the study's long-form frame
    (also written to ``<out_dir>/<table>``).

    With a list as ``plan`` it is a dry run: it trains and writes nothing, replaces ``table``'s entry of ``plan``
    with a :class:`PlanStage`, and returns the frame the sweep would write, or ``None`` when some runs are missing.

    Raises:
        ValueError: for an unknown backend or duplicate run ids.
        RuntimeError: when some jobs failed, after every other job has run and been saved (re-running the same
            command retries only the failed ones).
    """
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    ids = [job.run_id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError("two jobs share a run id: give every (label, params, seed) combination its own label")
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    tables = _tabled_runs(out_dir)
    holder = {run_id: held for held in tables.values() for run_id in held}
    known = {path.stem for path in runs_dir.glob("*.csv")} | set(holder)
    saved = _saved_runs(jobs, known, reusable_commits(fn))
    todo = [job for job, found in zip(jobs, saved, strict=True) if found is None]
    if plan is not None:
        stage = PlanStage(table, len(jobs), len(todo), jobs=tuple(todo))
        plan[:] = [other for other in plan if other.table != table] + [stage]
        if todo:
            return None
    else:
        runs_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    if todo:
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc or out_dir.name, unit="run",
                   disable=not progress)  # fmt: skip
        results = _BACKENDS[backend](fn, todo, threads, workers=workers, ray_address=ray_address, gpus=gpus,
                                     fresh_process=fresh_process)  # fmt: skip
        with bar:
            for job, outcome in results:
                if isinstance(outcome, BaseException):
                    failures.append(f"{job.run_id}: {type(outcome).__name__}: {outcome}")
                else:
                    _write_run(job, outcome, runs_dir)
                bar.update(1)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(jobs)} runs failed (finished runs are saved under {runs_dir}; "
                           "run the same command again to retry only these):\n" + "\n".join(failures))  # fmt: skip
    used = sorted((found or (job.run_id, job.commit) for job, found in zip(jobs, saved, strict=True)))
    files = {run_id: runs_dir / f"{run_id}.csv" for run_id, _ in used}
    pieces = [_read_text(path) if path.exists() else holder[run_id][run_id] for run_id, path in files.items()]
    if plan is not None:
        return pd.read_csv(io.StringIO(pd.concat(pieces, ignore_index=True).to_csv(index=False)))
    # Every run stays saved at each moment: runs this table drops (and no other holds) go back to files first,
    # then the table is replaced, then the files of the runs it now holds are removed.
    elsewhere = {run_id for name, runs in tables.items() if name != table for run_id in runs}
    for run_id in tables.get(table, {}):
        if run_id not in files and run_id not in elsewhere:
            _write_text(tables[table][run_id], runs_dir / f"{run_id}.csv")
    path = out_dir / table
    _write_text(pd.concat(pieces, ignore_index=True), path)
    _record_provenance(out_dir, table, [commit for _, commit in used])
    for run_file in files.values():
        run_file.unlink(missing_ok=True)
    return pd.read_csv(path)


def _read_text(path: Path) -> pd.DataFrame:
    """A CSV with every cell kept as its text, so that copying runs between files never reformats a number."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _write_text(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


class _HeldRuns(Mapping):
    """The runs one table holds, by run id. A run's rows, with only the columns that run filled, are cut out of the
    table when asked for, so that looking up which runs a large table holds stays cheap."""

    def __init__(self, path: Path):
        frame = self.frame = _read_text(path)
        by_run = frame["run_id"]
        self._columns = frame.columns.to_numpy()
        self._cells = frame.to_numpy(dtype=object)
        self._positions = frame.groupby(by_run, sort=False).indices
        self._filled = (frame != "").groupby(by_run, sort=False).any()

    def __getitem__(self, run_id: str) -> pd.DataFrame:
        filled = self._filled.loc[run_id].to_numpy()
        return pd.DataFrame(self._cells[self._positions[run_id]][:, filled], columns=self._columns[filled])

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


def _tabled_runs(out_dir: Path) -> dict[str, _HeldRuns]:
    """The runs held by each table of ``out_dir`` (a ``*.csv`` with a ``run_id`` column), by table name."""
    return {path.name: _HeldRuns(path) for path in sorted(out_dir.glob("*.csv"))
            if "run_id" in pd.read_csv(path, nrows=0).columns}  # fmt: skip


def _saved_runs(jobs: Sequence[Job], known: set[str], commits: Sequence[str]) -> list[tuple[str, str] | None]:
    """Per job, ``(run_id, commit)`` of a saved run (an id in ``known``) it may reuse, its own commit first, then
    ``commits``; ``None`` when it has to run."""
    found = []
    for job in jobs:
        ids = ((replace(job, commit=c).run_id, c) for c in dict.fromkeys([job.commit, *commits]))
        found.append(next((hit for hit in ids if hit[0] in known), None))
    return found


def _record_provenance(out_dir: Path, table: str, commits: list[str]) -> None:
    """Add ``table``'s entry to ``<out_dir>/provenance.json``: how many of its runs each commit trained."""
    path = out_dir / "provenance.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record[table] = {"trained_at": {c: commits.count(c) for c in sorted(set(commits))}, "runs": len(commits)}
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------- lr protocol
#: Job parameter holding the step budget of :func:`tuned_sweep`'s final stage when it should differ from ``steps``,
#: the budget of its tuning stage: rates are then chosen on the shorter runs, and every seed of the final stage
#: trains for ``final_steps`` (none reuses a tuning run). The runs themselves never see this parameter.
FINAL_STEPS = "final_steps"


def _stage_jobs(jobs: Sequence[Job]) -> tuple[list[Job], list[Job]]:
    """The tuning-stage and final-stage versions of ``jobs`` (see :data:`FINAL_STEPS`)."""
    tuning, final = [], []
    for job in jobs:
        params = {k: v for k, v in job.params.items() if k != FINAL_STEPS}
        tuning.append(Job(job.study, job.label, job.seed, params, job.commit))
        if job.params.get(FINAL_STEPS) is not None:
            params = {**params, "steps": job.params[FINAL_STEPS]}
        final.append(Job(job.study, job.label, job.seed, params, job.commit))
    return tuning, final


def _with_lr(job: Job, lr: float, grid: Sequence[float]) -> Job:
    return Job(job.study, job.label, job.seed, {**job.params, "lr": float(lr), "lr_grid": [float(g) for g in grid]},
               job.commit)  # fmt: skip


#: How far the tuning stage looks past the configured grid: while a configuration's best rate is the smallest or
#: the largest it has tried, it also tries the next rate beyond (:func:`next_rate`), up to this many extra rates per
#: configuration. Only grids of three or more rates are extended: a grid of two has no interior, so its choice is
#: always at an edge (the quick profile's coarse check).
LR_EXTENSIONS = 2


def next_rate(lr: float, up: bool) -> float:
    """The neighbour of ``lr`` in the sequence ..., 1e-3, 3e-3, 1e-2, 3e-2, ... (a factor of 3 from rates off it)."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    mantissa = lr / 10.0**exponent
    if math.isclose(mantissa, 1.0, rel_tol=1e-6):
        step = 3.0 if up else 0.3
    elif math.isclose(mantissa, 3.0, rel_tol=1e-6):
        step = 10.0 / 3.0 if up else 1.0 / 3.0
    else:
        step = 3.0 if up else 1.0 / 3.0
    return float(f"{lr * step:.6g}")


def select_lr(tuning: pd.DataFrame, grid: Sequence[float]) -> tuple[dict[str, float], pd.DataFrame]:
    """Per label, the learning rate with the lowest mean (over seeds) of each run's best validation loss.

    A run's best validation loss is the smallest ``val_loss`` it logged; a run with none (diverged at once) counts as
    infinite. Ties go to the first rate in ``grid``, then to the smaller of the rates outside it. Returns the choice
    and one row per (label, lr), with ``extension`` marking rates outside ``grid``.
    """
    val = tuning[tuning.metric == "val_loss"]
    per_run = val.groupby(["label", "lr", "seed"]).value.min().fillna(float("inf"))
    score = per_run.groupby(["label", "lr"]).agg(["mean", "count"]).reset_index()
    score.columns = ["label", "lr", "mean_best_val_loss", "tune_seeds"]
    order = {float(lr): i for i, lr in enumerate(grid)}
    score["extension"] = [float(lr) not in order for lr in score.lr]
    score["rank"] = [order.get(float(lr), len(order) + lr) for lr in score.lr]
    choice = {}
    for label, rows in score.groupby("label", sort=False):
        rows = rows.sort_values(["mean_best_val_loss", "rank"])
        choice[label] = float(rows.lr.iloc[0])
    score["chosen"] = [choice[label] == float(lr) for label, lr in zip(score.label, score.lr, strict=True)]
    return choice, score.drop(columns="rank")


def tuned_sweep(
    jobs: Sequence[Job], fn: Callable[[Job], list[dict]], out_dir: Path | str, lr_grid: Sequence[float],
    tune_seeds: int, extensions: int = LR_EXTENSIONS, **sweep_options,
) -> pd.DataFrame:  # fmt: skip
    """Choose the learning rate per configuration (label) on validation, then run every seed at that rate.

    ``jobs`` hold every (label, seed); their ``params["lr"]`` is replaced. Stage 1 runs seeds ``< tune_seeds`` at
    every rate of ``lr_grid`` (``tuning.csv``); :func:`select_lr` picks one per label (``lr_selection.csv``). With
    three or more rates, a label whose pick is the smallest or largest rate it has tried tries the next rate beyond
    it (:func:`next_rate`), up to ``extensions`` extra rates, so that a choice at the edge of the grid is not taken for
    the optimum. Stage 2 runs every seed at the chosen rate (``metrics.csv``), reusing the stage-1 runs it contains.
    Every run keeps the configured grid as ``params["lr_grid"]`` (so extending never renames a run). A grid of one
    rate skips stage 1. Both stages resume like :func:`run_sweep`. A job parameter :data:`FINAL_STEPS` gives stage 2
    a longer budget than stage 1's ``steps`` (stage 2 then reuses no stage-1 run).

    ``plan=`` (a list) makes it a dry run, as for :func:`run_sweep`: when the tuning runs are not all saved, the
    rates past the grid and the final stage depend on them, so their entries are upper bounds (``bound=True``).
    """
    if not lr_grid:
        raise ValueError("lr_grid is empty: give at least one learning rate")
    if tune_seeds < 1:
        raise ValueError(f"tune_seeds must be at least 1, got {tune_seeds}")
    out_dir = Path(out_dir)
    plan = sweep_options.get("plan")
    if plan is None:
        out_dir.mkdir(parents=True, exist_ok=True)
    grid = [float(lr) for lr in lr_grid]
    jobs, final = _stage_jobs(jobs)
    if len(grid) == 1:
        choice = {job.label: grid[0] for job in jobs}
        selection = pd.DataFrame({"label": list(choice), "lr": grid[0], "mean_best_val_loss": float("nan"),
                                  "tune_seeds": 0, "extension": False, "chosen": True})  # fmt: skip
    else:
        tried = {job.label: list(grid) for job in jobs}
        stage1 = [_with_lr(job, lr, grid) for job in jobs if job.seed < tune_seeds for lr in grid]
        while True:
            tuning = run_sweep(stage1, fn, out_dir, table="tuning.csv", desc=f"{out_dir.name} (lr tuning)",
                               **sweep_options)  # fmt: skip
            if tuning is None:  # a dry run, with tuning runs to train: what follows depends on them
                _plan_after_tuning(plan, jobs, final, tried, len(grid), tune_seeds, extensions)
                return None
            choice, selection = select_lr(tuning, grid)
            more = []
            for label, rates in tried.items():
                best = choice[label]
                if len(grid) < 3 or len(rates) - len(grid) >= extensions or best not in (min(rates), max(rates)):
                    continue
                rates.append(next_rate(best, up=best == max(rates)))
                more += [_with_lr(job, rates[-1], grid) for job in jobs if job.label == label and job.seed < tune_seeds]
            if not more:
                break
            stage1 += more
    if plan is None:
        selection.to_csv(out_dir / "lr_selection.csv", index=False)
    return run_sweep([_with_lr(job, choice[job.label], grid) for job in final], fn, out_dir, **sweep_options)


def _plan_after_tuning(plan: list[PlanStage], jobs: Sequence[Job], final: Sequence[Job], tried: dict[str, list[float]],
                       grid_size: int, tune_seeds: int, extensions: int) -> None:  # fmt: skip
    """Bounds on the stages that follow an unfinished tuning stage: every label may still try every extension it
    has left, and every final-stage job that cannot reuse a tuning run (a seed past the tuning ones, or any seed
    when the final stage has its own budget) may have to run at the rate it picks."""
    left = {label: extensions - (len(rates) - grid_size) if grid_size >= 3 else 0 for label, rates in tried.items()}
    more = tuple(job for job in jobs if job.seed < tune_seeds for _ in range(left[job.label]))
    if more:
        plan.append(PlanStage("tuning.csv", len(more), len(more), bound=True, jobs=more))
    todo = tuple(f for job, f in zip(jobs, final, strict=True) if job.seed >= tune_seeds or f != job)
    plan.append(PlanStage("metrics.csv", len(final), len(todo), bound=True, jobs=todo))


def run_seconds(out_dir: Path | str) -> dict[tuple[str, str], list[float]]:
    """The training time (largest ``wall_time``) of every run saved in a study's folder, in tables or run files,
    grouped by the run's label and step budget (``steps``, ``""`` without one): what a dry run's time estimate
    rests on. A job's key is ``(job.label, str(job.params.get("steps", "")))``."""
    out_dir = Path(out_dir)
    frames = [held.frame for held in _tabled_runs(out_dir).values()]
    frames += [_read_text(path) for path in sorted((out_dir / "runs").glob("*.csv"))]
    runs = {}  # run id -> (key, seconds): a run held by two tables counts once
    for frame in frames:
        frame = frame.assign(steps=frame["steps"] if "steps" in frame else "",
                             wall_time=pd.to_numeric(frame["wall_time"], errors="coerce"))  # fmt: skip
        per_run = frame.groupby("run_id", sort=False).agg(label=("label", "first"), steps=("steps", "first"),
                                                          seconds=("wall_time", "max"))  # fmt: skip
        runs.update({run_id: ((row.label, row.steps), row.seconds) for run_id, row in per_run.dropna().iterrows()})
    seconds: dict[tuple[str, str], list[float]] = {}
    for key, value in runs.values():
        seconds.setdefault(key, []).append(float(value))
    return seconds


# ----------------------------------------------------------------------------------------------- several studies
@dataclass(frozen=True)
class Track:
    """One study's part in :func:`interleave`.

    ``todo()`` plans the study's next stage without training anything (a dry run of its sweep) and returns the
    jobs to train now, ``[]`` once every run is saved; ``fn`` trains one job and ``runs_dir`` receives its runs;
    ``finish()`` runs once everything is saved (the study's own sweep then only writes its tables and figures);
    ``waits()`` names the studies it reads and that have not finished yet (it starts when that list is empty)."""

    name: str
    todo: Callable[[], list[Job]]
    fn: Callable[[Job], list[dict]]
    runs_dir: Path
    finish: Callable[[], None]
    waits: Callable[[], list[str]] = list


def interleave(tracks: Sequence[Track], *, workers: int = 2, threads: int = 1, progress: bool = True,
               executor: Callable[[], futures.Executor] | None = None) -> None:  # fmt: skip
    """Train several studies in one pool of ``workers`` processes, each study going through its stages on its own.

    A study's next stage is planned and queued when its last job in flight finishes, while the other studies'
    queued jobs keep the workers busy: no stage waits for the slowest run of another stage, and the workers start
    once. Runs are saved as they finish, under the same names as :func:`run_sweep` gives them, so the study's own
    sweep (in ``finish``) finds them all and a restart resumes. ``executor`` makes the pool (default: spawned
    processes, as the ``"local"`` backend). Not for studies that need a fresh process per run.

    Raises:
        RuntimeError: once no other job is left, when some runs failed (their study stops at that stage; running
            again retries them) or a study still waits for another.
    """
    make = executor or (lambda: futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
    waiting, failed, failures = list(tracks), set(), []
    pending: dict[futures.Future, tuple[Track, Job]] = {}
    in_flight = dict.fromkeys((track.name for track in tracks), 0)
    bar = tqdm(total=0, desc="training", unit="run", disable=not progress)
    pool = make()

    def advance(track: Track) -> None:
        jobs = track.todo()
        if any(job.run_id in failed for job in jobs):
            return  # stopped at a failed stage: reported below
        if not jobs:
            track.finish()
            start_ready()
            return
        track.runs_dir.mkdir(parents=True, exist_ok=True)
        for job in jobs:
            pending[pool.submit(_call, track.fn, job, threads)] = (track, job)
        in_flight[track.name] = len(jobs)
        bar.total += len(jobs)
        bar.refresh()
        print(f"{track.name}: {len(jobs)} runs queued", flush=True)

    def start_ready() -> None:
        for track in [track for track in waiting if not track.waits()]:
            if track in waiting:
                waiting.remove(track)
                advance(track)

    try:
        with bar:
            start_ready()
            while pending:
                done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    track, job = pending.pop(future)
                    if (error := future.exception()) is None:
                        _write_run(job, future.result(), track.runs_dir)
                    else:
                        failed.add(job.run_id)
                        failures.append(f"{track.name} {job.run_id}: {type(error).__name__}: {error}")
                    bar.update(1)
                    in_flight[track.name] -= 1
                    if not in_flight[track.name]:
                        advance(track)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    problems = [f"{track.name} waits for {', '.join(track.waits())}" for track in waiting]
    if failures:
        problems.append(f"{len(failures)} runs failed (finished runs are saved; run the same command again to retry "
                        "only these):\n" + "\n".join(failures))  # fmt: skip
    if problems:
        raise RuntimeError("; ".join(problems))
