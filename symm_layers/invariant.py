"""Invariant vectors of a representation: the subspace on its trivial irrep copies, and the bias living there."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from escnn.group import Representation
from torch import nn

from ._constants import ConstantsModule
from ._types import Layout, WeightCacheMode
from .cache import resolve_weight_cache
from .change_of_basis import StructuredChangeOfBasis
from .layout import check_layout
from .module import EquivariantModule
from .reps import check_representations, decompose

#: Largest ``size * dim`` for which the invariant subspace keeps its basis as one dense matrix (16 MiB float32).
DENSE_FIX_MAX_ENTRIES = 1 << 22


class InvariantSubspace(ConstantsModule):
    """Maps coefficients on the trivial irrep copies of a representation to invariant vectors, and back.

    The map is ``b = Q_fix theta`` with ``Q_fix`` the columns of the change of basis on the trivial copies; it is
    stored dense (one matrix-vector product per call) unless that would exceed :data:`DENSE_FIX_MAX_ENTRIES`.
    """

    def __init__(self, rep: Representation, *, layout: Layout = "spatial", device=None, dtype=None) -> None:
        super().__init__()
        self.layout = check_layout(layout)
        decomposition = decompose(rep)
        trivial = decomposition.trivial_type()
        self.size = rep.size
        self.dim = 0 if trivial is None else trivial.multiplicity
        self.change = StructuredChangeOfBasis(decomposition, device=device, dtype=dtype)
        positions = self.change.local_position[trivial.columns[:, 0]] if trivial is not None else np.zeros(0)
        self.register_constant("positions", positions, device=device)
        columns = trivial.columns[:, 0] if trivial is not None else np.zeros(0, dtype=np.int64)
        self.register_constant("trivial_columns", columns, device=device)
        self.is_dense = self.size * self.dim <= DENSE_FIX_MAX_ENTRIES
        if self.is_dense:
            basis = decomposition.change_of_basis if layout == "spatial" else np.eye(self.size)
            self.register_constant("fix_basis", basis[:, columns], device=device, dtype=dtype)

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> invariant vectors ``(..., size)`` in the subspace's layout."""
        if self.is_dense:
            basis = self._buffers["fix_basis"]  # read from the dict: this runs on every training call
            return torch.mv(basis, dof) if dof.dim() == 1 else F.linear(dof, basis)
        if self.layout == "spectral":
            return dof.new_zeros(*dof.shape[:-1], self.size).index_copy(-1, self.trivial_columns, dof)
        spectral = dof.new_zeros(*dof.shape[:-1], self.size).index_copy(-1, self.positions, dof)
        return self.change.from_spectral(spectral)

    def spatial_matrix(self) -> torch.Tensor | None:
        """``Q_fix`` (``size x dim``) when the subspace is stored dense in the spatial layout, else ``None``."""
        return self._buffers["fix_basis"] if self.is_dense and self.layout == "spatial" else None

    def adjoint(self, vector: torch.Tensor) -> torch.Tensor:
        """Coefficients of the orthogonal projection of ``vector`` onto the invariant subspace."""
        if self.is_dense:
            return vector @ self.fix_basis
        if self.layout == "spectral":
            return vector.index_select(-1, self.trivial_columns)
        return self.change.to_spectral(vector).index_select(-1, self.positions)


class InvariantBias(EquivariantModule):
    r"""A learnable bias constrained to the invariant subspace of ``in_rep``.

    .. math::
        y = x + b, \qquad \rho(g) b = b \;\; \forall g

    Only the trivial-irrep coordinates of the spectral basis carry DoFs, so :math:`b` is invariant by
    construction. Without a trivial irrep the module is the identity and owns no parameter.

    Args:
        in_rep: representation of the features.
        weight_cache: ``"cached"`` (reuse the expanded bias while ``bias_dof`` is unchanged) or ``"uncached"``.
        init_scheme: ``"zeros"`` or ``"uniform"`` (``U(-1/sqrt(D), 1/sqrt(D))`` per DoF); ``None`` skips it.
        layout: ``"spatial"`` (features in ``in_rep``'s basis) or ``"spectral"`` (``Q^T x``, see
            :mod:`symm_layers.layout`; the bias then lives on the trivial coordinates).

    Shape:
        ``(..., in_rep.size)`` -> same.
    """

    def __init__(
        self,
        in_rep: Representation,
        *,
        weight_cache: WeightCacheMode = "cached",
        init_scheme: str | None = "zeros",
        layout: Layout = "spatial",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep)
        self.in_rep = self.out_rep = in_rep
        self.subspace = InvariantSubspace(in_rep, layout=layout, device=device, dtype=dtype)
        self.weight_cache = resolve_weight_cache(weight_cache)
        self.has_bias = self.subspace.dim > 0
        if self.has_bias:
            self.bias_dof = nn.Parameter(torch.empty(self.subspace.dim, device=device, dtype=dtype))
        else:
            self.register_parameter(name="bias_dof", param=None)
        if init_scheme is not None:
            self.reset_parameters(init_scheme)

    @torch.no_grad()
    def reset_parameters(self, scheme: str = "zeros") -> None:
        if not self.has_bias:
            return
        if scheme == "zeros":
            self.bias_dof.zero_()
        elif scheme == "uniform":
            bound = 1.0 / math.sqrt(self.in_rep.size)
            self.bias_dof.uniform_(-bound, bound)
        else:
            raise ValueError(f"unknown bias init_scheme {scheme!r}; choose 'zeros' or 'uniform'")

    @property
    def bias(self) -> torch.Tensor | None:
        if not self.has_bias:
            return None
        return self.weight_cache.weight(self.subspace, self.bias_dof)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_features(x)
        return x if not self.has_bias else x + self.weight_cache.value(self.subspace, self.bias_dof)

    def export(self) -> nn.Module:
        size = self.in_rep.size
        dtype = self.bias_dof.dtype if self.has_bias else torch.get_default_dtype()
        lin = nn.Linear(size, size, bias=True, device=self.subspace.positions.device, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(size))
            lin.bias.copy_(self.bias if self.has_bias else torch.zeros(size))
        return lin

    def extra_repr(self) -> str:
        return f"in_rep={self.in_rep.name}, size={self.in_rep.size}, bias_dofs={self.subspace.dim}"
