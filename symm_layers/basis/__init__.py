"""Bases of Hom_G(rho_in, rho_out): one interface, several strategies, one reference."""

from __future__ import annotations

import math

import torch
from escnn.group import Representation
from torch import nn

from .._types import BasisExpansionScheme, InitScheme
from ..reps import check_representations
from .base import BasisCost, HomBasisStrategy
from .dense import DEFAULT_MAX_BASIS_BYTES, MemoryHeavyExpansion, ReferenceExpansion, nullspace_basis
from .empty import ZeroMap
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
    "ZeroMap",
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
        paths: keep only the isotypic paths (blocks of Hom_G) of these irrep types (escnn irrep ids or irreps);
            ``None`` keeps all. The DoFs are laid out as for the full space, restricted to the kept blocks.
        allow_empty: accept ``dim = 0`` (after ``paths``) and expand to the zero matrix instead of raising.
        device, dtype: of the strategy's constant buffers.

    Shape:
        ``forward(dof)``: ``(..., dim)`` -> ``(..., out_rep.size, in_rep.size)``.
        ``orthogonal_projection(matrix)``: ``(..., out_rep.size, in_rep.size)`` -> same.
        ``coefficients(matrix)``: ``(..., out_rep.size, in_rep.size)`` -> ``(..., dim)``.

    Note:
        Leading dimensions are flattened into one batch and handed to the strategy's ``expand_batch`` /
        ``adjoint_batch`` (``torch.func.vmap`` of the unbatched call, or a native batched product).

    Raises:
        ValueError: for representations of different groups, ``dim = 0`` (unless ``allow_empty``), an unknown
            strategy or path, a non-orthogonal representation, a basis stack over ``max_basis_bytes``, or a tensor
            whose trailing shape does not match.

    Example:
        >>> from escnn.group import cyclic_group
        >>> G = cyclic_group(4)
        >>> basis = GroupHomomorphismBasis(G.regular_representation, G.regular_representation)
        >>> basis(basis.initialize_params()).shape
        torch.Size([4, 4])
        >>> basis.initialize_params(leading_shape=(2, 3), return_dense=True).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(
        self,
        in_rep: Representation,
        out_rep: Representation,
        basis_expansion: BasisExpansionScheme = "auto",
        *,
        max_basis_bytes: int | None = None,
        paths=None,
        allow_empty: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep, out_rep=out_rep)
        if basis_expansion != "auto":
            resolve_basis(basis_expansion)  # an unknown name fails before any construction work
        self.space = hom_space(in_rep, out_rep)
        if paths is not None:
            self.space = self.space.restrict(paths)
        if self.space.dim == 0 and not allow_empty:
            raise ValueError(no_map_message(self.space, in_rep, out_rep))
        self.in_rep, self.out_rep = in_rep, out_rep
        self.requested_expansion = basis_expansion
        strategy_cls = ZeroMap if self.space.dim == 0 else resolve_basis(basis_expansion, self.space)
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

    def _check_trailing(self, tensor: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if tuple(tensor.shape[tensor.dim() - len(shape) :]) != shape or tensor.dim() < len(shape):
            raise ValueError(
                f"{what} of shape {tuple(tensor.shape)} must end in {shape} (dim Hom_G = {self.dim}, "
                f"out_rep.size = {self.out_rep.size}, in_rep.size = {self.in_rep.size}); leading dims are a batch"
            )

    def forward(self, dof: torch.Tensor) -> torch.Tensor:
        """Dense maps ``W(dof)`` of shape ``(..., out_rep.size, in_rep.size)`` for DoFs ``(..., dim)``."""
        self._check_trailing(dof, (self.dim,), "dof")
        if dof.dim() == 1:
            return self.strategy.expand(dof)
        lead = dof.shape[:-1]
        rows = math.prod(lead)
        if rows == 0:
            return dof.new_zeros(*lead, *self.space.shape)
        return self.strategy.expand_batch(dof.reshape(rows, self.dim)).view(*lead, *self.space.shape)

    def initialize_params(
        self,
        scheme: InitScheme = "xavier_normal",
        leading_shape: tuple[int, ...] | None = None,
        return_dense: bool = False,
        *,
        generator=None,
        dtype=None,
        device=None,
    ) -> torch.Tensor:
        """Fresh DoFs ``(*leading_shape, dim)`` drawn with the variance of torch's ``scheme`` per isotypic block.

        With ``return_dense=True`` the expanded maps ``(*leading_shape, out_rep.size, in_rep.size)`` instead, in
        the dtype of the basis constants unless ``dtype`` is given.
        """
        shape = () if leading_shape is None else tuple(leading_shape)
        if return_dense and dtype is None:
            dtype = next((b.dtype for b in self.strategy.buffers() if b.is_floating_point()), None)
        dof = self.space.sample_dof(scheme, shape, generator=generator, dtype=dtype, device=device)
        return self.forward(dof) if return_dense else dof

    def coefficients(self, matrix: torch.Tensor) -> torch.Tensor:
        """DoFs ``(..., dim)`` of the orthogonal projection of each ``(..., out, in)`` matrix onto Hom_G."""
        self._check_trailing(matrix, self.space.shape, "matrix")
        if matrix.dim() == 2:
            return self.strategy.coefficients(matrix)
        lead = matrix.shape[:-2]
        rows = math.prod(lead)
        if rows == 0:
            return matrix.new_zeros(*lead, self.dim)
        return self.strategy.adjoint_batch(matrix.reshape(rows, *self.space.shape)).view(*lead, self.dim)

    def orthogonal_projection(self, matrix: torch.Tensor) -> torch.Tensor:
        """Frobenius-orthogonal projection of each ``(..., out, in)`` matrix onto Hom_G."""
        if matrix.dim() == 2:
            return self.strategy.project(matrix)
        return self.forward(self.coefficients(matrix))

    def apply(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.strategy.apply(dof, x)

    def cost(self) -> BasisCost:
        """Analytic cost of the strategy in use; ``cost().strategy`` names it (``"auto"`` resolved)."""
        return self.strategy.cost()
