"""Pointwise activations chosen by name or factory, never a shared module instance."""

from __future__ import annotations

import copy
from collections.abc import Callable

from escnn.group import Representation, directsum
from torch import nn

from .permutation import is_permutation_representation

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "identity": nn.Identity,
}

Activation = str | Callable[[], nn.Module] | nn.Module


def check_activation(activation: Activation) -> None:
    """Raise ``ValueError`` for an unknown name or something that is neither a factory nor a module."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    elif not callable(activation):
        raise ValueError(f"activation must be a name, a zero-argument factory or a module, got {activation!r}")


def make_activation(activation: Activation) -> nn.Module:
    """A fresh activation module: from a name, a zero-argument factory, or a copy of a given module."""
    check_activation(activation)
    if isinstance(activation, str):
        return ACTIVATIONS[activation]()
    if isinstance(activation, nn.Module):
        return copy.deepcopy(activation)
    module = activation()
    if not isinstance(module, nn.Module):
        raise ValueError("activation factory must return an nn.Module")
    return module


def check_pointwise_activation(rep: Representation, what: str) -> None:
    """Refuse a pointwise nonlinearity on a representation that does not permute coordinates."""
    if not is_permutation_representation(rep):
        raise ValueError(
            f"{what} '{rep.name}' does not act by permutation matrices in its coordinate basis, so a pointwise "
            "activation would break equivariance (sigma(rho(g) x) != rho(g) sigma(x)); use regular/permutation "
            "representations for hidden layers, or an irrep-wise (norm) nonlinearity"
        )


def regular_copies(group, width: int, what: str) -> Representation:
    """``width / |G|`` copies of the regular representation; ``width`` must be a positive multiple of ``|G|``."""
    if group.continuous:
        raise ValueError(
            f"{what}: integer width {width} needs a regular representation, which {group.name} (continuous) has "
            "not; pass a Representation instead (e.g. a band-limited regular one) with a norm nonlinearity"
        )
    order = group.order()
    if width <= 0 or width % order:
        lower, upper = (width // order) * order, (width // order + 1) * order
        nearest = f"{lower} or {upper}" if lower > 0 else f"{upper}"
        raise ValueError(
            f"{what}: width {width} is not a positive multiple of |{group.name}| = {order}; integer widths mean "
            f"copies of the regular representation, so use {nearest}"
        )
    return directsum([group.regular_representation] * (width // order), name=f"{width // order}x_regular")
