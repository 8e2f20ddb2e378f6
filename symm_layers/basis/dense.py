"""Strategies that hold the whole basis stack ``(dim, D_out, D_in)``: the memory-heavy one and the reference."""

from __future__ import annotations

import numpy as np
import torch

from .base import HomBasisStrategy
from .space import HomSpace

DEFAULT_MAX_BASIS_BYTES = 2 * 1024**3


def check_stack_size(space: HomSpace, itemsize: int, max_bytes: int | None, strategy: str) -> None:
    """Refuse to allocate a basis stack larger than ``max_bytes``, naming the strategy to use instead."""
    limit = DEFAULT_MAX_BASIS_BYTES if max_bytes is None else max_bytes
    need = space.dim * space.shape[0] * space.shape[1] * itemsize
    if need > limit:
        raise ValueError(
            f"the {strategy} basis of shape ({space.dim}, {space.shape[0]}, {space.shape[1]}) needs "
            f"{need / 1024**2:.1f} MiB, over the limit of {limit / 1024**2:.1f} MiB; use "
            "basis_expansion_scheme='isotypic_expansion' (stores no stack) or raise max_basis_bytes"
        )


class _StackedBasis(HomBasisStrategy):
    """Shared expand/adjoint for strategies that store the basis as a buffer ``basis`` of shape (dim, D_out*D_in)."""

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        return (dof @ self.basis).view(self.out_size, self.in_size)

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.basis @ matrix.reshape(-1)

    def expand_batch(self, dof: torch.Tensor) -> torch.Tensor:
        return (dof @ self.basis).view(-1, self.out_size, self.in_size)

    def adjoint_batch(self, matrix: torch.Tensor) -> torch.Tensor:
        return matrix.reshape(matrix.shape[0], -1) @ self.basis.mT

    def expand_macs(self) -> int:
        return self.dim * self.out_size * self.in_size


class MemoryHeavyExpansion(_StackedBasis):
    """Stores the dense basis stack and expands with one matrix-vector product.

    The stack is written copy by copy into one preallocated tensor (peak memory: the stack plus one slice).
    """

    name = "memory_heavy"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, max_basis_bytes=None, **unused) -> None:
        super().__init__(space)
        dtype = dtype or torch.get_default_dtype()
        check_stack_size(space, torch.empty((), dtype=dtype).element_size(), max_basis_bytes, self.name)
        self.register_buffer("basis", self._build(dtype, device), persistent=False)

    def _build(self, dtype, device) -> torch.Tensor:
        space = self.space
        q_out = torch.as_tensor(space.codomain.change_of_basis)
        q_in = torch.as_tensor(space.domain.change_of_basis)
        stack = torch.empty(self.dim, self.out_size * self.in_size, dtype=dtype, device=device)
        for s in space.shared:
            m_out, m_in, e = s.shape
            endo = torch.as_tensor(s.out.endomorphisms)  # (e, d, d), float64
            in_cols = q_in[:, s.inp.columns].permute(1, 0, 2)  # (m_in, D_in, d)
            for i in range(m_out):
                left = torch.einsum("op,bpq->boq", q_out[:, s.out.columns[i]], endo)  # (e, D_out, d)
                piece = torch.einsum("boq,jiq->jboi", left, in_cols)  # (m_in, e, D_out, D_in)
                start = s.offset + i * m_in * e
                stack[start : start + m_in * e].copy_(piece.reshape(m_in * e, -1))
        return stack

    def _apply(self, fn, recurse=True):
        old = self.basis
        module = super()._apply(fn, recurse)
        new = self.basis
        # Rebuild from the float64 sources rather than keep a cast of the old precision, and whenever the values
        # may not have been carried over: from a meta tensor, or a new tensor on the same device (``to_empty``).
        moved_only = new.dtype == old.dtype and new.device != old.device and old.device.type != "meta"
        if new is not old and new.is_floating_point() and not moved_only:
            self.basis = self._build(new.dtype, new.device)
        return module


class ReferenceExpansion(_StackedBasis):
    """The obviously-correct reference: every basis element built on its own, in float64, in a Python loop.

    Meant for tests on small representations: it compares every other strategy against this one.
    """

    name = "reference"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, max_basis_bytes=None, **unused) -> None:
        super().__init__(space)
        check_stack_size(space, 8, max_basis_bytes, self.name)
        q_out, q_in = space.codomain.change_of_basis, space.domain.change_of_basis
        elements = []
        for s in space.shared:
            for i in range(s.out.multiplicity):
                for j in range(s.inp.multiplicity):
                    for endo in s.out.endomorphisms:
                        element = q_out[:, s.out.columns[i]] @ endo @ q_in[:, s.inp.columns[j]].T
                        elements.append(element.reshape(-1))
        stack = np.stack(elements) if elements else np.zeros((0, space.shape[0] * space.shape[1]))
        self.register_constant("basis", stack, device=device, dtype=dtype)


def nullspace_basis(in_rep, out_rep, elements) -> np.ndarray:
    """Orthonormal basis ``(n, D_out, D_in)`` of {W : rho_out(g) W = W rho_in(g) for g in elements}.

    Solved directly from the constraint, independent of any decomposition: the kernel of
    ``sum_g C_g^T C_g`` with ``C_g = rho_out(g) (x) I - I (x) rho_in(g)^T`` (row-major vectorisation). Its cost
    is cubic in ``D_out * D_in``: use it on small representations, with the group's generators as ``elements``.
    """
    d_out, d_in = out_rep.size, in_rep.size
    gram = np.zeros((d_out * d_in, d_out * d_in))
    for g in elements:
        a, b = np.asarray(out_rep(g)), np.asarray(in_rep(g))
        constraint = np.kron(a, np.eye(d_in)) - np.kron(np.eye(d_out), b.T)
        gram += constraint.T @ constraint
    values, vectors = np.linalg.eigh(gram)
    kernel = vectors[:, values < 1e-9 * max(1.0, values.max(initial=0.0))]
    return kernel.T.reshape(-1, d_out, d_in)
