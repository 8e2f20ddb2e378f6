"""What the study scripts share: the command line, the saved ``config.json``, model builders and measurements.

Every study is a flat script with a ``Config`` dataclass (quick defaults, ``FULL`` overrides for ``--full``), a
``jobs(config)`` list and a module-level ``run(job)``; :func:`main` turns those into a command::

    python -m ablations.study_basis [--full] [--seeds N] [--backend local|ray|serial] [--workers N]
        [--ray-address ADDR] [--gpus G] [--out DIR] [--plot-only] [--<config field> VALUE ...]

It runs the sweep (resuming), writes ``metrics.csv`` and ``config.json`` under ``results/<study>/`` (or
``--out``) and then the figures and the table from the saved CSV (``--plot-only`` does only that).

The protocol (:class:`ProtocolConfig`): a study whose ``Config`` derives from it gets the learning rate chosen per
configuration on validation from ``lr_grid`` (:func:`ablations.sweep.tuned_sweep`), training until validation
plateaus (``steps`` a cap), the best-validation checkpoint, and ``seeds`` seeds (>= 5 with ``--full``). A study
script needs only: ``Config(ProtocolConfig)`` with its axes, ``jobs(config)`` built with :func:`protocol_params`
and :func:`seed_jobs`, and ``run(job)`` training with ``TrainConfig(**train_settings(job.params))``. A ``Config``
with the class attribute ``MEMORY_IN_FRESH_PROCESS = True`` runs every job in a new process, so that its
resident-memory columns measure that run alone.
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
from .sweep import BACKENDS, Job, git_commit, run_sweep, tuned_sweep
from .tasks import RingOscillators, Split

#: The published output root (``python -m ablations.run_all --results DIR`` writes elsewhere, e.g. ``results-quick/``).
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
    "ant_norm": "ablations.study_ant_norm",
    "ant_basis": "ablations.study_ant_basis",
    "convergence": "ablations.study_convergence",  # last: it retrains configurations the studies above chose
}


# ----------------------------------------------------------------------------------------------- protocol
@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """The training protocol shared by the studies (quick profile; ``FULL`` holds the ``--full`` overrides).

    ``lr_grid``: learning rates tried per configuration on the first ``tune_seeds`` seeds; the one with the lowest
    mean best validation loss then runs with all ``seeds``. A run trains at a constant rate until ``patience``
    evaluations (every ``eval_every`` steps) bring no relative improvement of ``min_delta`` of its validation loss,
    decays its rate over a quarter more steps and stops (:class:`ablations.train.PlateauThenAnneal`); ``steps`` is
    only a cap, which the tables flag when a run reached it without a plateau. It reports the test loss of its
    best-validation checkpoint.
    """

    seeds: int = 3
    tune_seeds: int = 1
    lr_grid: tuple = (3e-3, 1e-2)
    steps: int = 400
    eval_every: int = 25
    patience: int = 4
    min_delta: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    eval_size: int = 256
    device: str = "cpu"

    FULL = {"seeds": 5, "tune_seeds": 2, "lr_grid": (1e-3, 3e-3, 1e-2), "patience": 10}


#: Job parameters that :func:`train_settings` turns into a :class:`~ablations.train.TrainConfig`.
TRAIN_FIELDS = ("steps", "batch_size", "lr", "weight_decay", "eval_every", "eval_size", "patience", "min_delta")


def protocol_params(config: ProtocolConfig) -> dict:
    """The job parameters every run of a protocol study carries (``lr`` is set per job by the tuning stage)."""
    skip = {"seeds", "tune_seeds", "lr_grid"}
    params = {f.name: getattr(config, f.name) for f in dataclasses.fields(ProtocolConfig) if f.name not in skip}
    return {**params, "lr": float(config.lr_grid[0])}


def train_settings(params: dict) -> dict:
    """``TrainConfig`` keyword arguments from a job's parameters."""
    return {name: params[name] for name in TRAIN_FIELDS if name in params}


# ----------------------------------------------------------------------------------------------- models
def zero_output_head(model: torch.nn.Module) -> torch.nn.Module:
    """Zero the weights and bias of ``model.head``, so that the untrained model predicts zero everywhere.

    Why: the equivariant regressor's head is an ``eLinear`` drawn ``xavier_uniform``: each output coordinate of a
    unit-RMS token gets variance ``2 fan_in / (fan_in + fan_out)`` (1.6 for 64 -> 16), which adds to the loss of
    predicting zero (3.6 vs 2.1 on the ring oscillators); the plain twin's ``nn.Linear`` adds ``1/3``. A zero head
    starts both at the zero predictor's loss (the common choice for diffusion and flow-matching heads), and keeps
    the equivariant model equivariant (zero is an equivariant map); the first optimizer step makes it non-zero.
    """
    with torch.no_grad():
        for param in model.head.parameters():
            param.zero_()
    return model


def regressor(task: RingOscillators, equivariant: bool, embedding_dim: int, num_layers: int, heads: int,
              zero_head: bool = True, **options) -> torch.nn.Module:  # fmt: skip
    """The conditional regressor for ``task`` (no dropout: runs are deterministic given the seed), its output head
    zeroed unless ``zero_head=False`` (see :func:`zero_output_head`)."""
    G, x_rep, z_rep = task.group_and_reps
    shape = dict(in_horizon=task.horizon, cond_horizon=task.cond_steps, num_layers=num_layers,
                 num_attention_heads=heads, embedding_dim=embedding_dim, p_drop_emb=0.0, p_drop_attn=0.0,
                 num_cond_layers=1)  # fmt: skip
    if equivariant:
        model = eCondTransformerRegressor(x_rep, z_rep, None, **shape, **options)
    else:
        for equivariant_only in ("basis_expansion_scheme", "weight_cache", "norm_affine", "init_scheme", "layout"):
            options.pop(equivariant_only, None)
        model = CondTransformerRegressor(x_rep.size, z_rep.size, x_rep.size, **shape, **options)
    return zero_output_head(model) if zero_head else model


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


