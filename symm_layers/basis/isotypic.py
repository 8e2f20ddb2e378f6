"""Default strategy: work block by block in isotypic coordinates with the structured change of basis.

It never stores a dense basis. Two exact execution paths share its constants:

* *expanded*: form ``W = Q_out blockdiag_k(sum_b Theta_k,b (x) E_k,b) Q_in^T`` and call ``F.linear``;
  ``O(nnz * e + D_out * D_in * s)`` per weight, then ``D_out * D_in`` per row.
* *spectral*: never form ``W``; map ``x`` to spectral coordinates, multiply each irrep type's block by one GEMM,
  map back: ``O(D_in * s_in + D_out * s_out + sum_k d_k * e_k * m_in,k * m_out,k)`` per row. For regular
  representations that is 4-15x fewer multiply-adds than the dense product.

``apply`` takes the path the cost model (:meth:`IsotypicExpansion.path_macs`, analytic counts with constants
fitted on CPU) says is cheaper for the call's number of rows; both paths are tested against the reference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..change_of_basis import StructuredChangeOfBasis
from .base import HomBasisStrategy
from .space import HomSpace

# Cost model of one training call (forward + backward), in units of one multiply-add of the dense product.
# Fitted on CPU (1 thread, C8/D8/icosahedral regular reps, D = 60..1024, 8..4096 rows; median |log error| 0.13):
# forming W runs at ~1/2.3 of dense GEMM speed, the spectral path's small GEMMs at ~1/1.2, and the spectral path
# makes many memory-bound passes over its activations (~127 multiply-add equivalents per input+output element).
EXPAND_MAC_COST = 2.3
SPECTRAL_MAC_COST = 1.2
ACTIVATION_PASS_COST = 127.0


class IsotypicExpansion(HomBasisStrategy):
    """Stores per-irrep endomorphism bases, index maps and the repeated blocks of the change of basis."""

    name = "isotypic_expansion"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, **unused) -> None:
        super().__init__(space)
        self.codomain_cob = StructuredChangeOfBasis(space.codomain, device=device, dtype=dtype)
        self.domain_cob = StructuredChangeOfBasis(space.domain, device=device, dtype=dtype)
        out_pos, in_pos = self.codomain_cob.local_position, self.domain_cob.local_position
        scatter, in_gather, out_cols = [], [], []
        self._segments, start = [], 0
        for k, s in enumerate(space.shared):
            rows = out_pos[s.out.columns]  # (m_out, d) local spectral positions of each output copy
            cols = in_pos[s.inp.columns]  # (m_in, d)
            flat = rows[:, :, None, None] * self.in_size + cols[None, None, :, :]
            scatter.append(flat.reshape(-1))
            in_gather.append(cols.reshape(-1))
            out_cols.append(rows.reshape(-1))
            self.register_constant(f"endo_{k}", s.out.endomorphisms, device=device, dtype=dtype)
            self._segments.append((s.dof_slice, s.shape, s.out.dim, start, flat.size))
            start += flat.size
        self.nnz = start
        self.register_constant("scatter_index", np.concatenate(scatter), device=device)
        self.register_constant("in_gather", np.concatenate(in_gather), device=device)
        # Output of the spectral path: concatenated blocks plus one zero column for uncovered output irreps.
        covered = np.concatenate(out_cols)
        out_gather = np.full(self.out_size, covered.size, dtype=np.int64)
        out_gather[covered] = np.arange(covered.size)
        self.out_fully_covered = covered.size == self.out_size
        self.register_constant("out_gather", out_gather, device=device)

    # ----------------------------------------------------------------------------------------------- expanded
    def _blocks(self, dof: torch.Tensor) -> torch.Tensor:
        values = []
        for k, (dof_slice, shape, _, _, _) in enumerate(self._segments):
            theta = dof[dof_slice].view(shape)
            values.append(torch.einsum("ijb,bpq->ipjq", theta, getattr(self, f"endo_{k}")).reshape(-1))
        return torch.cat(values)

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        flat = dof.new_zeros(self.out_size * self.in_size).index_put((self.scatter_index,), self._blocks(dof))
        w = self.domain_cob.from_spectral(flat.view(self.out_size, self.in_size))  # W_spec Q_in^T
        return self.codomain_cob.from_spectral(w, dim=0)  # Q_out W_spec Q_in^T

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        z = self.domain_cob.to_spectral(matrix)  # G Q_in
        z = self.codomain_cob.to_spectral(z, dim=0)  # Q_out^T G Q_in
        values = z.reshape(-1).index_select(0, self.scatter_index)  # index_select: vmap has a batching rule
        coefs = []
        for k, (_, (m_out, m_in, _), d, start, count) in enumerate(self._segments):
            block = values[start : start + count].view(m_out, d, m_in, d)
            coefs.append(torch.einsum("ipjq,bpq->ijb", block, getattr(self, f"endo_{k}")).reshape(-1))
        return torch.cat(coefs)

    def apply_expanded(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.expand(dof))

    # ----------------------------------------------------------------------------------------------- spectral
    def apply_spectral(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x @ W(dof)^T`` without forming ``W``; ``dof`` is ``(dim,)`` or one row per row of ``x``."""
        lead = x.shape[:-1]
        per_row = dof.dim() > 1
        z = self.domain_cob.to_spectral(x.reshape(-1, self.in_size)).index_select(1, self.in_gather)
        dof = dof.reshape(z.shape[0], self.dim) if per_row else dof
        rows, pieces = z.shape[0], []
        # split, not slices: the backward of one split is one cat, of each slice a zero-filled (rows, D) tensor
        parts = z.split([m_in * d for _, (_, m_in, _), d, _, _ in self._segments], dim=1)
        for k, (dof_slice, (m_out, m_in, e), d, _, _) in enumerate(self._segments):
            zk = parts[k].view(rows, m_in, d)
            theta = dof[..., dof_slice].unflatten(-1, (m_out, m_in * e))  # (m_out, m_in e) or (rows, m_out, m_in e)
            if e == d > 1 and not per_row:
                # Complex-type irreps: the block W_k (m_out d x m_in d) costs the same per row as the factored
                # product below, and saves its two re-layouts of the activations.
                block = torch.einsum("ijb,bpq->ipjq", theta.view(m_out, m_in, e), getattr(self, f"endo_{k}"))
                pieces.append(F.linear(zk.reshape(rows, m_in * d), block.reshape(m_out * d, m_in * d)))
                continue
            if d == 1 and e == 1:  # the only endomorphism is +-1 and was normalised to +1
                u = zk.view(rows, 1, m_in)
            else:
                u = torch.einsum("rjq,bpq->rpjb", zk, getattr(self, f"endo_{k}")).reshape(rows, d, m_in * e)
            y = u @ theta.mT if per_row else (u.reshape(rows * d, m_in * e) @ theta.mT).view(rows, d, m_out)
            pieces.append(y.transpose(1, 2).reshape(rows, m_out * d))
        if not self.out_fully_covered:
            pieces.append(z.new_zeros(rows, 1))
        y = torch.cat(pieces, dim=1).index_select(1, self.out_gather)
        return self.codomain_cob.from_spectral(y).view(*lead, self.out_size)

    def apply_per_row(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.apply_spectral(dof, x)

    def apply(self, dof: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        rows = x.numel() // max(self.in_size, 1)
        expanded, spectral = self.path_macs(rows)
        if spectral < expanded:
            out = self.apply_spectral(dof, x)
            return out if bias is None else out + bias
        return F.linear(x, self.expand(dof), bias)

    # ----------------------------------------------------------------------------------------------- costs
    def expand_macs(self) -> int:
        e_sum = sum(count * shape[2] for _, shape, _, _, count in self._segments)
        cob = self.out_size * self.domain_cob.multiply_adds_per_vector()
        cob += self.in_size * self.codomain_cob.multiply_adds_per_vector()
        return e_sum + cob

    def spectral_macs_per_row(self) -> int:
        blocks = sum(d * m_out * m_in * e + m_in * e * d * d for _, (m_out, m_in, e), d, _, _ in self._segments)
        return self.domain_cob.multiply_adds_per_vector() + self.codomain_cob.multiply_adds_per_vector() + blocks

    def path_macs(self, rows: int) -> tuple[float, float]:
        """Modelled cost ``(expanded, spectral)`` of one training call on ``rows`` rows (dense-MAC units)."""
        expanded = EXPAND_MAC_COST * self.expand_macs() + rows * self.out_size * self.in_size
        per_row = SPECTRAL_MAC_COST * self.spectral_macs_per_row()
        spectral = rows * (per_row + ACTIVATION_PASS_COST * (self.in_size + self.out_size))
        return expanded, spectral
