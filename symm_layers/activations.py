"""Pointwise activations chosen by name or factory, never a shared module instance."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from escnn.group import Representation
from torch import nn

from .testing import group_elements

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "identity": nn.Identity,
}

Activation = str | Callable[[], nn.Module] | nn.Module


def make_activation(activation: Activation) -> nn.Module:
    """A fresh activation module: from a name, a zero-argument factory, or a copy of a given module."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[activation]()
    if isinstance(activation, nn.Module):
        return copy.deepcopy(activation)
    module = activation()
    if not isinstance(module, nn.Module):
        raise ValueError("activation factory must return an nn.Module")
    return module


def is_permutation_representation(rep: Representation) -> bool:
    """True when every checked ``rep(g)`` is a 0/1 permutation matrix (pointwise maps then commute with it)."""
    for g in group_elements(rep.group):
        m = np.asarray(rep(g))
        if not (np.allclose(np.abs(m).sum(0), 1) and np.allclose(np.abs(m).sum(1), 1) and np.allclose(m, np.abs(m))):
            return False
        if not np.allclose(m, np.round(m)):
            return False
    return True


def check_pointwise_activation(rep: Representation, where: str) -> None:
    """Refuse a pointwise nonlinearity on a representation that does not permute coordinates."""
    if not is_permutation_representation(rep):
        raise ValueError(
            f"{where}: a pointwise activation is equivariant only on permutation representations, and "
            f"'{rep.name}' is not one (its matrices are not 0/1 permutations); use regular/permutation "
            "representations for hidden features, or an irrep-wise (norm) nonlinearity"
        )
