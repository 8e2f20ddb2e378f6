"""Does the way a Hom_G basis is materialised change what the regressor learns, or only what it costs?

Every strategy parameterises the same orthonormal basis, so with one seed the models start from the same function;
the model works in the spatial layout, where every linear map goes through the strategy;
the question is whether training follows the same curve (it should, up to floating-point summation order) while
wall-clock time and memory differ. Because the models are the same, all strategies train at one learning rate (no
tuning stage); each run has a fresh process, so its memory columns measure that strategy alone. Trains the
equivariant conditional regressor on the ring-oscillator
flow-matching task once per (strategy, seed).

    python -m ablations.study_basis [--full] [--strategies auto orbit_gather isotypic_expansion] [--seeds 3]
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import SequenceConfig, main, seed_jobs, sequence_params, train_sequence_model
from .sweep import Job

STUDY = "basis_expansion"


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Basis-expansion study: the equivariant regressor trained under each basis_expansion_scheme."""

    strategies: tuple = ("auto", "orbit_gather", "isotypic_expansion", "memory_heavy")
    lr_grid: tuple = (3e-3,)  # one rate, no tuning: the strategies are the same model (see the module docstring)
    steps: int = 60  # quick: enough steps for a median step time; the curves are the full profile's question

    FULL = {**SequenceConfig.FULL, "lr_grid": (3e-3,)}
    MEMORY_IN_FRESH_PROCESS = True


def jobs(config: Config) -> list[Job]:
    configs = {s: sequence_params(config, strategy=s) for s in config.strategies}
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    # The spatial layout, where every linear map goes through the basis strategy (in the spectral layout the maps
    # are spectral gathers whatever the strategy, which would make this study compare nothing).
    _, rows = train_sequence_model(job, basis_expansion_scheme=job.params["strategy"], layout="spatial")
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
