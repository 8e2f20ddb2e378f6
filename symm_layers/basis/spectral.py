"""Hom_G in spectral coordinates: ``W_spec = Q_out^T W Q_in`` is one gather from the DoFs, for any representation.

In the spectral bases the canonical element ``(k, i, j, b)`` is the endomorphism ``E_k,b`` placed on the rows of
output copy ``i`` and the columns of input copy ``j`` of irrep ``k`` (see :mod:`.space`). The orthonormal
endomorphism bases of real, complex and quaternionic irreps have disjoint supports, so every entry of ``W_spec`` is
one DoF times a constant (or zero): ``W_spec = dof_ext[index] * coef``. This is the weight of a layer whose
features stay in the spectral layout (:mod:`symm_layers.layout`); it is compared with ``Q_out^T W_ref Q_in`` in the
tests.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import HomBasisStrategy
from .space import HomSpace


class SpectralGather(HomBasisStrategy):
    """``expand(dof)`` is the weight in spectral coordinates (rows ``out_rep.irreps`` order, columns ``in_rep``)."""

    name = "spectral_gather"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, **unused) -> None:
        super().__init__(space)
        index = np.full(self.out_size * self.in_size, space.dim, dtype=np.int64)  # space.dim: a zero slot
        coef = np.zeros(self.out_size * self.in_size)
        for s in space.shared:
            m_out, m_in, e = s.shape
            for b, p, q in zip(*np.nonzero(np.abs(s.out.endomorphisms) > 1e-12), strict=True):
                rows = s.out.columns[:, p][:, None]  # (m_out, 1)
                cols = s.inp.columns[:, q][None, :]  # (1, m_in)
                flat = (rows * self.in_size + cols).reshape(-1)
                if (index[flat] != space.dim).any():
                    raise ValueError("endomorphism basis elements overlap; spectral_gather needs disjoint supports")
                i, j = np.meshgrid(np.arange(m_out), np.arange(m_in), indexing="ij")
                index[flat] = (s.offset + (i * m_in + j) * e + b).reshape(-1)
                coef[flat] = s.out.endomorphisms[b, p, q]
        self.register_constant("index", index, device=device)
        self.register_constant("coef", coef, device=device, dtype=dtype)

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        extended = torch.cat([dof, dof.new_zeros(*dof.shape[:-1], 1)], dim=-1)
        w = extended.index_select(-1, self.index) * self.coef
        return w.view(*dof.shape[:-1], self.out_size, self.in_size)

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        lead = matrix.shape[:-2]
        flat = matrix.reshape(*lead, self.out_size * self.in_size) * self.coef
        sums = flat.new_zeros(*lead, self.dim + 1).index_add_(-1, self.index, flat)
        return sums[..., : self.dim]

    def expand_batch(self, dof: torch.Tensor) -> torch.Tensor:
        return self.expand(dof)  # leading dimensions are native here

    def adjoint_batch(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.adjoint(matrix)

    def expand_macs(self) -> int:
        return self.out_size * self.in_size


class FoldedGather(HomBasisStrategy):
    """The weight between mixed layouts: ``W_spec`` with the change of basis folded into its spatial side.

    ``in_layout="spectral", out_layout="spatial"`` gives ``Q_out W_spec`` (a map from spectral features into a
    representation's own basis, e.g. before a pointwise activation); the reverse gives ``W_spec Q_in^T``. Folding
    costs ``D_out * D_in * s`` per expansion (``s`` the block size of ``Q``) and nothing per row, and an eval-mode
    cache makes it free, while converting the activations instead costs ``D * s`` per row on every call.
    """

    name = "folded_gather"

    def __init__(self, space: HomSpace, in_layout: str, out_layout: str, *, device=None, dtype=None) -> None:
        super().__init__(space)
        from ..layout import SpectralCoordinates  # the layout module builds on this package's siblings

        if in_layout == out_layout:
            raise ValueError("FoldedGather is for mixed layouts; use SpectralGather or a spatial strategy")
        self.in_layout, self.out_layout = in_layout, out_layout
        self.spectral = SpectralGather(space, device=device, dtype=dtype)
        rep_of = {"in": space.domain, "out": space.codomain}
        side = "out" if out_layout == "spatial" else "in"
        self.coords = SpectralCoordinates.from_decomposition(rep_of[side], device=device, dtype=dtype)

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        w = self.spectral.expand(dof)
        if self.out_layout == "spatial":  # Q_out W_spec: every column is an output vector
            return self.coords.from_spectral(w.mT).mT
        return self.coords.from_spectral(w)  # W_spec Q_in^T: every row is a covector on the input

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        if self.out_layout == "spatial":
            return self.spectral.adjoint(self.coords.to_spectral(matrix.mT).mT)
        return self.spectral.adjoint(self.coords.to_spectral(matrix))

    def expand_batch(self, dof: torch.Tensor) -> torch.Tensor:
        return self.expand(dof)

    def adjoint_batch(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.adjoint(matrix)

    def expand_macs(self) -> int:
        return self.out_size * self.in_size + self.out_size * self.in_size * max(self.coords.block_size, 1)
