"""The interface every Hom_G basis strategy implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .._constants import ConstantsModule
from .space import HomSpace


@dataclass(frozen=True)
class BasisCost:
    """Analytic cost of a strategy (counts, not timings).

    Attributes:
        parameters: DoFs (``dim Hom_G``).
        buffer_bytes: bytes of the strategy's constant buffers at its current dtype.
        expand_macs: multiply-adds of one ``expand`` (0 for strategies that never form the weight).
        apply_macs_per_row: multiply-adds of ``apply`` per input row, on top of any expansion.
        strategy: name of the strategy these counts belong to.
    """

    parameters: int
    buffer_bytes: int
    expand_macs: int
    apply_macs_per_row: int
    strategy: str = ""

    def apply_macs(self, rows: int) -> int:
        return self.expand_macs + rows * self.apply_macs_per_row


class HomBasisStrategy(ConstantsModule):
    """A way to materialise (or apply) the canonical orthonormal basis of Hom_G(rho_in, rho_out).

    Subclasses implement :meth:`expand` and :meth:`adjoint`; both are linear in their argument and are adjoint to
    each other, so ``project(W) = expand(adjoint(W))`` is the Frobenius-orthogonal projection onto Hom_G.
    """

    name: ClassVar[str]

    def __init__(self, space: HomSpace) -> None:
        super().__init__()
        self.space = space
        self.dim = space.dim
        self.out_size, self.in_size = space.shape

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        """Map DoFs ``(dim,)`` to the dense equivariant weight ``(out_size, in_size)``."""
        raise NotImplementedError

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        """Frobenius inner products ``<B_b, matrix>`` with every basis element, shape ``(dim,)``."""
        raise NotImplementedError

    def coefficients(self, matrix: torch.Tensor) -> torch.Tensor:
        """DoFs of the orthogonal projection of a dense ``matrix`` onto Hom_G."""
        return self.adjoint(matrix)

    def expand_batch(self, dof: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` -> ``(n, out_size, in_size)``; vmapped :meth:`expand` unless a strategy batches natively."""
        return torch.func.vmap(self.expand)(dof)

    def adjoint_batch(self, matrix: torch.Tensor) -> torch.Tensor:
        """``(n, out_size, in_size)`` -> ``(n, dim)``; vmapped :meth:`adjoint` unless a strategy batches natively."""
        return torch.func.vmap(self.adjoint)(matrix)

    def project(self, matrix: torch.Tensor) -> torch.Tensor:
        """Frobenius-orthogonal projection of a dense ``matrix`` onto Hom_G."""
        return self.expand(self.adjoint(matrix))

    def apply(self, dof: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W(dof)^T (+ bias)`` for ``x`` of shape ``(..., in_size)``."""
        return F.linear(x, self.expand(dof), bias)

    def linear(self, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        """``x @ W(dof)^T + b`` with ``bias`` ``None`` or ``(expander, bias_dof)``, ``b = expander.expand(bias_dof)``.

        The per-call entry of the weight-cache modes; strategies with a faster fused path override it.
        """
        return self.apply(dof, x, None if bias is None else bias[0].expand(bias[1]))

    def apply_per_row(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x[r] @ W(dof[r])^T`` for per-row DoFs ``dof`` of shape ``(*x.shape[:-1], dim)``."""
        weights = torch.func.vmap(self.expand)(dof.reshape(-1, self.dim))
        out = torch.einsum("roi,ri->ro", weights, x.reshape(-1, self.in_size))
        return out.view(*x.shape[:-1], self.out_size)

    def expand_macs(self) -> int:
        raise NotImplementedError

    def cost(self) -> BasisCost:
        buffer_bytes = sum(b.numel() * b.element_size() for b in self.buffers())
        return BasisCost(
            parameters=self.dim,
            buffer_bytes=buffer_bytes,
            expand_macs=self.expand_macs(),
            apply_macs_per_row=self.out_size * self.in_size,
            strategy=self.name,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, shape=({self.out_size}, {self.in_size})"
