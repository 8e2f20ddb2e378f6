"""Equivariant vs plain on MuJoCo Ant dynamics: the conditional regressor forecasting the next states.

The flow-matching regressor (``eCondTransformerRegressor``, group D4 by default) sees ``cond_steps`` past tokens
``[state_t, action_t]`` of ``Ant-v5`` in the torso frame and generates the next ``horizon`` states (the future
actions are not given, so it models a distribution). Against its plain twin and the plain twin trained on sequences
mapped by a random group element, over training-set sizes and a width sweep per model: every equivariant embedding
width, the plain (and augmented) widths whose parameter counts are closest to those, the plain ``plain_widths`` and
the equivariant widths matched to them, so that the comparison holds at equal parameters in both directions. Runs
follow the protocol of :class:`~ablations.common.ProtocolConfig` (learning rate per configuration chosen on
validation, training until validation plateaus, best-validation checkpoint). The state representation is monomial
(ankles and hips flip sign), not a permutation one: the regressor's first ``eLinear`` lifts it to
regular-representation copies before any pointwise nonlinearity.

Data come from :mod:`ablations.tasks_ant` (simulated on first use and cached under ``data/ant/``).

    python -m ablations.study_ant [--full] [--train-sizes 128 2048] [--equivariant-widths 32 64] [--group D4]
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import numpy as np
import torch

from .common import (
    ProtocolConfig,
    final_rows,
    main,
    protocol_params,
    regressor,
    seed_jobs,
    sweep_configs,
    train_settings,
)
from .study_equivariance import MODELS
from .sweep import Job
from .tasks import make_splits
from .tasks_ant import AntTask
from .train import FlowMatching, GroupAugmentation, PeakRSS, TrainConfig, fit

STUDY = "ant_forecast"
TASK_FIELDS = ("group", "cond_steps", "horizon", "action_smoothing", "action_scale", "stats_windows")


@dataclass(frozen=True)
class AntConfig(ProtocolConfig):
    """The Ant task's settings, shared by the Ant studies (quick profile)."""

    group: str = "D4"
    cond_steps: int = 4
    horizon: int = 8
    action_smoothing: float = 0.8
    action_scale: float = 0.6
    stats_windows: int = 512
    eval_size: int = 512

    FULL = {**ProtocolConfig.FULL, "eval_size": 2048}


@dataclass(frozen=True)
class Config(AntConfig):
    """Ant forecasting study: eCondTransformerRegressor and its plain twins on Ant-v5 dynamics (quick profile)."""

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (128, 2048)
    equivariant_widths: tuple = (32,)
    plain_widths: tuple = ()
    match_params: bool = True
    num_layers: int = 2
    heads: int = 2
    steps: int = 250
    eval_every: int = 50

    FULL = {**AntConfig.FULL, "train_sizes": (64, 256, 1024, 4096), "steps": 3000, "eval_every": 100,
            "equivariant_widths": (16, 32, 64, 128), "plain_widths": (64,)}  # fmt: skip


def task_of(params: dict, forecast: bool = True) -> AntTask:
    return AntTask(**{k: params[k] for k in TASK_FIELDS}, forecast=forecast)


def task_params(config: AntConfig) -> dict:
    return {k: getattr(config, k) for k in TASK_FIELDS}


def prepare_data(config: AntConfig, train_size: int, forecast: bool = True, seeds=None) -> None:
    """Simulate (or find in the cache) every split the jobs will read (``train_size``: the largest training set;
    ``seeds``: the data seeds, by default those of ``config``), in this process: parallel workers then only load
    files, and smaller training sets are prefixes of the largest."""
    task = task_of(task_params(config), forecast)
    task.statistics()
    sizes = {"train": train_size, "val": config.eval_size, "test": config.eval_size}
    for seed in range(config.seeds) if seeds is None else seeds:
        make_splits(task, sizes, seed)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.cache
def matched_width(task: AntTask, equivariant: bool, embedding_dim: int, num_layers: int, heads: int) -> int:
    """Embedding width of the ``equivariant`` (or plain) regressor whose parameter count is closest to that of
    the other family's regressor at ``embedding_dim``. Widths are multiples of ``step`` (``|G| * heads``: whole
    regular copies per head, or ``heads`` for the plain one); the count grows with the width, so a doubling and
    bisection search finds the two multiples around the target."""
    target = parameter_count(regressor(task, not equivariant, embedding_dim, num_layers, heads))
    step = task.symmetry.group.order() * heads if equivariant else heads

    @functools.cache
    def count(multiple: int) -> int:
        return parameter_count(regressor(task, equivariant, multiple * step, num_layers, heads))

    high = 1
    while count(high) < target:
        high *= 2
    low = high // 2  # count(low) < target <= count(high), or low = 0 when the smallest width already reaches it
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < target else (low, middle)
    best = high if low == 0 or count(high) - target <= target - count(low) else low
    return best * step