def final_rows(rows: list[dict], **metrics: float) -> list[dict]:
    """Rows for scalar ``metrics``, at the last step and wall time of ``rows`` (a run's rows so far)."""
    step, wall = rows[-1]["step"], rows[-1]["wall_time"]
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
    parser = argparse.ArgumentParser(
        prog=f"python -m {STUDY_MODULES.get(study, study)}", description=config_cls.__doc__
    )
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
    from . import report

    args = _parser(study, config_cls).parse_args(argv)
    out = args.out or RESULTS / study
    fresh = bool(getattr(config_cls, "MEMORY_IN_FRESH_PROCESS", False))
    if not args.plot_only:
        config = make_config(config_cls, args)
        if args.gpus > 0 and getattr(config, "device", "cpu") == "cpu":
            raise SystemExit("--gpus reserves GPUs for jobs that would train on the CPU: add --device cuda")
        job_list = jobs(config)
        meta = {"study": study, "profile": "full" if args.full else "quick", "config": dataclasses.asdict(config),
                "backend": args.backend, "workers": args.workers, "threads_per_job": args.threads,
                "runs": len(job_list), "fresh_process_per_run": fresh, "command": _command(study, argv),
                **environment()}  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        options = dict(backend=args.backend, workers=args.workers, threads=args.threads, ray_address=args.ray_address,
                       gpus=args.gpus, progress=not args.no_progress, fresh_process=fresh)  # fmt: skip
        if isinstance(config, ProtocolConfig):
            tuned_sweep(job_list, run, out, config.lr_grid, config.tune_seeds, **options)
        else:
            run_sweep(job_list, run, out, **options)
        (out / "config.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    report.render(study, out)
    return out


def _command(study: str, argv: list[str] | None) -> str:
    """The command line that produced a study's data, with paths relative to the repository."""
    given = sys.argv[1:] if argv is None else list(argv)
    return " ".join([f"python -m {STUDY_MODULES.get(study, study)}", *(display_path(a) if a.startswith("/") else a
                                                                        for a in given)])  # fmt: skip


def sweep_configs(widths: dict[str, list[int]], train_sizes, params) -> dict[str, dict]:
    """``{"model/w=W@n=N": params(model, W, N)}`` for every model, each of its widths and every training size."""
    return {
        f"{model}/w={width}@n={n}": params(model, width, n)
        for model, model_widths in widths.items()
        for width in model_widths
        for n in train_sizes
    }


def seed_jobs(study: str, seeds: int, configs: dict[str, dict]) -> list[Job]:
    """One job per (label, seed), every job tagged with the current commit."""
    commit = git_commit()
    return [Job(study, label, seed, params, commit) for label, params in configs.items() for seed in range(seeds)]


# ----------------------------------------------------------------------------------------------- the sequence task
@dataclasses.dataclass(frozen=True)
class SequenceConfig(ProtocolConfig):
    """Settings shared by the studies that train the regressor on the ring-oscillator task (quick profile).

    ``FULL`` holds the overrides of ``--full``; a study's own ``Config`` adds its axis (strategies, modes, ...).
    """

    steps: int = 150
    sites: int = 8
    train_size: int = 2048
    embedding_dim: int = 64
    num_layers: int = 2
    heads: int = 2

    FULL = {**ProtocolConfig.FULL, "steps": 3000, "train_size": 8192, "eval_size": 1024, "eval_every": 100}


def sequence_params(config: SequenceConfig, **extra) -> dict:
    """The job parameters of a sequence-task study: the shared settings of ``config`` plus ``extra``."""
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(SequenceConfig)
              if f.name not in {f.name for f in dataclasses.fields(ProtocolConfig)}}  # fmt: skip
    return {**protocol_params(config), **shared, **extra}


def train_sequence_model(job: Job, equivariant: bool = True, on_eval_factory: Callable | None = None, *,
                         embedding_dim: int | None = None, augment: Callable | None = None,
                         **model_options):  # fmt: skip
    """Build the regressor for ``job`` on the ring-oscillator task, train it, and return ``(model, rows)``.

    ``embedding_dim`` overrides the job's (plain twins at equal parameter count); ``augment`` is passed to
    :func:`~ablations.train.fit`.

    Logs, besides :func:`~ablations.train.fit`'s rows (the model is left at its best-validation checkpoint), the
    resident-memory growth of the construction, the bytes of parameters and buffers, the embedding width and the
    trained model's equivariance error.
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
    on_eval = on_eval_factory(model, splits) if on_eval_factory else None
    rows = fit(model, FlowMatching(), splits, TrainConfig(**train_settings(p)), job.seed, on_eval=on_eval,
               augment=augment)  # fmt: skip
    state_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    exact = regressor_equivariance_error(copy.deepcopy(model).double(), task, splits["test"].double())
    rows += final_rows(rows, construction_rss_mib=built.peak_mib, param_buffer_mib=state_bytes / 2**20,
                       equivariance_error_f64=exact, width=width,
                       equivariance_error=regressor_equivariance_error(model, task, splits["test"]))  # fmt: skip
    return model, rows
