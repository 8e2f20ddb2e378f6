"""Equivariant vs plain on MuJoCo Ant dynamics: an eMLP predicting the next state from the state and action.

One step of ``Ant-v5`` (50 ms) in the torso frame: input ``[state_t, action_t]`` (34 numbers, symmetric
normalisation), target the scaled change ``state_{t+1} - state_t`` (26). The eMLP (group D4 by default) against
its plain twin at equal width, the plain twin shrunk to the eMLP's parameter count, the eMLP widened to the plain
twin's count, and the plain twin with data augmentation, for several training-set sizes. The input representation
is monomial, not a permutation one: the eMLP's first ``eLinear`` maps it to regular-representation copies and only
those meet the pointwise activation. The windows are those of :mod:`ablations.study_ant` (one sample per window:
its last conditioning step), from the same cache.

    python -m ablations.study_ant_dynamics [--full] [--train-sizes 256 2048] [--seeds 3] [--group D4]
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .common import final_rows, main, mlp, mlp_equivariance_error, seed_jobs
from .study_ant import MODELS, TASK_FIELDS, parameter_count, prepare_data, task_of
from .study_equivariance import _equal_params_width
from .sweep import Job
from .tasks import make_splits
from .train import GroupAugmentation, PeakRSS, Regression, TrainConfig, fit

STUDY = "ant_dynamics"


@dataclass(frozen=True)
class Config:
    """Ant one-step dynamics study: eMLP and its plain twins on Ant-v5 transitions (quick profile)."""

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (256, 2048)
    seeds: int = 3
    group: str = "D4"
    cond_steps: int = 4
    horizon: int = 8
    action_smoothing: float = 0.8
    action_scale: float = 0.6
    stats_windows: int = 512
    hidden: int = 128
    layers: int = 2
    eval_size: int = 512
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    eval_every: int = 100
    device: str = "cpu"

    FULL = {"train_sizes": (128, 512, 2048, 8192), "seeds": 5, "steps": 5000, "eval_every": 250,
            "eval_size": 2048}  # fmt: skip


def jobs(config: Config) -> list[Job]:
    prepare_data(config, forecast=False)
    shared = {k: getattr(config, k) for k in TASK_FIELDS + ("hidden", "layers", "eval_size", "steps", "batch_size",
                                                             "lr", "weight_decay", "eval_every", "device")}  # fmt: skip
    configs = {f"{m}@n={n}": {**shared, "model": m, "train_size": n} for m in config.models for n in config.train_sizes}
    return seed_jobs(STUDY, config.seeds, configs)


def equivariant_width(in_rep, out_rep, target: int, layers: int) -> int:
    """Hidden width (a multiple of ``|G|``) of the eMLP whose parameter count is closest to ``target``."""
    order = in_rep.group.order()

    def count(multiple: int) -> int:
        return parameter_count(mlp(in_rep, out_rep, True, [multiple * order] * layers))

    # the count grows about quadratically in the width: start from that guess and walk to the closest
    reference = count(1)
    multiple = max(1, round(math.sqrt(target / reference)))
    while multiple > 1 and count(multiple) > target:
        multiple -= 1
    while count(multiple + 1) <= target:
        multiple += 1
    below, above = count(multiple), count(multiple + 1)
    return order * (multiple if target - below <= above - target else multiple + 1)


def run(job: Job) -> list[dict]:
    p = job.params
    task = task_of(p, forecast=False)
    G, out_rep, in_rep = task.group_and_reps
    equivariant, rule, augmented = MODELS[p["model"]]
    hidden = [p["hidden"]] * p["layers"]
    if rule == "params" and not equivariant:
        reference = parameter_count(mlp(in_rep, out_rep, True, hidden))
        hidden = [_equal_params_width(reference, in_rep.size, out_rep.size, p["layers"])] * p["layers"]
    elif rule == "params":
        reference = parameter_count(mlp(in_rep, out_rep, False, hidden))
        hidden = [equivariant_width(in_rep, out_rep, reference, p["layers"])] * p["layers"]
    sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
    splits = {name: split.to(p["device"]) for name, split in make_splits(task, sizes, job.seed).items()}
    torch.manual_seed(job.seed)
    with PeakRSS() as built:
        model = mlp(in_rep, out_rep, equivariant, hidden, p["device"])
    augment = GroupAugmentation(G.elements, in_rep, out_rep) if augmented else None
    train = TrainConfig(p["steps"], p["batch_size"], p["lr"], p["weight_decay"], p["eval_every"], p["eval_size"])
    rows = fit(model, Regression(), splits, train, job.seed, augment=augment)
    exact = mlp_equivariance_error(copy.deepcopy(model).double(), in_rep, out_rep, splits["test"].double())
    rows += final_rows(p["steps"], rows[-1]["wall_time"], construction_rss_mib=built.peak_mib, hidden_width=hidden[0],
                       equivariance_error=mlp_equivariance_error(model, in_rep, out_rep, splits["test"]),
                       equivariance_error_f64=exact)  # fmt: skip
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
