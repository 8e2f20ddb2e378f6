"""asv suite of the normalisations: eRMSNorm, eLayerNorm, eBatchNorm against their plain-torch twins.

The ``norm`` axis takes the names of ``symm_layers.NORM_MODULES``; ``impl="torch"`` is the twin listed there
(``nn.RMSNorm``, ``nn.LayerNorm``, ``BatchNormLastDim``). Features are ``(batch, D)``, ``D`` a whole number of
regular representations. See ``_asv_common`` for the metrics and the conventions.
"""

from __future__ import annotations

from torch import nn

from symm_layers import NORM_MODULES

from ._asv_common import (
    BASELINE,
    DEVICES,
    GROUPS,
    PLAIN_OR_EQUIVARIANT,
    Case,
    FamilySuite,
    grid,
    make_case,
    randn,
    regular_rep,
)

EPS = 1e-5


def _apply(module: nn.Module, x):
    return module(x)


class Norm(FamilySuite):
    """One normalisation per ``norm``, equivariant or plain, on ``(batch, D)`` features."""

    params = [PLAIN_OR_EQUIVARIANT, list(NORM_MODULES), GROUPS, grid([64, 256], [64, 256, 1024]), grid([256], [8, 256]),
              DEVICES]  # fmt: skip
    param_names = ["impl", "norm", "group", "features", "batch", "device"]

    @staticmethod
    def make_case(impl, norm, group, features, batch, device) -> Case:
        rep = regular_rep(group, features)
        equivariant_cls, plain_cls = NORM_MODULES[norm]
        x = randn(batch, rep.size, device=device)
        if impl == BASELINE:
            return make_case(lambda: plain_cls(rep.size, eps=EPS, device=device), _apply, (x,))
        construct = lambda: equivariant_cls(rep, eps=EPS, device=device)  # noqa: E731
        return make_case(construct, _apply, (x,), on_features=_apply, probe=x[:8], reps=(rep, rep))
