"""The training loop every study shares, its objectives, and the per-run measurements.

A run logs, every ``eval_every`` steps, the mean training loss since the last log and the validation and test
losses, each against the step and against the wall time spent in training steps (evaluation excluded). Training runs
until validation plateaus (:class:`PlateauThenAnneal`: a constant learning rate until ``patience`` evaluations bring
no relative improvement of ``min_delta``, then a short cosine decay, then stop; ``steps`` is only a cap), and the
model is restored to its best-validation checkpoint. At the end the run logs one row per scalar: the best validation
loss, the step it was reached at and the test loss there (``best_test_loss``: the number the tables report), the
step training stopped at, the step the decay began at and whether a plateau (rather than the cap) began it
(``plateaued``), the loss of predicting zero on the test split, parameter count, milliseconds
per training step and per inference batch, the growth of the process's resident memory during training (sampled
by a thread; an upper bound on what training allocated; only meaningful when each run has a fresh process, see
:func:`ablations.sweep.run_sweep`), whether the loss diverged, and the trained model's relative equivariance error
(computed by the study, which knows the model's inputs).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from escnn.group import Representation
from torch import nn

from .tasks import Split


@dataclass
class TrainConfig:
    """Optimisation settings shared by every run of a study.

    ``steps`` is a cap, not a budget: with ``patience`` set, the learning rate stays at ``lr`` until ``patience``
    evaluations in a row failed to lower the best validation loss by more than ``min_delta`` (relative), then decays
    over ``anneal`` times the steps taken so far, and training stops (:class:`PlateauThenAnneal`). A run that has not
    plateaued by ``steps / (1 + anneal)`` starts its decay there, so that it ends at the cap.
    """

    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 50
    eval_size: int = 512
    patience: int | None = None
    min_delta: float = 1e-3
    anneal: float = 0.25


class PlateauDetector:
    """Tracks the best validation loss; :meth:`update` says whether validation has plateaued.

    An evaluation improves when ``loss < best * (1 - min_delta)``; after ``patience`` evaluations without one,
    :meth:`update` returns True (never, with ``patience=None``), and :func:`fit` starts its decay
    (:class:`PlateauThenAnneal`). A non-finite loss returns True at once (the run has diverged).
    """

    def __init__(self, patience: int | None, min_delta: float = 1e-3) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be a positive number of evaluations or None, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_step, self.stale = math.inf, 0, 0

    def update(self, step: int, loss: float) -> bool:
        """Record the validation ``loss`` at ``step``; return True once validation has plateaued (or diverged)."""
        if not math.isfinite(loss):
            return True
        if loss < self.best * (1 - self.min_delta) or not math.isfinite(self.best):
            self.best, self.best_step, self.stale = loss, step, 0
            return False
        if loss < self.best:  # a smaller improvement than min_delta still moves the checkpoint
            self.best, self.best_step = loss, step
        self.stale += 1
        return self.patience is not None and self.stale >= self.patience


class PlateauThenAnneal:
    """The learning-rate schedule of :func:`fit`: constant, then a cosine decay to a tenth, then stop.

    :meth:`begin` starts the decay at ``step`` (a validation plateau); it lasts ``anneal * step`` steps (at least
    ``min_length``, at most what is left of ``cap``). Without a plateau the decay starts at ``cap / (1 + anneal)``
    and ends at the cap. :meth:`after` sets each parameter group's rate for the next step and says whether the decay
    is over. ``plateaued`` records which of the two started it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cap: int, anneal: float = 0.25, min_length: int = 1,
                 floor: float = 0.1) -> None:  # fmt: skip
        if cap < 1 or anneal <= 0:
            raise ValueError(f"need a cap of at least one step and a positive anneal fraction, got {cap}, {anneal}")
        self.optimizer, self.cap, self.anneal, self.min_length, self.floor = optimizer, cap, anneal, min_length, floor
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.latest = max(1, math.floor(cap / (1 + anneal)))
        self.start: int | None = None
        self.length, self.plateaued = 0, False

    def begin(self, step: int, plateau: bool = True) -> None:
        """Start the decay after ``step`` (a no-op once it has started)."""
        if self.start is None:
            self.start, self.plateaued = step, plateau
            self.length = max(1, min(max(math.ceil(self.anneal * step), self.min_length), self.cap - step))

    def after(self, step: int) -> bool:
        """Call after optimizer step ``step``: set the rate of the next one; True when the decay has ended."""
        if self.start is None and step >= self.latest:
            self.begin(step, plateau=False)
        if self.start is None:
            return False
        progress = min(1.0, (step - self.start) / self.length)
        factor = self.floor + (1 - self.floor) * (1 + math.cos(math.pi * progress)) / 2
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        return step >= self.start + self.length


