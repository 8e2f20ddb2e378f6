"""Normalisation: RMSNorm vs LayerNorm vs BatchNorm, pre-norm vs post-norm, in the equivariant regressor.

Loss curves, stability (divergence, spread of the last training losses) and time per step, once per
(norm, placement, seed). ``norm_first=True`` normalises each block's input (pre-norm), ``False`` its residual sum
(post-norm, the original transformer).

    python -m ablations.study_norm [--full] [--norms rmsnorm layernorm batchnorm] [--placements pre post]
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import SequenceConfig, main, seed_jobs, sequence_params, train_sequence_model
from .sweep import Job

STUDY = "normalization"
PLACEMENTS = {"pre": True, "post": False}


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Normalisation study: the equivariant regressor with each norm module, before or after each block."""

    norms: tuple = ("rmsnorm", "layernorm", "batchnorm")
    placements: tuple = ("pre", "post")


def jobs(config: Config) -> list[Job]:
    configs = {
        f"{norm}/{placement}": sequence_params(config, norm=norm, placement=placement)
        for norm in config.norms
        for placement in config.placements
    }
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    p = job.params
    _, rows = train_sequence_model(job, norm_module=p["norm"], norm_first=PLACEMENTS[p["placement"]])
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
