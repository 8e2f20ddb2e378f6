"""Default strategy: expand block by block in isotypic coordinates, then apply the structured change of basis."""

from __future__ import annotations

import numpy as np
import torch

from ..change_of_basis import StructuredChangeOfBasis
from .base import HomBasisStrategy
from .space import HomSpace


class IsotypicExpansion(HomBasisStrategy):
    """Stores only per-irrep endomorphism bases, a scatter index and the change-of-basis blocks.

    ``expand`` forms each isotypic block ``sum_b Theta_b (x) E_b`` (``O(nnz * e)``), scatters the blocks into a
    zero matrix in local spectral order, and multiplies by the block-structured ``Q_out`` and ``Q_in^T``
    (``O(D_out * D_in * s)`` for blocks of size ``s``; free for permutation representations).
    """

    name = "isotypic_expansion"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, **unused) -> None:
        super().__init__(space)
        self.codomain_cob = StructuredChangeOfBasis(space.codomain, device=device, dtype=dtype)
        self.domain_cob = StructuredChangeOfBasis(space.domain, device=device, dtype=dtype)
        out_pos, in_pos = self.codomain_cob.local_position, self.domain_cob.local_position
        index, self._segments, start = [], [], 0
        for k, s in enumerate(space.shared):
            rows = out_pos[s.out.columns]  # (m_out, d)
            cols = in_pos[s.inp.columns]  # (m_in, d)
            flat = rows[:, :, None, None] * self.in_size + cols[None, None, :, :]
            index.append(flat.reshape(-1))
            self.register_constant(f"endo_{k}", s.out.endomorphisms, device=device, dtype=dtype)
            self._segments.append((s.dof_slice, s.shape, s.out.dim, start, flat.size))
            start += flat.size
        self.nnz = start
        self.register_constant("scatter_index", np.concatenate(index) if index else np.zeros(0), device=device)

    def _blocks(self, dof: torch.Tensor) -> torch.Tensor:
        values = []
        for k, (dof_slice, shape, _, _, _) in enumerate(self._segments):
            theta = dof[dof_slice].view(shape)
            values.append(torch.einsum("ijb,bpq->ipjq", theta, getattr(self, f"endo_{k}")).reshape(-1))
        return torch.cat(values)

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        flat = dof.new_zeros(self.out_size * self.in_size).index_put((self.scatter_index,), self._blocks(dof))
        w = flat.view(self.out_size, self.in_size)
        w = self.domain_cob.from_spectral(w)  # W_spec Q_in^T
        return self.codomain_cob.from_spectral(w.mT).mT  # Q_out W_spec Q_in^T

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        z = self.domain_cob.to_spectral(matrix)  # G Q_in
        z = self.codomain_cob.to_spectral(z.mT).mT  # Q_out^T G Q_in
        values = z.reshape(-1).take(self.scatter_index)
        coefs = []
        for k, (_, (m_out, m_in, _), d, start, count) in enumerate(self._segments):
            block = values[start : start + count].view(m_out, d, m_in, d)
            coefs.append(torch.einsum("ipjq,bpq->ijb", block, getattr(self, f"endo_{k}")).reshape(-1))
        return torch.cat(coefs)

    def expand_macs(self) -> int:
        e_sum = sum(count * shape[2] for _, shape, _, _, count in self._segments)
        cob = self.out_size * self.domain_cob.multiply_adds_per_vector()
        cob += self.in_size * self.codomain_cob.multiply_adds_per_vector()
        return e_sum + cob
