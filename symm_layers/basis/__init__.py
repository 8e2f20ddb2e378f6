"""Bases of Hom_G(rho_in, rho_out): one interface, several strategies, one reference."""

from __future__ import annotations

import torch
from escnn.group import Representation
from torch import nn

from .._types import BasisExpansionScheme, InitScheme
from .base import BasisCost, HomBasisStrategy
from .dense import DEFAULT_MAX_BASIS_BYTES, MemoryHeavyExpansion, ReferenceExpansion, nullspace_basis
from .isotypic import IsotypicExpansion
from .orbit import OrbitGather, orbit_plan
from .registry import AUTO_REFERENCE_ROWS, BASIS_STRATEGIES, auto_strategy, resolve_basis
from .space import INIT_SCHEMES, HomSpace, hom_space, no_map_message

__all__ = [
    "AUTO_REFERENCE_ROWS",
    "BASIS_STRATEGIES",
    "OrbitGather",
    "auto_strategy",
    "orbit_plan",
    "DEFAULT_MAX_BASIS_BYTES",
    "INIT_SCHEMES",
    "BasisCost",
    "GroupHomomorphismBasis",
    "HomBasisStrategy",
    "HomSpace",
    "IsotypicExpansion",
    "MemoryHeavyExpansion",
    "ReferenceExpansion",
    "hom_space",
    "nullspace_basis",
    "resolve_basis",
]


class GroupHomomorphismBasis(nn.Module):
    r"""An orthonormal basis of :math:`\operatorname{Hom}_G(\rho_\text{in}, \rho_\text{out})`.

    .. math::
        W(\theta) = \sum_b \theta_b B_b, \qquad \rho_\text{out}(g) B_b = B_b \rho_\text{in}(g) \;\; \forall g

    Each :math:`B_b` is built from an endomorphism of one irrep between one input and one output copy of it, so
    the commutation holds by Schur's lemma. The strategy chosen by ``basis_expansion`` decides only how the sum
    is computed; the DoFs mean the same map under every strategy.

    Args:
        in_rep: input representation (escnn).
        out_rep: output representation of the same group.
        basis_expansion: strategy name, one of :data:`BASIS_STRATEGIES`.
        max_basis_bytes: size limit for strategies that store a dense basis stack (default 2 GiB).
        device, dtype: of the strategy's constant buffers.

    Shape:
        ``forward(dof)``: ``(dim,)`` -> ``(out_rep.size, in_rep.size)``.

    Raises:
        ValueError: for representations of different groups, ``dim = 0``, an unknown strategy, a non-orthogonal
            representation, or a basis stack over ``max_basis_bytes``.

    Example:
        >>> from escnn.group import cyclic_group
        >>> G = cyclic_group(4)
        >>> basis = GroupHomomorphismBasis(G.regular_representation, G.regular_representation)
        >>> basis(basis.initialize_params()).shape
        torch.Size([4, 4])
    """

    def __init__(
        self,
        in_rep: Representation,
        out_rep: Representation,
        basis_expansion: BasisExpansionScheme = "auto",
        *,
        max_basis_bytes: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if basis_expansion != "auto":
            resolve_basis(basis_expansion)  # an unknown name fails before any construction work
        self.space = hom_space(in_rep, out_rep)
        if self.space.dim == 0:
            raise ValueError(no_map_message(self.space, in_rep, out_rep))
        self.in_rep, self.out_rep = in_rep, out_rep
        self.requested_expansion = basis_expansion
        strategy_cls = resolve_basis(basis_expansion, self.space)
        self.strategy = strategy_cls(self.space, device=device, dtype=dtype, max_basis_bytes=max_basis_bytes)

    @property
    def dim(self) -> int:
        return self.space.dim

    @property
    def basis_expansion(self) -> str:
        """The strategy in use (what ``"auto"`` resolved to, if it was asked for)."""
        return self.strategy.name

    def extra_repr(self) -> str:
        chosen = self.strategy.name
        return f"basis_expansion={chosen}" + (" (auto)" if self.requested_expansion == "auto" else "")

    def forward(self, dof: torch.Tensor) -> torch.Tensor:
        return self.strategy.expand(dof)

    def initialize_params(self, scheme: InitScheme = "xavier_normal", *, generator=None, dtype=None, device=None):
        """A fresh DoF vector drawn with the variance of torch's ``scheme`` for each isotypic block."""
        return self.space.sample_dof(scheme, generator=generator, dtype=dtype, device=device)

    def orthogonal_projection(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.strategy.project(matrix)

    def coefficients(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.strategy.coefficients(matrix)

    def apply(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.strategy.apply(dof, x)

    def cost(self) -> BasisCost:
        """Analytic cost of the strategy in use; ``cost().strategy`` names it (``"auto"`` resolved)."""
        return self.strategy.cost()
