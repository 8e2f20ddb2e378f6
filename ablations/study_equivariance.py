"""Equivariant vs plain: how much data does the symmetry prior save?

The equivariant MLP against its plain twin at equal width, at equal parameter count, and at equal width trained
with data augmentation (an independent random group element per sample and step), on the static ring-regression
task (a known D_N-equivariant function plus noise), for several training-set sizes.

    python -m ablations.study_equivariance [--full] [--train-sizes 32 128 512 2048] [--seeds 3]
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .common import final_rows, main, mlp, mlp_equivariance_error, seed_jobs
from .sweep import Job
from .tasks import RingRegression, make_splits
from .train import GroupAugmentation, PeakRSS, Regression, TrainConfig, fit

STUDY = "equivariant_vs_plain"
#: label -> (equivariant, width rule, augmentation)
MODELS = {
    "equivariant": (True, "width", False),
    "plain/equal-width": (False, "width", False),
    "plain/equal-params": (False, "params", False),
    "plain/augmented": (False, "width", True),
}


@dataclass(frozen=True)
class Config:
    """Equivariant-vs-plain study: eMLP and its plain twins on the ring-regression task."""

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (32, 128, 512, 2048)
    seeds: int = 3
    sites: int = 8
    noise: float = 0.05
    hidden: int = 128
    layers: int = 2
    eval_size: int = 1024
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 1e-4
    eval_every: int = 100
    device: str = "cpu"

    FULL = {"train_sizes": (16, 32, 64, 128, 256, 512, 1024, 2048, 8192), "steps": 5000, "eval_every": 250,
            "seeds": 5, "eval_size": 4096}  # fmt: skip


def jobs(config: Config) -> list[Job]:
    shared = {k: getattr(config, k) for k in ("sites", "noise", "hidden", "layers", "eval_size", "steps", "batch_size",
                                              "lr", "weight_decay", "eval_every", "device")}  # fmt: skip
    configs = {
        f"{model}@n={n}": {**shared, "model": model, "train_size": n}
        for model in config.models
        for n in config.train_sizes
    }
    return seed_jobs(STUDY, config.seeds, configs)


def _equal_params_width(target: int, d_in: int, d_out: int, layers: int) -> int:
    """Hidden width ``h`` of a plain MLP with ``layers`` hidden layers whose parameter count is closest to
    ``target``: ``(d_in + 1) h + (layers - 1)(h + 1) h + (h + 1) d_out``."""
    a, b, c = layers - 1, d_in + 1 + (layers - 1) + d_out, d_out - target
    h = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) if a else -c / b
    return max(1, round(h))


def run(job: Job) -> list[dict]:
    p = job.params
    task = RingRegression(sites=p["sites"], noise=p["noise"])
    G, in_rep, out_rep = task.group_and_reps
    sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
    splits = {name: split.to(p["device"]) for name, split in make_splits(task, sizes, job.seed).items()}
    equivariant, rule, augmented = MODELS[p["model"]]
    hidden = [p["hidden"]] * p["layers"]
    if rule == "params":
        reference = sum(q.numel() for q in mlp(in_rep, out_rep, True, hidden).parameters())
        hidden = [_equal_params_width(reference, in_rep.size, out_rep.size, p["layers"])] * p["layers"]
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
