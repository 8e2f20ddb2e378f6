"""Equivariant vs plain on MuJoCo Ant dynamics: an eMLP predicting the next state from the state and action.

One step of ``Ant-v5`` (50 ms) in the torso frame: input ``[state_t, action_t]`` (34 numbers, symmetric
normalisation), target the scaled change ``state_{t+1} - state_t`` (26). The eMLP (group D4 by default) against
the plain MLP and the plain MLP with data augmentation, over training-set sizes and a width sweep per model (every
equivariant hidden width, the plain widths matched to their parameter counts, ``plain_widths`` and the equivariant
widths matched to those: equal parameters in both directions), under the protocol of
:class:`~ablations.common.ProtocolConfig`. The input representation is monomial, not a permutation one: the eMLP's
first ``eLinear`` maps it to regular-representation copies and only those meet the pointwise activation. The
windows are those of :mod:`ablations.study_ant` (one sample per window: its last conditioning step), from the same
cache.

    python -m ablations.study_ant_dynamics [--full] [--train-sizes 64 2048] [--equivariant-widths 64 256]
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import torch

from .common import (
    final_rows,
    main,
    mlp,
    mlp_equivariance_error,
    protocol_params,
    seed_jobs,
    sweep_configs,
    train_settings,
)
from .study_ant import AntConfig, parameter_count, prepare_data, task_of, task_params
from .study_equivariance import MODELS, equal_params_width
from .sweep import Job
from .tasks import make_splits
from .train import GroupAugmentation, PeakRSS, Regression, TrainConfig, fit

STUDY = "ant_dynamics"


@dataclass(frozen=True)
class Config(AntConfig):
    """Ant one-step dynamics study: eMLP and its plain twins on Ant-v5 transitions (quick profile)."""

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (64, 2048)  # quick: the two ends (the full profile has the curve between them)
    equivariant_widths: tuple = (64, 256)
    plain_widths: tuple = ()
    match_params: bool = True
    layers: int = 2
    steps: int = 800
    batch_size: int = 64
    eval_every: int = 50
    patience: int = 5

    FULL = {**AntConfig.FULL, "train_sizes": (64, 256, 1024, 4096), "steps": 10000, "eval_every": 200,
            "equivariant_widths": (32, 64, 128, 256, 512), "plain_widths": (64, 256),
            "lr_grid": (1e-3, 3e-3, 1e-2, 3e-2)}  # fmt: skip


@functools.cache
def _reps(group: str):
    task = task_of({**task_params(AntConfig()), "group": group}, forecast=False)
    _, out_rep, in_rep = task.group_and_reps
    return in_rep, out_rep


@functools.cache
def equivariant_params(group: str, width: int, layers: int) -> int:
    in_rep, out_rep = _reps(group)
    return parameter_count(mlp(in_rep, out_rep, True, [width] * layers))


def equivariant_width(group: str, target: int, layers: int) -> int:
    """Hidden width (a multiple of ``|G|``) of the eMLP whose parameter count is closest to ``target``."""
    order = _reps(group)[0].group.order()

    def count(multiple: int) -> int:
        return equivariant_params(group, multiple * order, layers)

    # the count grows about quadratically in the width: start from that guess and walk to the closest
    multiple = max(1, round(math.sqrt(target / count(1))))
    while multiple > 1 and count(multiple) > target:
        multiple -= 1
    while count(multiple + 1) <= target:
        multiple += 1
    below, above = count(multiple), count(multiple + 1)
    return order * (multiple if target - below <= above - target else multiple + 1)


def widths(config: Config) -> dict[str, list[int]]:
    """Model -> hidden widths: the equivariant widths and those matched to every plain width; for the plain model
    ``plain_widths`` and the widths matched to every equivariant one; the augmented model runs at every plain
    width, so that each equivariant width has both partners."""
    in_rep, out_rep = _reps(config.group)
    to_plain, to_eq = set(), set()
    if config.match_params:
        to_plain = {equal_params_width(equivariant_params(config.group, w, config.layers), in_rep.size, out_rep.size,
                                       config.layers) for w in config.equivariant_widths}  # fmt: skip
        plain = [parameter_count(mlp(in_rep, out_rep, False, [w] * config.layers)) for w in config.plain_widths]
        to_eq = {equivariant_width(config.group, count, config.layers) for count in plain}
    chosen = {"equivariant": set(config.equivariant_widths) | to_eq, "plain": set(config.plain_widths) | to_plain,
              "plain/augmented": set(config.plain_widths) | to_plain}  # fmt: skip
    return {m: sorted(chosen[m]) for m in config.models}


def jobs(config: Config) -> list[Job]:
    prepare_data(config, max(config.train_sizes), forecast=False)
    shared = {**protocol_params(config), **task_params(config), "layers": config.layers}
    configs = sweep_configs(widths(config), config.train_sizes,
                            lambda m, w, n: {**shared, "model": m, "hidden": w, "train_size": n})  # fmt: skip
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    p = job.params
    task = task_of(p, forecast=False)
    G, out_rep, in_rep = task.group_and_reps
    equivariant, augmented = MODELS[p["model"]]
    sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
    splits = {name: split.to(p["device"]) for name, split in make_splits(task, sizes, job.seed).items()}
    torch.manual_seed(job.seed)
    with PeakRSS() as built:
        model = mlp(in_rep, out_rep, equivariant, [p["hidden"]] * p["layers"], p["device"])
    augment = GroupAugmentation(G.elements, in_rep, out_rep) if augmented else None
    rows = fit(model, Regression(), splits, TrainConfig(**train_settings(p)), job.seed, augment=augment)
    exact = mlp_equivariance_error(copy.deepcopy(model).double(), in_rep, out_rep, splits["test"].double())
    rows += final_rows(rows, construction_rss_mib=built.peak_mib, width=p["hidden"],
                       equivariance_error=mlp_equivariance_error(model, in_rep, out_rep, splits["test"]),
                       equivariance_error_f64=exact)  # fmt: skip
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
