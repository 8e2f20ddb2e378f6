"""Equivariant vs plain: how much data does the symmetry prior save, at equal parameter count?

The equivariant MLP against the plain MLP and the plain MLP trained with data augmentation (an independent random
group element per sample and step), on the static ring-regression task (a known D_N-equivariant function plus
noise), over training-set sizes and a width sweep per model. For every equivariant width the plain and augmented
models also run at the width whose parameter count is closest to it, so the tables compare the models at equal
parameters in both directions (a small plain model against the equivariant one, and an equivariant model grown to
the plain model's size), paired by seed; the figures show test loss against parameters and against data.

    python -m ablations.study_equivariance [--full] [--train-sizes 32 256 2048] [--equivariant-widths 128 512]
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import torch

from .common import (
    ProtocolConfig,
    final_rows,
    main,
    mlp,
    mlp_equivariance_error,
    protocol_params,
    seed_jobs,
    sweep_configs,
    train_settings,
)
from .sweep import Job
from .tasks import RingRegression, make_splits
from .train import GroupAugmentation, PeakRSS, Regression, TrainConfig, fit

STUDY = "equivariant_vs_plain"
#: model -> (equivariant, augmented)
MODELS = {"equivariant": (True, False), "plain": (False, False), "plain/augmented": (False, True)}


@dataclass(frozen=True)
class Config(ProtocolConfig):
    """Equivariant-vs-plain study: eMLP, plain MLP and augmented plain MLP on the ring-regression task.

    The plain model runs at ``plain_widths`` and at the widths matched to every equivariant width's parameter count
    (``match_params``); the augmented model at the matched widths.
    """

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (32, 256, 2048)
    equivariant_widths: tuple = (128, 512)
    plain_widths: tuple = ()
    match_params: bool = True
    sites: int = 8
    noise: float = 0.05
    layers: int = 2
    eval_size: int = 1024
    steps: int = 500
    batch_size: int = 64
    eval_every: int = 50
    patience: int = 5

    FULL = {**ProtocolConfig.FULL, "train_sizes": (16, 64, 256, 1024, 4096), "steps": 10000, "eval_every": 200,
            "eval_size": 4096, "equivariant_widths": (64, 128, 256, 512), "plain_widths": (16, 64, 256),
            "lr_grid": (1e-3, 3e-3, 1e-2, 3e-2)}  # fmt: skip


def plain_params(width: int, d_in: int, d_out: int, layers: int) -> int:
    """Parameters of the plain MLP: ``(d_in + 1) h + (layers - 1)(h + 1) h + (h + 1) d_out``."""
    return (d_in + 1) * width + (layers - 1) * (width + 1) * width + (width + 1) * d_out


@functools.cache
def equivariant_params(sites: int, width: int, layers: int) -> int:
    _, in_rep, out_rep = RingRegression(sites=sites).group_and_reps
    return sum(q.numel() for q in mlp(in_rep, out_rep, True, [width] * layers).parameters())


def equal_params_width(target: int, d_in: int, d_out: int, layers: int) -> int:
    """Hidden width of the plain MLP whose parameter count is closest to ``target`` (solves the quadratic)."""
    a, b, c = layers - 1, d_in + 1 + (layers - 1) + d_out, d_out - target
    h = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) if a else -c / b
    return min(
        {max(1, math.floor(h)), max(1, math.ceil(h))}, key=lambda w: abs(plain_params(w, d_in, d_out, layers) - target)
    )


def widths(config: Config) -> dict[str, list[int]]:
    """Model -> hidden widths to run: the equivariant widths; for the plain model ``plain_widths`` and the widths
    matched to every equivariant one's parameter count; for the augmented model the matched widths."""
    _, in_rep, out_rep = RingRegression(sites=config.sites).group_and_reps
    matched = set()
    if config.match_params:
        matched = {equal_params_width(equivariant_params(config.sites, w, config.layers), in_rep.size, out_rep.size,
                                      config.layers) for w in config.equivariant_widths}  # fmt: skip
    chosen = {"equivariant": set(config.equivariant_widths), "plain": set(config.plain_widths) | matched,
              "plain/augmented": matched or set(config.plain_widths)}  # fmt: skip
    return {m: sorted(chosen[m]) for m in config.models}


def jobs(config: Config) -> list[Job]:
    shared = {**protocol_params(config), "sites": config.sites, "noise": config.noise, "layers": config.layers}
    configs = sweep_configs(widths(config), config.train_sizes,
                            lambda m, w, n: {**shared, "model": m, "hidden": w, "train_size": n})  # fmt: skip
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    p = job.params
    task = RingRegression(sites=p["sites"], noise=p["noise"])
    G, in_rep, out_rep = task.group_and_reps
    sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
    splits = {name: split.to(p["device"]) for name, split in make_splits(task, sizes, job.seed).items()}
    equivariant, augmented = MODELS[p["model"]]
    torch.manual_seed(job.seed)
    with PeakRSS() as built:
        model = mlp(in_rep, out_rep, equivariant, [p["hidden"]] * p["layers"], p["device"])
    augment = GroupAugmentation(G.elements, in_rep, out_rep) if augmented else None
    rows = fit(model, Regression(), splits, TrainConfig(**train_settings(p)), job.seed, augment=augment)
    exact = mlp_equivariance_error(copy.deepcopy(model).double(), in_rep, out_rep, splits["test"].double())
    rows += final_rows(rows, construction_rss_mib=built.peak_mib, width=p["hidden"], noise_floor=p["noise"] ** 2,
                       equivariance_error=mlp_equivariance_error(model, in_rep, out_rep, splits["test"]),
                       equivariance_error_f64=exact)  # fmt: skip
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
