"""Constrain an existing linear layer to be G-equivariant (orthogonal projections through parametrize)."""

from __future__ import annotations

import torch
from escnn.group import Representation
from torch import nn
from torch.nn.utils import parametrize

from ._types import BasisExpansionScheme
from .basis import GroupHomomorphismBasis
from .invariant import InvariantSubspace
from .reps import check_representations


class _HomProjection(nn.Module):
    """Parametrization ``W -> P_Hom(W)`` (orthogonal projection onto Hom_G)."""

    def __init__(self, basis: GroupHomomorphismBasis) -> None:
        super().__init__()
        self.basis = basis

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.basis.orthogonal_projection(weight)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return self.basis.orthogonal_projection(weight)


class _InvariantProjection(nn.Module):
    """Parametrization ``b -> P_Fix(b)`` (orthogonal projection onto the invariant subspace)."""

    def __init__(self, subspace: InvariantSubspace) -> None:
        super().__init__()
        self.subspace = subspace

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        return self.subspace.expand(self.subspace.adjoint(bias))

    def right_inverse(self, bias: torch.Tensor) -> torch.Tensor:
        return self.forward(bias)


def impose_linear_equivariance(
    lin: nn.Module,
    in_rep: Representation,
    out_rep: Representation,
    basis_expansion_scheme: BasisExpansionScheme = "auto",
) -> nn.Module:
    r"""Constrain an existing linear layer in place so that it is G-equivariant, and return it.

    .. math::
        W \mapsto P_{\operatorname{Hom}_G}(W), \qquad b \mapsto P_{\operatorname{Fix}}(b)

    Registers :mod:`torch.nn.utils.parametrize` parametrizations that replace ``lin.weight`` by its Frobenius-
    orthogonal projection onto Hom_G and ``lin.bias`` by its projection onto the invariant vectors; the stored
    tensors stay unconstrained and gradients flow through the projections.

    Returns:
        ``lin`` itself (constrained in place), so ``layer = impose_linear_equivariance(nn.Linear(...), ...)``.

    Raises:
        ValueError: if the layer's sizes do not match the representations, or ``dim Hom_G = 0``.
    """
    check_representations("impose_linear_equivariance", in_rep=in_rep, out_rep=out_rep)
    weight = getattr(lin, "weight", None)
    if weight is None or weight.dim() != 2:
        raise ValueError(f"expected a module with a 2-D 'weight' (e.g. nn.Linear), got {type(lin).__name__}")
    if tuple(weight.shape) != (out_rep.size, in_rep.size):
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not match (out_rep.size, in_rep.size) = "
            f"({out_rep.size}, {in_rep.size}); build the layer as nn.Linear({in_rep.size}, {out_rep.size})"
        )
    basis = GroupHomomorphismBasis(in_rep, out_rep, basis_expansion_scheme, device=weight.device, dtype=weight.dtype)
    lin.in_rep, lin.out_rep = in_rep, out_rep
    parametrize.register_parametrization(lin, "weight", _HomProjection(basis))
    if getattr(lin, "bias", None) is not None:
        subspace = InvariantSubspace(out_rep, device=weight.device, dtype=weight.dtype)
        parametrize.register_parametrization(lin, "bias", _InvariantProjection(subspace))
    return lin
