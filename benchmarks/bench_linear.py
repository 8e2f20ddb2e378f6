"""asv suite of the linear family: eLinear (every strategy) and impose_linear_equivariance, against nn.Linear.

Features are ``(batch, D)`` with ``D`` a whole number of regular representations of the group (``D`` near
``features``). See ``_asv_common`` for the metrics and the conventions.
"""

from __future__ import annotations

from torch import nn

from symm_layers import eLinear, impose_linear_equivariance

from ._asv_common import (
    BASELINE,
    DEVICES,
    GROUPS,
    STRATEGIES,
    Case,
    FamilySuite,
    grid,
    make_case,
    randn,
    regular_rep,
    require_dense_basis,
    strategy,
)

FEATURES = grid([64, 256], [64, 256, 1024])
BATCHES = grid([256], [8, 256])


def _apply(module: nn.Module, x):
    return module(x)


def _features_case(construct, rep, batch: int, device: str, equivariant: bool) -> Case:
    x = randn(batch, rep.size, device=device)
    if not equivariant:
        return make_case(construct, _apply, (x,))
    return make_case(construct, _apply, (x,), on_features=_apply, probe=x[:8], reps=(rep, rep))


class Linear(FamilySuite):
    """``eLinear(rep, rep)`` per basis expansion and weight cache, beside ``nn.Linear(D, D)``."""

    params = [STRATEGIES, GROUPS, FEATURES, BATCHES, DEVICES]
    param_names = ["impl", "group", "features", "batch", "device"]

    @staticmethod
    def make_case(impl, group, features, batch, device) -> Case:
        rep = regular_rep(group, features)
        if impl == BASELINE:
            return _features_case(lambda: nn.Linear(rep.size, rep.size, device=device), rep, batch, device, False)
        require_dense_basis(impl, (rep, rep))
        options = strategy(impl)
        return _features_case(lambda: eLinear(rep, rep, device=device, **options), rep, batch, device, True)


class ImposedLinear(FamilySuite):
    """``nn.Linear`` constrained in place by ``impose_linear_equivariance`` (a projection at every weight access)."""

    params = [[BASELINE, "isotypic_expansion", "memory_heavy"], GROUPS, FEATURES, BATCHES, DEVICES]
    param_names = ["impl", "group", "features", "batch", "device"]

    @staticmethod
    def make_case(impl, group, features, batch, device) -> Case:
        rep = regular_rep(group, features)
        if impl == BASELINE:
            return _features_case(lambda: nn.Linear(rep.size, rep.size, device=device), rep, batch, device, False)
        require_dense_basis(impl, (rep, rep))

        def construct() -> nn.Linear:
            layer = nn.Linear(rep.size, rep.size, device=device)
            impose_linear_equivariance(layer, rep, rep, basis_expansion_scheme=impl)
            return layer

        return _features_case(construct, rep, batch, device, True)
