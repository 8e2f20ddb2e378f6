"""Property test: random sequences of everyday torch idioms never make a layer disagree with an uncached twin.

Each sequence (seeded) draws actions: train/eval; a forward under grad / no_grad / inference_mode; one step of an
optimizer in its for-loop, foreach or fused form (all four optimizers support ``fused=True`` on CPU in torch
2.13); in-place edits through the parameter, ``.data``, ``.detach()``, a numpy view and ``torch._foreach_*`` EMA
updates; ``torch.optim.swa_utils.AveragedModel`` updates; ``load_state_dict`` (also ``assign=True``); dtype moves;
deepcopy. After every action the layer (and an averaged copy, once there is one) is compared with a twin built
with ``weight_cache="uncached"`` and loaded with the same state dict.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from layer_zoo import LAYERS, build, output
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from symm_layers import BASIS_STRATEGIES, WEIGHT_CACHE_MODES

STRATEGIES = [s for s in BASIS_STRATEGIES if s != "reference"]
#: Layers holding an eLinear: the basis strategy matters; the others take the default strategy only.
WITHOUT_ELINEAR = {"InvariantBias", "eAffine", "eRMSNorm", "eLayerNorm", "eBatchNorm"}
OPTIMIZERS = [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad]
FORMS = [{"foreach": False}, {"foreach": True}, {"fused": True}]
ACTIONS_PER_SEQUENCE = 8

CASES = [
    (name, strategy, cache)
    for name in LAYERS
    for strategy in (STRATEGIES if name not in WITHOUT_ELINEAR else STRATEGIES[:1])
    for cache in WEIGHT_CACHE_MODES
]


class Run:
    """The layer under test, its inputs, an optional averaged copy, and the random source of one sequence."""

    def __init__(self, name: str, strategy: str, cache: str, seed: int) -> None:
        self.name, self.strategy = name, strategy
        self.action_rng, self.rng = random.Random(seed), random.Random(seed + 1)  # actions; choices within them
        torch.manual_seed(seed)
        self.module, self.inputs = build(name, basis=strategy, cache=cache)
        self.averaged: AveragedModel | None = None
        self.twins: dict[torch.dtype, torch.nn.Module] = {}
        self.log: list[str] = []

    def twin(self, module):
        """The uncached twin holding ``module``'s state, in its mode."""
        dtype = next(module.parameters()).dtype
        if dtype not in self.twins:
            self.twins[dtype] = build(self.name, basis=self.strategy, cache="uncached", dtype=dtype)[0]
        twin = self.twins[dtype]
        twin.load_state_dict(module.state_dict())
        return twin.train(module.training)

    def args(self, module):
        dtype = next(module.parameters()).dtype
        return tuple(t.to(dtype) if t.is_floating_point() else t for t in self.inputs)

    def params(self, module=None):
        return [p for p in (module or self.module).parameters()]


def _forward(module, args, grad_mode: str):
    if grad_mode == "inference_mode":
        with torch.inference_mode():
            return output(module, args).clone()
    with torch.set_grad_enabled(grad_mode == "grad"):
        return output(module, args).detach()


def _check(run: Run, module) -> None:
    grad_mode = run.rng.choice(["grad", "no_grad", "inference_mode"])
    expected = _forward(run.twin(module), run.args(module), grad_mode)  # the twin's copy of the state first
    got = _forward(module, run.args(module), grad_mode)
    torch.testing.assert_close(got, expected, msg=lambda m: f"after {run.log}: {m}")


# ------------------------------------------------------------------------------------------------ actions
def toggle_mode(run: Run) -> None:
    run.module.train(not run.module.training)


def forward(run: Run) -> None:
    _forward(run.module, run.args(run.module), run.rng.choice(["grad", "no_grad", "inference_mode"]))


def optimizer_step(run: Run) -> None:
    cls, form = run.rng.choice(OPTIMIZERS), run.rng.choice(FORMS)
    run.log[-1] += f"({cls.__name__}, {form})"
    optimizer = cls(run.module.parameters(), lr=0.05, **form)
    training = run.module.training
    run.module.train()
    output(run.module, run.args(run.module)).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()
    run.module.train(training)


def _pick(run: Run) -> torch.nn.Parameter:
    return run.rng.choice(run.params())


def edit_parameter(run: Run) -> None:
    with torch.no_grad():
        _pick(run).mul_(-0.7)


def edit_data(run: Run) -> None:
    p = _pick(run)
    p.data.add_(0.1 * torch.randn_like(p))


def edit_detached(run: Run) -> None:
    p = _pick(run)
    p.detach().add_(0.1 * torch.randn_like(p))


def edit_numpy(run: Run) -> None:
    p = _pick(run)
    p.detach().numpy()[...] += 0.1 * torch.randn_like(p).numpy()


def foreach_ema(run: Run) -> None:
    params = run.params()
    targets = [torch.randn_like(p) for p in params]
    with torch.no_grad():
        torch._foreach_mul_(params, 0.9)
        torch._foreach_add_(params, targets, alpha=0.1)


def averaged_model(run: Run) -> None:
    if run.averaged is None:
        run.averaged = AveragedModel(run.module, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    averaged = run.averaged.module
    _forward(averaged.eval(), run.args(averaged), "no_grad")  # fill its caches, then update
    with torch.no_grad():
        for p in run.params():
            p.add_(0.2 * torch.randn_like(p))
    run.averaged.update_parameters(run.module)
    _check(run, averaged)


def load_state(run: Run) -> None:
    assign = run.rng.random() < 0.5
    run.log[-1] += f"(assign={assign})"
    state = {
        k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v for k, v in run.module.state_dict().items()
    }
    run.module.load_state_dict(state, assign=assign)


def move_dtype(run: Run) -> None:
    run.module = run.module.float() if next(run.module.parameters()).dtype == torch.float64 else run.module.double()
    run.averaged = None  # its averaged parameters keep the old dtype


def deepcopy(run: Run) -> None:
    run.module = copy.deepcopy(run.module)


ACTIONS = [
    toggle_mode,
    forward,
    optimizer_step,
    edit_parameter,
    edit_data,
    edit_detached,
    edit_numpy,
    foreach_ema,
    averaged_model,
    load_state,
    move_dtype,
    deepcopy,
]


@pytest.mark.parametrize(("name", "strategy", "cache"), CASES)
def test_random_idiom_sequences_match_the_uncached_twin(name, strategy, cache):
    seed = sum(map(ord, f"{name}/{strategy}/{cache}"))
    run = Run(name, strategy, cache, seed)
    _forward(run.module.eval(), run.args(run.module), "no_grad")  # start with a filled cache
    for _ in range(ACTIONS_PER_SEQUENCE):
        action = run.action_rng.choice(ACTIONS)
        run.log.append(action.__name__)
        action(run)
        _check(run, run.module)


def test_sequences_cover_every_action():
    """The seeded sequences above draw every action at least once (so each path is exercised)."""
    drawn = set()
    for name, strategy, cache in CASES:
        rng = random.Random(sum(map(ord, f"{name}/{strategy}/{cache}")))
        drawn.update(rng.choice(ACTIONS).__name__ for _ in range(ACTIONS_PER_SEQUENCE))
    assert drawn == {a.__name__ for a in ACTIONS}
