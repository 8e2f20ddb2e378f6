"""Normalisation on MuJoCo Ant forecasting: RMSNorm vs LayerNorm, isotypic vs diagonal affine.

The equivariant regressor of :mod:`ablations.study_ant` (pre-norm, at ``embedding_dim``, trained on
``train_size`` windows) once per (norm, affine, depth, seed), each configuration at its own learning rate chosen on
validation (:class:`~ablations.common.ProtocolConfig`); labels ``norm/placement/affine/L<depth>`` as in
:mod:`ablations.study_norm`, so the tables and the guide read both studies alike. ``norm_affine``: ``"isotypic"``
(one scale per irrep copy) or ``"diagonal"`` (one scale per permutation-representation coordinate).

    python -m ablations.study_ant_norm [--full] [--norms rmsnorm layernorm] [--affines isotypic diagonal]
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import main, protocol_params, seed_jobs
from .study_ant import AntConfig, prepare_data, task_params, train_forecaster
from .study_norm import PLACEMENTS
from .sweep import Job

STUDY = "ant_norm"


@dataclass(frozen=True)
class Config(AntConfig):
    """Ant normalisation study: the equivariant regressor with each norm, affine and depth (quick profile)."""

    norms: tuple = ("rmsnorm", "layernorm")
    placements: tuple = ("pre",)
    affines: tuple = ("isotypic", "diagonal")
    depths: tuple = (2,)
    train_size: int = 2048
    embedding_dim: int = 64
    heads: int = 2
    steps: int = 200

    FULL = {**AntConfig.FULL, "steps": 3000, "eval_every": 100, "train_size": 4096,
            "placements": ("pre", "post"), "depths": (2, 4)}  # fmt: skip


def jobs(config: Config) -> list[Job]:
    prepare_data(config, config.train_size)
    shared = {**protocol_params(config), **task_params(config), "train_size": config.train_size,
              "embedding_dim": config.embedding_dim, "heads": config.heads}  # fmt: skip
    configs = {}
    for norm in config.norms:
        for placement in config.placements:
            for affine in config.affines:
                for depth in config.depths:
                    configs[f"{norm}/{placement}/{affine}/L{depth}"] = {
                        **shared, "variant": f"{norm}/{placement}", "norm": norm, "placement": placement,
                        "norm_affine": affine, "num_layers": int(depth)}  # fmt: skip
    return seed_jobs(STUDY, config.seeds, configs)


def run(job: Job) -> list[dict]:
    p = job.params
    return train_forecaster(job, norm_module=p["norm"], norm_first=PLACEMENTS[p["placement"]],
                            norm_affine=p["norm_affine"])  # fmt: skip


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
