"""Equivariant vs plain on the sequence task: the conditional regressor and its plain twins.

The counterpart of ``study_equivariance`` for the flow-matching regressor on the ring-oscillator task: the
equivariant regressor against the plain regressor at equal embedding width, at (about) equal parameter count, and
at equal width trained on sequences rotated/reflected by a random group element, for several training-set sizes.

    python -m ablations.study_equivariance_sequence [--full] [--train-sizes 256 2048] [--seeds 3]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .common import SequenceConfig, main, regressor, seed_jobs, sequence_params, train_sequence_model
from .study_equivariance import MODELS
from .sweep import Job
from .tasks import RingOscillators
from .train import GroupAugmentation

STUDY = "equivariant_vs_plain_sequence"


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Equivariant-vs-plain study on the sequence task: eCondTransformerRegressor and its plain twins."""

    models: tuple = tuple(MODELS)
    train_sizes: tuple = (256, 2048)

    FULL = {**SequenceConfig.FULL, "train_sizes": (128, 512, 2048, 8192)}


def jobs(config: Config) -> list[Job]:
    configs = {
        f"{model}@n={n}": sequence_params(config, model=model, train_size=n)
        for model in config.models
        for n in config.train_sizes
    }
    return seed_jobs(STUDY, config.seeds, configs)


@functools.cache
def equal_params_width(sites: int, embedding_dim: int, num_layers: int, heads: int) -> int:
    """Embedding width of the plain regressor whose parameter count is closest to the equivariant one's."""
    task = RingOscillators(sites=sites)

    def count(equivariant: bool, width: int) -> int:
        return sum(p.numel() for p in regressor(task, equivariant, width, num_layers, heads).parameters())

    target = count(True, embedding_dim)
    return min(range(heads, embedding_dim + 1, heads), key=lambda width: abs(count(False, width) - target))


def run(job: Job) -> list[dict]:
    p = job.params
    equivariant, rule, augmented = MODELS[p["model"]]
    width = p["embedding_dim"]
    if rule == "params":
        width = equal_params_width(p["sites"], width, p["num_layers"], p["heads"])
    augment = None
    if augmented:
        G, x_rep, z_rep = RingOscillators(sites=p["sites"]).group_and_reps
        augment = GroupAugmentation(G.elements, z_rep, x_rep)  # inputs are Z, targets are X
    _, rows = train_sequence_model(job, equivariant=equivariant, embedding_dim=width, augment=augment)
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
