"""Basis expansion on MuJoCo Ant forecasting: does the strategy change what the regressor learns, or what it costs?

The equivariant regressor of :mod:`ablations.study_ant` once per (``basis_expansion_scheme``, seed). Every strategy
parameterises the same basis, so the models are the same function and train at one learning rate (no tuning
stage, as in :mod:`ablations.study_basis`); each run has a fresh process, so its memory columns measure that
strategy alone. The Ant's state and token representations are monomial (signed permutations), not permutation
ones, so ``orbit_gather`` refuses the regressor's first and last layers (its ValueError names the fix) and is not
a candidate here; ``auto`` picks per layer (``orbit_gather`` on the inner regular-representation layers where
forming the weight pays, ``isotypic_expansion`` elsewhere), so it is the way to get it on this task.

    python -m ablations.study_ant_basis [--full] [--strategies isotypic_expansion memory_heavy auto]
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import main, protocol_params, seed_jobs
from .study_ant import AntConfig, prepare_data, task_params, train_forecaster
from .sweep import Job

STUDY = "ant_basis"


@dataclass(frozen=True)
class Config(AntConfig):
    """Ant basis-expansion study: the equivariant regressor under each basis_expansion_scheme (quick profile)."""

    strategies: tuple = ("isotypic_expansion", "memory_heavy", "auto")
    lr_grid: tuple = (3e-3,)  # one rate, no tuning: the strategies are the same model (see the module docstring)
    train_size: int = 2048
    embedding_dim: int = 64
    num_layers: int = 2
    heads: int = 2
    steps: int = 50

    FULL = {**AntConfig.FULL, "steps": 3000, "eval_every": 100, "train_size": 4096,
            "lr_grid": (3e-3,)}  # fmt: skip
    MEMORY_IN_FRESH_PROCESS = True


def jobs(config: Config) -> list[Job]:
    prepare_data(config, config.train_size)
    shared = {
        **protocol_params(config),
        **task_params(config),
        "train_size": config.train_size,
        "embedding_dim": config.embedding_dim,
        "num_layers": config.num_layers,
        "heads": config.heads,
    }
    configs = {s: {**shared, "strategy": s} for s in config.strategies}
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    # The spatial layout, where every linear map goes through the strategy (spectral maps ignore it).
    return train_forecaster(job, basis_expansion_scheme=job.params["strategy"], layout="spatial")


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
