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
