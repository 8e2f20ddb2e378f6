"""The converged check: the configurations behind each accuracy recommendation, retrained until validation plateaus.

The grid studies cap training (3000 steps for the transformer regressors) and most of their transformer runs reach
that cap still improving, so their losses are upper bounds. This study takes, from each source study's saved data,
only the configurations its recommendations compare (:func:`ablations.summary.convergence_comparisons`: the best
norm configuration per depth, its runner-up and its affine twin; the equivariant model at the smallest and largest
width of the largest training set and its plain and augmented partners at equal parameters) and trains them again
with the same settings and chosen learning rate, but ``cap_factor`` times the step cap, a longer ``patience`` and
fresh seeds (``first_seed`` on: new data and initialisations, since the norm configurations were picked on the
grid's seeds, and a replication on those would favour the pick). The table reports, per comparison, the paired
difference at the grid's budget and trained to plateau, and whether the verdict holds.

It reads the source studies' ``metrics.csv`` and ``config.json`` under ``results`` (``run_all`` passes its
``--results``), so it runs after them.

    python -m ablations.study_convergence [--full] [--results results] [--sources normalization ...]
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import study_ant, study_ant_norm, study_equivariance_sequence, study_norm
from .common import RESULTS, main
from .provenance import reusable_commits
from .summary import CONVERGENCE, CONVERGENCE_SOURCES, convergence_comparisons, convergence_label, runs
from .sweep import FINAL_STEPS, Job, git_commit

STUDY = CONVERGENCE
#: source study -> its module (the job function and ``Config``)
SOURCES = {"normalization": study_norm, "ant_norm": study_ant_norm,
           "equivariant_vs_plain_sequence": study_equivariance_sequence, "ant_forecast": study_ant}  # fmt: skip
#: Sources whose data are simulated and cached, which the driver does once before the workers read them.
SIMULATED = ("ant_norm", "ant_forecast")


@dataclass(frozen=True)
class Config:
    """Converged check: each recommendation's configurations at ``cap_factor`` times the grid's step cap."""

    results: str = "results"
    sources: tuple = ("normalization", "equivariant_vs_plain_sequence")
    seeds: int = 3  # quick: the fewest that give paired verdicts (MIN_SEEDS); the full profile has 5
    first_seed: int = 100
    cap_factor: int = 2
    patience: int = 8
    ends: tuple = ("largest",)
    device: str = "cpu"

    FULL = {"sources": CONVERGENCE_SOURCES, "seeds": 5, "cap_factor": 10, "patience": 20,
            "ends": ("smallest", "largest")}  # fmt: skip


def _root(config: Config) -> Path:
    root = Path(config.results)
    return root if root.is_absolute() else RESULTS.parent / root


def source_config(source: str, folder: Path):
    """The source study's ``Config`` exactly as its saved data were produced (from its ``config.json``)."""
    cls = SOURCES[source].Config
    saved = json.loads((folder / "config.json").read_text())["config"]
    kinds = {f.name: f.default for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(kinds.get(k), tuple) else v for k, v in saved.items() if k in kinds})


def waits_for(config: Config) -> list[str]:
    """The source studies whose data are not saved yet (each writes ``metrics.csv`` once all its runs are done) or
    are stale (:func:`_stale`)."""
    unknown = sorted(set(config.sources) - set(SOURCES))
    if unknown:
        raise SystemExit(f"{STUDY}: unknown source studies {unknown}; choose from {sorted(SOURCES)}")
    root = _root(config)
    saved = {s: all((root / s / name).exists() for name in ("metrics.csv", "config.json")) for s in config.sources}
    return [s for s in config.sources if not saved[s] or _stale(s, root / s)]


def _stale(source: str, folder: Path) -> bool:
    """Whether some of ``source``'s saved runs were trained with training files other than this checkout's (the
    sweep would retrain them, and may choose other rates or configurations)."""
    path = folder / "provenance.json"
    trained = json.loads(path.read_text()).get("metrics.csv", {}).get("trained_at", {}) if path.exists() else {}
    return bool(set(trained) - {*reusable_commits(SOURCES[source].run), git_commit()})


def jobs(config: Config) -> list[Job]:
    if missing := waits_for(config):
        raise SystemExit(f"{STUDY} retrains configurations of {', '.join(missing)}, which have no saved data under "
                         f"{config.results}/ trained with this checkout's training files: run `python -m "
                         f"ablations.run_all --only {' '.join(missing)} --results {config.results}` first (with "
                         "--full for the full profile)")  # fmt: skip
    configs = {}
    for source in config.sources:
        folder = _root(config) / source
        frame = runs(pd.read_csv(folder / "metrics.csv"))
        chosen = {label for _, a, b in convergence_comparisons(source, frame, config.ends) for label in (a, b)}
        rates = frame.groupby("label").lr.first()
        grid = {job.label: job.params for job in SOURCES[source].jobs(source_config(source, folder))}
        if source in SIMULATED and chosen.issubset(grid):
            largest = max(int(grid[label]["train_size"]) for label in chosen)
            study_ant.prepare_data(source_config(source, folder), largest, seeds=seeds(config))
        for label in sorted(chosen):
            if label not in grid:
                raise SystemExit(f"{STUDY}: `{source}` has saved runs of {label!r}, which its configuration no "
                                 f"longer produces; re-run `{source}` first")  # fmt: skip
            params = {k: v for k, v in grid[label].items() if k != FINAL_STEPS}  # the cap of its final runs:
            cap = int(grid[label].get(FINAL_STEPS) or params["steps"])
            configs[convergence_label(source, label)] = {
                **params, "source": source, "lr": float(rates[label]), "patience": config.patience,
                "device": config.device, "steps": cap * config.cap_factor}  # fmt: skip
    commit = git_commit()
    return [Job(STUDY, label, seed, params, commit) for label, params in configs.items() for seed in seeds(config)]


def seeds(config: Config) -> range:
    """The check's seeds: fresh ones, never those of the grid (whose data chose the configurations)."""
    return range(config.first_seed, config.first_seed + config.seeds)


def run(job: Job) -> list[dict]:
    return SOURCES[job.params["source"]].run(job)


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
