"""Weight cache: what caching the dense weights of every eLinear buys at inference, and that it never goes stale.

Trains the equivariant regressor with ``weight_cache="cached"`` and ``"uncached"``. Training steps record autograd
graphs, so both modes compute the same way there; evaluation (``no_grad``) reuses the cached weights. At every
evaluation the run loads its current state into an uncached copy of the model and logs the largest absolute
difference between the two outputs on a test batch (``cache_output_max_abs_diff``): a stale cache would show up
as a non-zero value after the next optimizer step.

    python -m ablations.study_cache [--full] [--modes cached uncached] [--seeds 3]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .common import SequenceConfig, final_rows, main, regressor, seed_jobs, sequence_params, train_sequence_model
from .sweep import Job
from .tasks import RingOscillators
from .train import synchronize

STUDY = "weight_cache"


@dataclass(frozen=True)
class Config(SequenceConfig):
    """Weight-cache study: the equivariant regressor trained with each weight_cache mode."""

    modes: tuple = ("cached", "uncached")
    lr_grid: tuple = (3e-3,)  # one rate, no tuning: both modes train the same model the same way
    steps: int = 60  # quick: a few evaluations (each checks the cache) and a median step time

    FULL = {**SequenceConfig.FULL, "lr_grid": (3e-3,)}
    MEMORY_IN_FRESH_PROCESS = True


def jobs(config: Config) -> list[Job]:
    return seed_jobs(STUDY, config.seeds, {m: sequence_params(config, weight_cache=m) for m in config.modes})


def _twin(job: Job, weight_cache: str) -> torch.nn.Module:
    p = job.params
    model = regressor(RingOscillators(sites=p["sites"]), True, p["embedding_dim"], p["num_layers"], p["heads"],
                      weight_cache=weight_cache, init_scheme=None, device=p["device"])  # fmt: skip
    return model.eval()


def _agreement_probe(job: Job):
    def factory(model, splits):
        twin = _twin(job, "uncached")
        cond, future = splits["test"].inputs[:64], splits["test"].targets[:64]
        k = torch.linspace(1.0, 99.0, cond.shape[0])

        @torch.no_grad()
        def probe(step: int) -> list[tuple[str, float]]:
            was_training = model.training
            model.eval()
            twin.load_state_dict(model.state_dict())
            diff = (model(future, k, cond) - twin(future, k, cond)).abs().max().item()
            model.train(was_training)
            return [("cache_output_max_abs_diff", diff)]

        return probe

    return factory


@torch.no_grad()
def interleaved_inference_ms(job: Job, state: dict, rounds: int = 15) -> dict[str, float]:
    """Median ms per no-grad forward of the trained weights in each cache mode, alternating the two modes round by
    round in this process, so that both see the same machine load."""
    p, task = job.params, RingOscillators(sites=job.params["sites"])
    cond = torch.randn(p["batch_size"], task.cond_steps, 2 * p["sites"], generator=torch.Generator().manual_seed(0))
    future = torch.randn(p["batch_size"], task.horizon, 2 * p["sites"], generator=torch.Generator().manual_seed(1))
    cond, future = cond.to(p["device"]), future.to(p["device"])
    k = torch.full((p["batch_size"],), 50.0, device=p["device"])
    models = {mode: _twin(job, mode) for mode in ("cached", "uncached")}
    times: dict[str, list[float]] = {mode: [] for mode in models}
    for model in models.values():
        model.load_state_dict(state)
        model(future, k, cond)  # warm-up; fills the cache
    for _ in range(rounds):
        for mode, model in models.items():
            synchronize(p["device"])
            start = time.perf_counter()
            model(future, k, cond)
            synchronize(p["device"])
            times[mode].append(1000 * (time.perf_counter() - start))
    return {f"infer_ms_{mode}_interleaved": float(np.median(t)) for mode, t in times.items()}


def run(job: Job) -> list[dict]:
    model, rows = train_sequence_model(job, on_eval_factory=_agreement_probe(job),
                                       weight_cache=job.params["weight_cache"])  # fmt: skip
    return rows + final_rows(rows, **interleaved_inference_ms(job, model.state_dict()))


if __name__ == "__main__":
    main(STUDY, Config, jobs, run)
