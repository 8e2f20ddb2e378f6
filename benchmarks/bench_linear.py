"""asv suite of the linear family: eLinear (every strategy), the peer escnn.nn.Linear and impose_linear_equivariance,
against nn.Linear.

Features are ``(batch, D)`` with ``D`` a whole number of regular representations of the group (``D`` near
``features``); the input requires grad. The ``Linear`` cells are defined once in ``cases.py`` (``cases.linear``),
shared with ``linear_family.py`` and ``decision_maps.py``. See ``_asv_common`` for the metrics and the conventions.
"""

from __future__ import annotations

from torch import nn

from symm_layers import impose_linear_equivariance

from . import cases
from ._asv_common import (
    BASELINE,
    DEVICES,
    GROUPS,
    LINEAR_STRATEGIES,
    Case,
    FamilySuite,
    grid,
    regular_rep,
    require_dense_basis,
)

#: The small grid (make results) keeps D = 256 (~0.3 ms eval calls at B = 256): the cells on which make results
#: compares asv with linear_family.py (``agreement.py``).
FEATURES = grid([64, 256], [64, 256, 1024], small=[256])
BATCHES = grid([256], [8, 256])


class Linear(FamilySuite):
    """``eLinear(rep, rep)`` per basis expansion and weight cache, beside ``nn.Linear(D, D)`` and
    ``escnn.nn.Linear`` (impl ``"escnn"``)."""

    params = [LINEAR_STRATEGIES, GROUPS, FEATURES, BATCHES, DEVICES]
    param_names = ["impl", "group", "features", "batch", "device"]

    @staticmethod
    def make_case(impl, group, features, batch, device) -> Case:
        require_dense_basis(impl, (regular_rep(group, features),) * 2)
        return cases.linear(impl, group, features, device=device).case(batch, device=device)


class ImposedLinear(FamilySuite):
    """``nn.Linear`` constrained in place by ``impose_linear_equivariance`` (a projection at every weight access)."""

    params = [[BASELINE, "isotypic_expansion", "memory_heavy"], GROUPS, FEATURES, BATCHES, DEVICES]
    param_names = ["impl", "group", "features", "batch", "device"]

    @staticmethod
    def make_case(impl, group, features, batch, device) -> Case:
        if impl == BASELINE:
            return cases.linear(BASELINE, group, features, device=device).case(batch, device=device)
        rep = regular_rep(group, features)
        require_dense_basis(impl, (rep, rep))

        def construct() -> nn.Linear:
            layer = nn.Linear(rep.size, rep.size, device=device)
            impose_linear_equivariance(layer, rep, rep, basis_expansion_scheme=impl)
            return layer

        return cases.Subject(construct, cases.linear(BASELINE, group, features).call, rep).case(batch, device=device)
