"""Weight cache: what caching the dense weights of every eLinear buys at inference, and that it never goes stale.

Trains the equivariant regressor with ``weight_cache="cached"`` and ``"uncached"``. Training steps record autograd
graphs, so both modes compute the same way there; evaluation (``no_grad``) reuses the cached weights. At every
evaluation the run loads its current state into an uncached copy of the model and logs the largest absolute
difference between the two outputs on a test batch (``cache_output_max_abs_diff``): a stale cache would show up
as a non-zero value after the next optimizer step.

    python -m ablations.study_cache [--full] [--modes cached uncached] [--seeds 3]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .common import SequenceConfig, main, regressor, seed_jobs, sequence_params, train_sequence_model
from .sweep import Job
from .tasks import RingOscillators

STUDY = "weight_cache"


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Weight-cache study: the equivariant regressor trained with each weight_cache mode."""

    modes: tuple = ("cached", "uncached")


def jobs(config: Config) -> list[Job]:
    return seed_jobs(STUDY, config.seeds, {m: sequence_params(config, weight_cache=m) for m in config.modes})


def _agreement_probe(job: Job):
    p = job.params

    def factory(model, splits):
        twin = regressor(RingOscillators(sites=p["sites"]), True, p["embedding_dim"], p["num_layers"], p["heads"],
                         weight_cache="uncached", init_scheme=None)  # fmt: skip
        cond, future = splits["test"].inputs[:64], splits["test"].targets[:64]
        k = torch.linspace(1.0, 99.0, cond.shape[0])

        @torch.no_grad()
        def probe(step: int) -> list[tuple[str, float]]:
            was_training = model.training
            model.eval()
            twin.load_state_dict(model.state_dict())
            twin.eval()
            diff = (model(future, k, cond) - twin(future, k, cond)).abs().max().item()
            model.train(was_training)
            return [("cache_output_max_abs_diff", diff)]

        return probe

    return factory


def run(job: Job) -> list[dict]:
    _, rows = train_sequence_model(job, on_eval_factory=_agreement_probe(job), weight_cache=job.params["weight_cache"])
    return rows


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