def widths(config: Config) -> dict[str, list[int]]:
    """Model -> embedding widths: the equivariant widths and those matched to every plain width; for the plain
    model ``plain_widths`` and the widths matched to every equivariant one; the augmented model runs at every plain
    width, so that each equivariant width has both partners."""
    task = task_of(task_params(config))
    shape = (config.num_layers, config.heads)
    to_plain, to_eq = set(), set()
    if config.match_params:
        to_plain = {matched_width(task, False, w, *shape) for w in config.equivariant_widths}
        to_eq = {matched_width(task, True, w, *shape) for w in config.plain_widths}
    chosen = {"equivariant": set(config.equivariant_widths) | to_eq, "plain": set(config.plain_widths) | to_plain,
              "plain/augmented": set(config.plain_widths) | to_plain}  # fmt: skip
    return {m: sorted(chosen[m]) for m in config.models}


def jobs(config: Config) -> list[Job]:
    prepare_data(config, max(config.train_sizes))
    shared = {**protocol_params(config), **task_params(config), "num_layers": config.num_layers,
              "heads": config.heads}  # fmt: skip
    configs = sweep_configs(widths(config), config.train_sizes,
                            lambda m, w, n: {**shared, "model": m, "embedding_dim": w, "train_size": n})  # fmt: skip
    return seed_jobs(STUDY, config.seeds, configs)


def forecast_equivariance_error(model: torch.nn.Module, task: AntTask, split, count: int = 64) -> float:
    """Largest error of ``f(g X, k, g Z) = g f(X, k, Z)`` over the group, divided by the largest output entry,
    on ``count`` test samples, in the dtype of ``model`` and ``split``."""
    G, x_rep, z_rep = task.group_and_reps
    cond, future = split.inputs[:count], split.targets[:count]
    k = torch.linspace(0.05, 0.95, cond.shape[0], dtype=cond.dtype) * 100.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(future, k, cond)
        worst = 0.0
        for g in G.elements:
            rx = torch.as_tensor(np.asarray(x_rep(g)), dtype=cond.dtype)
            rz = torch.as_tensor(np.asarray(z_rep(g)), dtype=cond.dtype)
            worst = max(worst, (model(future @ rx.mT, k, cond @ rz.mT) - out @ rx.mT).abs().max().item())
    model.train(was_training)
    return worst / max(out.abs().max().item(), 1e-30)


@torch.no_grad()
def forecast_errors(model: torch.nn.Module, split, steps: int = 10, seed: int = 0) -> dict[str, float]:
    """Mean squared error of one forecast sampled by ``steps`` Euler steps of the learned flow (fixed noise),
    against the simulated future: over the first future state (determined by the past and the last action) and
    over all ``horizon`` states (the later ones depend on unseen actions); and, as a reference, the first state's
    error of forecasting no change."""
    was_training = model.training
    model.eval()
    cond, future = split.inputs, split.targets
    x = torch.randn(future.shape, generator=torch.Generator().manual_seed(seed)).to(future)
    for i in range(steps):
        k = torch.full((x.shape[0],), i / steps, dtype=x.dtype, device=x.device)
        x = x + model(x, k * FlowMatching().time_scale, cond) / steps
    model.train(was_training)
    error = (x - future) ** 2
    return {"forecast_mse_first": error[:, 0].mean().item(), "forecast_mse": error.mean().item(),
            "forecast_mse_first_no_change": (future[:, 0] ** 2).mean().item()}  # fmt: skip


def train_forecaster(job: Job, equivariant: bool = True, augment: bool = False, **model_options) -> list[dict]:
    """Build the regressor of ``job`` (width ``embedding_dim``) on the Ant task, train it under the protocol (the
    model ends at its best-validation checkpoint) and return the rows with the final measurements."""
    p = job.params
    task = task_of(p)
    sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
    splits = {name: split.to(p["device"]) for name, split in make_splits(task, sizes, job.seed).items()}
    G, x_rep, z_rep = task.group_and_reps
    augmentation = GroupAugmentation(G.elements, z_rep, x_rep) if augment else None  # inputs Z, targets X
    torch.manual_seed(job.seed)
    with PeakRSS() as built:
        model = regressor(task, equivariant, p["embedding_dim"], p["num_layers"], p["heads"], device=p["device"],
                          **model_options)  # fmt: skip
    rows = fit(model, FlowMatching(), splits, TrainConfig(**train_settings(p)), job.seed, augment=augmentation)
    state_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    exact = forecast_equivariance_error(copy.deepcopy(model).double(), task, splits["test"].double())
    rows += final_rows(rows, construction_rss_mib=built.peak_mib, width=p["embedding_dim"],
                       param_buffer_mib=state_bytes / 2**20, equivariance_error_f64=exact,
                       equivariance_error=forecast_equivariance_error(model, task, splits["test"]),
                       **forecast_errors(model, splits["test"]))  # fmt: skip
    return rows


def run(job: Job) -> list[dict]:
    equivariant, augmented = MODELS[job.params["model"]]
    return train_forecaster(job, equivariant, augmented)


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