def synchronize(device) -> None:
    """Wait for queued GPU work, so that a host clock measures it (nothing to do on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class PeakRSS:
    """Context manager: the largest increase of this process's resident memory (MiB) while it is open.

    A daemon thread reads ``/proc/self/statm`` every ``interval`` seconds; on systems without it ``peak_mib`` is NaN.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak_mib = interval, math.nan
        self._page = 4096
        self._stop = threading.Event()

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:
            return None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            current = self._rss()
            if current is not None:
                self._high = max(self._high, current)

    def __enter__(self) -> PeakRSS:
        import resource

        self._page = resource.getpagesize()
        self._start = self._rss()
        self._high = self._start or 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._start is not None:
            self.peak_mib = (max(self._high, self._rss() or 0) - self._start) / 2**20


# ----------------------------------------------------------------------------------------------- objectives
class Regression:
    """Mean squared error of ``model(inputs)`` against ``targets``."""

    def loss(self, model: nn.Module, inputs, targets, generator: torch.Generator) -> torch.Tensor:
        return nn.functional.mse_loss(model(inputs), targets)

    def zero_loss(self, split: Split) -> float:
        """The loss of a model that predicts zero."""
        return float((split.targets.double() ** 2).mean())


class FlowMatching:
    r"""Conditional flow matching: ``X_k = (1 - k) X_0 + k X_1``, regress ``V = X_1 - X_0`` from ``(X_k, Z, k)``.

    ``X_0`` is standard normal noise (invariant in distribution under any orthogonal representation, so the
    learned velocity field can be equivariant), ``k ~ U(0, 1)``, and the model receives ``opt_step = k * time_scale``.
    Evaluation uses noise and times drawn from a fixed seed, so every model is scored on the same problems.
    """

    def __init__(self, time_scale: float = 100.0) -> None:
        self.time_scale = time_scale

    def loss(self, model: nn.Module, cond, future, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(future.shape, generator=generator).to(future)
        k = torch.rand(future.shape[0], generator=generator).to(future)
        x_k = (1 - k[:, None, None]) * noise + k[:, None, None] * future
        return nn.functional.mse_loss(model(x_k, k * self.time_scale, cond), future - noise)

    def zero_loss(self, split: Split) -> float:
        """The loss of a velocity field that is zero everywhere, with the evaluation's noise (see :func:`evaluate`)."""
        return evaluate(lambda x_k, k, cond: torch.zeros_like(x_k), self, split)


def _batches(split: Split, size: int):
    for start in range(0, len(split), size):
        yield split.inputs[start : start + size], split.targets[start : start + size]


@torch.no_grad()
def evaluate(model: nn.Module, objective, split: Split, batch_size: int = 256, seed: int = 12345) -> float:
    """Mean loss over ``split`` in eval mode, with the objective's randomness drawn from ``seed``."""
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for inputs, targets in _batches(split, batch_size):
        total += objective.loss(model, inputs, targets, generator).item() * inputs.shape[0]
    if was_training:
        model.train()
    return total / len(split)


def _subset(split: Split, size: int) -> Split:
    return Split(split.inputs[:size], split.targets[:size])


# ----------------------------------------------------------------------------------------------- augmentation
class GroupAugmentation:
    """Applies an independent uniformly drawn group element to each sample's inputs and targets."""

    def __init__(self, elements, in_rep: Representation, out_rep: Representation) -> None:
        self.r_in = torch.stack([torch.as_tensor(np.asarray(in_rep(g)), dtype=torch.float32) for g in elements])
        self.r_out = torch.stack([torch.as_tensor(np.asarray(out_rep(g)), dtype=torch.float32) for g in elements])

    def __call__(self, inputs, targets, generator: torch.Generator):
        index = torch.randint(len(self.r_in), (inputs.shape[0],), generator=generator)
        r_in, r_out = self.r_in[index].to(inputs), self.r_out[index].to(targets)
        if inputs.dim() == 3:  # (B, T, D): one element per sequence
            return inputs @ r_in.mT, targets @ r_out.mT
        return (r_in @ inputs[..., None])[..., 0], (r_out @ targets[..., None])[..., 0]


# ----------------------------------------------------------------------------------------------- the loop
def fit(
    model: nn.Module,
    objective,
    splits: dict[str, Split],
    config: TrainConfig,
    seed: int,
    *,
    augment: Callable | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    on_eval: Callable[[int], list[tuple[str, float]]] | None = None,
) -> list[dict]:
    """Train ``model`` with AdamW until its validation loss plateaus (:class:`PlateauThenAnneal`, at most
    ``config.steps`` steps), restore the best-validation weights, and return the long-form rows.

    ``on_eval(step)`` may return extra ``(metric, value)`` pairs logged at every evaluation.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = PlateauThenAnneal(optimizer, config.steps, config.anneal, min_length=config.eval_every)
    train, val = splits["train"], _subset(splits["val"], config.eval_size)
    test = _subset(splits["test"], config.eval_size)
    rows: list[dict] = []
    stopper = PlateauDetector(config.patience, config.min_delta)
    best: dict = {}

    def log(step: int, wall: float, metric: str, value: float) -> None:
        rows.append({"step": step, "wall_time": wall, "metric": metric, "value": float(value)})

    def log_eval(step: int, wall: float, train_loss: float) -> bool:
        val_loss, test_loss = evaluate(model, objective, val), evaluate(model, objective, test)
        log(step, wall, "train_loss", train_loss)
        log(step, wall, "val_loss", val_loss)
        log(step, wall, "test_loss", test_loss)
        for metric, value in on_eval(step) if on_eval else ():
            log(step, wall, metric, value)
        plateau = stopper.update(step, val_loss)
        if stopper.best_step == step and math.isfinite(val_loss):
            best.update(step=step, val=val_loss, test=test_loss, train=train_loss,
                        state=copy.deepcopy(model.state_dict()))  # fmt: skip
        return plateau

    model.train()
    log_eval(0, 0.0, evaluate(model, objective, _subset(train, config.eval_size)))
    wall, running, count, diverged, step = 0.0, 0.0, 0, False, 0
    with PeakRSS() as memory:
        for step in range(1, config.steps + 1):
            index = torch.randint(len(train), (config.batch_size,), generator=generator)
            inputs, targets = train.inputs[index], train.targets[index]
            if augment is not None:
                inputs, targets = augment(inputs, targets, generator)
            synchronize(inputs.device)
            start = time.perf_counter()
            loss = objective.loss(model, inputs, targets, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decayed = schedule.after(step)
            synchronize(inputs.device)
            wall += time.perf_counter() - start
            value = loss.item()
            diverged = diverged or not math.isfinite(value)
            running, count = running + value, count + 1
            if diverged or decayed or step % config.eval_every == 0 or step == config.steps:
                if log_eval(step, wall, running / count) and step < config.steps:
                    schedule.begin(step)
                running, count = 0.0, 0
                if diverged or decayed:
                    break
    if best:
        model.load_state_dict(best["state"])
    log(step, wall, "best_step", best.get("step", math.nan))
    log(step, wall, "best_val_loss", best.get("val", math.nan))
    log(step, wall, "best_test_loss", best.get("test", math.nan))
    log(step, wall, "best_train_loss", best.get("train", math.nan))
    log(step, wall, "stopped_step", step)
    log(step, wall, "anneal_step", math.nan if schedule.start is None else schedule.start)
    log(step, wall, "plateaued", float(schedule.plateaued))
    log(step, wall, "zero_predictor_loss", objective.zero_loss(test))
    log(step, wall, "time_per_step_ms", 1000 * wall / max(step, 1))
    log(step, wall, "peak_train_rss_mib", memory.peak_mib)
    log(step, wall, "diverged", float(diverged))
    log(step, wall, "params", sum(p.numel() for p in model.parameters() if p.requires_grad))
    log(step, wall, "infer_ms_per_batch", inference_ms(model, objective, test, config.batch_size))
    return rows


@torch.no_grad()
def inference_ms(model: nn.Module, objective, split: Split, batch_size: int, repeats: int = 20) -> float:
    """Median milliseconds of one eval-mode, no-grad loss evaluation on a batch (model forward dominates)."""
    was_training = model.training
    model.eval()
    inputs, targets = split.inputs[:batch_size], split.targets[:batch_size]
    generator = torch.Generator().manual_seed(0)
    objective.loss(model, inputs, targets, generator)  # warm-up (fills weight caches)
    times = []
    for _ in range(repeats):
        synchronize(inputs.device)
        start = time.perf_counter()
        objective.loss(model, inputs, targets, generator)
        synchronize(inputs.device)
        times.append(time.perf_counter() - start)
    model.train(was_training)
    return 1000 * float(np.median(times))
