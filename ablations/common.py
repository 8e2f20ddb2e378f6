"""What the study scripts share: the command line, the saved ``config.json``, model builders and measurements.

Every study is a flat script with a ``Config`` dataclass (quick defaults, ``FULL`` overrides for ``--full``), a
``jobs(config)`` list and a module-level ``run(job)``; :func:`main` turns those into a command::

    python -m ablations.study_basis [--full] [--seeds N] [--backend local|ray|serial] [--workers N]
        [--ray-address ADDR] [--gpus G] [--out DIR] [--plot-only] [--<config field> VALUE ...]

It runs the sweep (resuming), writes ``metrics.csv`` and ``config.json`` under ``results/<study>/`` and then
the figures and the table from the saved CSV (``--plot-only`` does only that).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from symm_layers import eMLP
from symm_layers.mlp import MLP
from symm_layers.models import CondTransformerRegressor, eCondTransformerRegressor
from symm_layers.testing import equivariance_error, group_elements

from .frames import display_path
from .sweep import BACKENDS, Job, git_commit, run_sweep
from .tasks import RingOscillators, Split

RESULTS = Path(__file__).resolve().parent.parent / "results"
#: study name (its folder under results/) -> the module that runs it
STUDY_MODULES = {
    "basis_expansion": "ablations.study_basis",
    "weight_cache": "ablations.study_cache",
    "normalization": "ablations.study_norm",
    "equivariant_vs_plain": "ablations.study_equivariance",
    "equivariant_vs_plain_sequence": "ablations.study_equivariance_sequence",
    "ant_forecast": "ablations.study_ant",
    "ant_dynamics": "ablations.study_ant_dynamics",
}


# ----------------------------------------------------------------------------------------------- models
def regressor(task: RingOscillators, equivariant: bool, embedding_dim: int, num_layers: int, heads: int,
              **options) -> torch.nn.Module:  # fmt: skip
    """The conditional regressor for ``task`` (no dropout: runs are deterministic given the seed)."""
    G, x_rep, z_rep = task.group_and_reps
    shape = dict(in_horizon=task.horizon, cond_horizon=task.cond_steps, num_layers=num_layers,
                 num_attention_heads=heads, embedding_dim=embedding_dim, p_drop_emb=0.0, p_drop_attn=0.0,
                 num_cond_layers=1)  # fmt: skip
    if equivariant:
        return eCondTransformerRegressor(x_rep, z_rep, None, **shape, **options)
    for equivariant_only in ("basis_expansion_scheme", "weight_cache", "norm_affine"):
        options.pop(equivariant_only, None)
    return CondTransformerRegressor(x_rep.size, z_rep.size, x_rep.size, **shape, **options)


def regressor_equivariance_error(model: torch.nn.Module, task: RingOscillators, split: Split, count: int = 64) -> float:
    """Largest relative error of ``f(gX, k, gZ) = g f(X, k, Z)`` over the group, on ``count`` test samples, in the
    dtype of ``model`` and ``split``."""
    G, x_rep, _ = task.group_and_reps
    cond, future = split.inputs[:count], split.targets[:count]
    k = torch.linspace(0.05, 0.95, cond.shape[0]) * 100.0
    steps = cond.shape[1]

    def joint(tokens: torch.Tensor) -> torch.Tensor:  # [Z tokens; X tokens] -> model output on the X tokens
        return model(tokens[:, steps:], k, tokens[:, :steps])

    was_training = model.training
    model.eval()
    error = equivariance_error(joint, x_rep, x_rep, torch.cat([cond, future], dim=1), elements=group_elements(G))
    model.train(was_training)
    return error.max_rel


def mlp(in_rep, out_rep, equivariant: bool, hidden: list[int], device: str = "cpu") -> torch.nn.Module:
    if equivariant:
        return eMLP(in_rep, out_rep, hidden, activation="gelu", device=device)
    return MLP(in_rep.size, out_rep.size, hidden, activation="gelu", device=device)


def mlp_equivariance_error(model: torch.nn.Module, in_rep, out_rep, split: Split, count: int = 256) -> float:
    """Largest relative equivariance error over the group, on ``count`` samples, in the dtype of model and split."""
    was_training = model.training
    model.eval()
    error = equivariance_error(model, in_rep, out_rep, split.inputs[:count], elements=group_elements(in_rep.group))
    model.train(was_training)
    return error.max_rel


def final_rows(step: int, wall: float, **metrics: float) -> list[dict]:
    return [{"step": step, "wall_time": wall, "metric": m, "value": float(v)} for m, v in metrics.items()]


# ----------------------------------------------------------------------------------------------- provenance
def environment() -> dict:
    """Versions, commit and device of this process, saved next to every study's data."""
    import escnn
    import pandas

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "escnn": getattr(escnn, "__version__", "unknown"),
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ----------------------------------------------------------------------------------------------- command line
def _parser(study: str, config_cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m ablations.{study}", description=config_cls.__doc__)
    parser.add_argument("--full", action="store_true", help="publication-size profile (Config.FULL overrides)")
    parser.add_argument("--backend", choices=BACKENDS, default="local")
    parser.add_argument("--workers", type=int, default=2, help="parallel jobs (local pool, or a local Ray instance)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and Ray CPUs) per job")
    parser.add_argument("--ray-address", default=None, help="existing Ray cluster, e.g. 'auto' or 'ray://host:10001'")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs requested per Ray job")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default results/{study})")
    parser.add_argument("--plot-only", action="store_true", help="redraw figures and table from the saved CSV")
    parser.add_argument("--no-progress", action="store_true")
    for field in dataclasses.fields(config_cls):
        kind = type(field.default) if field.default is not dataclasses.MISSING else str
        if kind in (tuple, list):
            parser.add_argument(f"--{field.name.replace('_', '-')}", nargs="+", default=None,
                                type=type(field.default[0]) if field.default else str)  # fmt: skip
        else:
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=None)
    return parser


