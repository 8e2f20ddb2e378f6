"""Equivariant vs plain on the sequence task: the conditional regressor and its plain twins at equal parameters.

The counterpart of ``study_equivariance`` for the flow-matching regressor on the ring-oscillator task: the
equivariant regressor against the plain regressor and the plain regressor trained on sequences rotated/reflected by
a random group element, over training-set sizes (down to sets small enough for the plain model to overfit) and a
width sweep per model: every equivariant embedding width, and for the plain models the widths whose parameter
counts are closest to those (plus ``plain_widths``), so that the comparison holds at equal parameters both ways.

    python -m ablations.study_equivariance_sequence [--full] [--train-sizes 64 2048] [--equivariant-widths 32 128]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .common import SequenceConfig, main, regressor, seed_jobs, sequence_params, sweep_configs, train_sequence_model
from .study_equivariance import MODELS
from .sweep import Job
from .tasks import RingOscillators
from .train import GroupAugmentation

STUDY = "equivariant_vs_plain_sequence"


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Equivariant-vs-plain study on the sequence task: eCondTransformerRegressor and its plain twins."""

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (64, 2048)
    equivariant_widths: tuple = (32, 128)
    plain_widths: tuple = ()
    match_params: bool = True

    FULL = {**SequenceConfig.FULL, "train_sizes": (32, 256, 2048, 8192), "equivariant_widths": (32, 64, 128, 256),
            "plain_widths": (64,)}  # fmt: skip


@functools.cache
def parameter_count(sites: int, equivariant: bool, width: int, num_layers: int, heads: int) -> int:
    task = RingOscillators(sites=sites)
    return sum(p.numel() for p in regressor(task, equivariant, width, num_layers, heads).parameters())


def equal_params_width(sites: int, embedding_dim: int, num_layers: int, heads: int) -> int:
    """Embedding width of the plain regressor whose parameter count is closest to the equivariant one's."""
    target = parameter_count(sites, True, embedding_dim, num_layers, heads)
    low, high = 1, 2 * embedding_dim // heads  # widths low * heads ... high * heads; counts grow with the width
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (
            (mid, high) if parameter_count(sites, False, mid * heads, num_layers, heads) < target else (low, mid)
        )
    return min((low * heads, high * heads), key=lambda w: abs(parameter_count(sites, False, w, num_layers, heads)
                                                              - target))  # fmt: skip


def widths(config: Config) -> dict[str, list[int]]:
    """Model -> embedding widths: the equivariant widths; for the plain model ``plain_widths`` and the widths
    matched to every equivariant one's parameter count; for the augmented model the matched widths."""
    matched = set()
    if config.match_params:
        matched = {equal_params_width(config.sites, w, config.num_layers, config.heads)
                   for w in config.equivariant_widths}  # fmt: skip
    chosen = {"equivariant": set(config.equivariant_widths), "plain": set(config.plain_widths) | matched,
              "plain/augmented": matched or set(config.plain_widths)}  # fmt: skip
    return {m: sorted(chosen[m]) for m in config.models}


def jobs(config: Config) -> list[Job]:
    def params(model: str, width: int, n: int) -> dict:
        return sequence_params(config, model=model, embedding_dim=width, train_size=n)

    configs = sweep_configs(widths(config), config.train_sizes, params)
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    equivariant, augmented = MODELS[job.params["model"]]
    augment = None
    if augmented:
        G, x_rep, z_rep = RingOscillators(sites=job.params["sites"]).group_and_reps
        augment = GroupAugmentation(G.elements, z_rep, x_rep)  # inputs are Z, targets are X
    _, rows = train_sequence_model(job, equivariant=equivariant, augment=augment)
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
