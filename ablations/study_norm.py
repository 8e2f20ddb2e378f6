"""Normalisation: RMSNorm vs LayerNorm vs BatchNorm, pre- vs post-norm, isotypic vs diagonal affine, at two depths.

Trains the equivariant regressor once per (norm, placement, affine, depth, seed), each configuration at its own
learning rate chosen on validation (see :class:`~ablations.common.ProtocolConfig`), and reports the test loss of
the best-validation checkpoint, stability (divergence, spread of the last training losses) and time per step.
``norm_first=True`` normalises each block's input (pre-norm), ``False`` its residual sum (post-norm, the original
transformer). ``norm_affine``: ``"isotypic"`` (one scale per irrep copy, :class:`~symm_layers.eAffine`) or
``"diagonal"`` (one scale per permutation-representation coordinate, :class:`~symm_layers.eDiagonalAffine`;
faster on permutation representations); batch norm's affine is per irrep copy already, so it runs once.

    python -m ablations.study_norm [--full] [--norms rmsnorm layernorm batchnorm] [--placements pre post]
        [--affines isotypic diagonal] [--depths 1 2]
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import SequenceConfig, main, seed_jobs, sequence_params, train_sequence_model
from .sweep import Job

STUDY = "normalization"
PLACEMENTS = {"pre": True, "post": False}


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Normalisation study: the equivariant regressor with each norm, placement, affine and depth."""

    norms: tuple = ("rmsnorm", "layernorm")
    placements: tuple = ("pre", "post")
    affines: tuple = ("isotypic", "diagonal")
    depths: tuple = (2,)

    FULL = {**SequenceConfig.FULL, "norms": ("rmsnorm", "layernorm", "batchnorm"), "depths": (2, 4)}


def jobs(config: Config) -> list[Job]:
    configs = {}
    for norm in config.norms:
        for placement in config.placements:
            for affine in config.affines if norm != "batchnorm" else config.affines[:1]:
                for depth in config.depths:
                    configs[f"{norm}/{placement}/{affine}/L{depth}"] = sequence_params(
                        config, variant=f"{norm}/{placement}", norm=norm, placement=placement, norm_affine=affine,
                        num_layers=int(depth))  # fmt: skip
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    p = job.params
    _, rows = train_sequence_model(job, norm_module=p["norm"], norm_first=PLACEMENTS[p["placement"]],
                                   norm_affine=p["norm_affine"])  # fmt: skip
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