def make_config(config_cls, args: argparse.Namespace):
    config = config_cls(**getattr(config_cls, "FULL", {})) if args.full else config_cls()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)}
    changes = {name: value for name, value in given.items() if value is not None}
    changes = {k: tuple(v) if isinstance(getattr(config, k), tuple) else v for k, v in changes.items()}
    return dataclasses.replace(config, **changes)


def main(study: str, config_cls, jobs: Callable, run: Callable, argv: list[str] | None = None) -> Path:
    """Command-line entry point of a study script; returns the output folder."""
    from . import plot

    args = _parser(study, config_cls).parse_args(argv)
    out = args.out or RESULTS / study
    if not args.plot_only:
        config = make_config(config_cls, args)
        if args.gpus > 0 and getattr(config, "device", "cpu") == "cpu":
            raise SystemExit("--gpus reserves GPUs for jobs that would train on the CPU: add --device cuda")
        job_list = jobs(config)
        meta = {"study": study, "profile": "full" if args.full else "quick", "config": dataclasses.asdict(config),
                "backend": args.backend, "workers": args.workers, "threads_per_job": args.threads,
                "runs": len(job_list), "command": _command(study, argv), **environment()}  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        run_sweep(job_list, run, out, backend=args.backend, workers=args.workers, threads=args.threads,
                  ray_address=args.ray_address, gpus=args.gpus, progress=not args.no_progress)  # fmt: skip
        (out / "config.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    plot.render(study, out)
    return out


def _command(study: str, argv: list[str] | None) -> str:
    """The command line that produced a study's data, with paths relative to the repository."""
    given = sys.argv[1:] if argv is None else list(argv)
    return " ".join([f"python -m {STUDY_MODULES.get(study, study)}", *(display_path(a) if a.startswith("/") else a
                                                                        for a in given)])  # fmt: skip


def seed_jobs(study: str, seeds: int, configs: dict[str, dict]) -> list[Job]:
    """One job per (label, seed), every job tagged with the current commit."""
    commit = git_commit()
    return [Job(study, label, seed, params, commit) for label, params in configs.items() for seed in range(seeds)]


# ----------------------------------------------------------------------------------------------- the sequence task
@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """Settings shared by the studies that train the regressor on the ring-oscillator task (quick profile).

    ``FULL`` holds the overrides of ``--full``; a study's own ``Config`` adds its axis (strategies, modes, ...).
    """

    seeds: int = 3
    sites: int = 8
    train_size: int = 2048
    eval_size: int = 256
    steps: int = 200
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 25
    embedding_dim: int = 64
    num_layers: int = 2
    heads: int = 2
    device: str = "cpu"

    FULL = {"steps": 2000, "train_size": 8192, "eval_size": 1024, "eval_every": 100, "seeds": 5}


def sequence_params(config: SequenceConfig, **extra) -> dict:
    """The job parameters of a sequence-task study: the shared settings of ``config`` plus ``extra``."""
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(SequenceConfig) if f.name != "seeds"}
    return {**shared, **extra}


def train_sequence_model(job: Job, equivariant: bool = True, on_eval_factory: Callable | None = None, *,
                         embedding_dim: int | None = None, augment: Callable | None = None,
                         **model_options):  # fmt: skip
    """Build the regressor for ``job`` on the ring-oscillator task, train it, and return ``(model, rows)``.

    ``embedding_dim`` overrides the job's (plain twins at equal parameter count); ``augment`` is passed to
    :func:`~ablations.train.fit`.

    Logs, besides :func:`~ablations.train.fit`'s rows, the resident-memory growth of the construction, the bytes
    of parameters and buffers, and the trained model's equivariance error.
    """
    from .tasks import make_splits
    from .train import FlowMatching, PeakRSS, TrainConfig, fit

    p = job.params
    task = RingOscillators(sites=p["sites"])
    sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
    splits = {name: split.to(p["device"]) for name, split in make_splits(task, sizes, job.seed).items()}
    torch.manual_seed(job.seed)
    with PeakRSS() as built:
        width = embedding_dim or p["embedding_dim"]
        model = regressor(task, equivariant, width, p["num_layers"], p["heads"], device=p["device"], **model_options)
    train = TrainConfig(p["steps"], p["batch_size"], p["lr"], p["weight_decay"], p["eval_every"], p["eval_size"])
    on_eval = on_eval_factory(model, splits) if on_eval_factory else None
    rows = fit(model, FlowMatching(), splits, train, job.seed, on_eval=on_eval, augment=augment)
    state_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    exact = regressor_equivariance_error(copy.deepcopy(model).double(), task, splits["test"].double())
    rows += final_rows(p["steps"], rows[-1]["wall_time"], construction_rss_mib=built.peak_mib,
                       param_buffer_mib=state_bytes / 2**20, equivariance_error_f64=exact,
                       equivariance_error=regressor_equivariance_error(model, task, splits["test"]))  # fmt: skip
    return model, rows
