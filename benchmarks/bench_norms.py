"""asv suite of the normalisations: eRMSNorm, eLayerNorm, eBatchNorm against their plain-torch twins.

The ``norm`` axis takes the names of ``symm_layers.NORM_MODULES``; ``impl="torch"`` is the twin listed there
(``nn.RMSNorm``, ``nn.LayerNorm``, ``BatchNormLastDim``), ``"equivariant"`` the layer with its default per-irrep-copy
affine and ``"diagonal"`` with ``affine="diagonal"`` (RMS and layer norm only: eBatchNorm has no such choice).
Features are ``(batch, D)``, ``D`` a whole number of regular representations, the input requiring grad; the cells are
defined once in ``cases.py`` (``cases.norm``), shared with ``decision_maps.py``. See ``_asv_common`` for the metrics
and the conventions.
"""

from __future__ import annotations

from symm_layers import NORM_MODULES

from . import cases
from ._asv_common import BASELINE, DEVICES, EQUIVARIANT, GROUPS, Case, FamilySuite, grid

#: impl -> the equivariant layer's keyword arguments (``None``: the plain twin).
NORM_IMPLS = {BASELINE: None, EQUIVARIANT: {}, "diagonal": {"affine": "diagonal"}}


class Norm(FamilySuite):
    """One normalisation per ``norm``, equivariant (per affine) or plain, on ``(batch, D)`` features."""

    params = [list(NORM_IMPLS), list(NORM_MODULES), GROUPS, grid([64, 256], [64, 256, 1024]), grid([256], [8, 256]),
              DEVICES]  # fmt: skip
    param_names = ["impl", "norm", "group", "features", "batch", "device"]

    @staticmethod
    def make_case(impl, norm, group, features, batch, device) -> Case:
        options = NORM_IMPLS[impl]
        if options and norm not in cases.AFFINE_NORMS:
            raise NotImplementedError(f"{NORM_MODULES[norm][0].__name__} has no affine strategy")
        subject = cases.norm(impl if options is None else "equivariant", norm, group, features, device=device,
                             **(options or {}))  # fmt: skip
        return subject.case(batch, device=device)
