"""Shared fixtures: groups and representation pairs covering regular, non-regular and rotated bases."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from escnn import group as eg
from escnn.group import change_basis, directsum

DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def random_orthogonal(size: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.RandomState(seed).randn(size, size))
    return q * np.sign(np.diag(r))


def rotated(rep, seed: int, name: str | None = None):
    """``rep`` expressed in a random orthonormal basis (a dense change of basis)."""
    return change_basis(rep, random_orthogonal(rep.size, seed), name=name or f"{rep.name}_rot{seed}")


@functools.cache
def rep_pair(case: str):
    """(in_rep, out_rep) for a named case. Cached: escnn construction is the slow part."""
    if case == "C8-regular":
        G = eg.cyclic_group(8)
        return directsum([G.regular_representation] * 2), G.regular_representation
    if case == "D8-regular":
        G = eg.dihedral_group(8)
        return G.regular_representation, directsum([G.regular_representation] * 2)
    if case == "ico-regular":
        G = eg.ico_group()
        return G.regular_representation, G.regular_representation
    if case == "C5-complex-irreps":
        G = eg.cyclic_group(5)
        return (
            directsum([G.irrep(1), G.irrep(2), G.trivial_representation, G.irrep(1)]),
            directsum([G.irrep(2), G.irrep(1), G.irrep(1), G.trivial_representation]),
        )
    if case == "D4-rotated":
        G = eg.dihedral_group(4)
        return rotated(directsum([G.regular_representation, G.irrep(1, 1)]), 1), rotated(G.regular_representation, 2)
    if case == "D6-mixed":
        G = eg.dihedral_group(6)
        return (
            directsum([G.regular_representation, G.trivial_representation]),
            directsum([G.irrep(1, 1), G.regular_representation, G.irrep(1, 2)]),
        )
    if case == "ico-rotated-to-irreps":
        G = eg.ico_group()
        return rotated(G.regular_representation, 3), directsum([G.irrep(1), G.irrep(2), G.trivial_representation])
    if case == "D8-permutation-mixed":
        G = eg.dihedral_group(8)
        sites = G.quotient_representation((0, 1))  # the 8 sites of a ring, reflections reverse them
        return (
            directsum([G.regular_representation, sites, G.trivial_representation]),
            directsum([sites, G.regular_representation, sites]),
        )
    if case == "SO2-bandlimited":
        G = eg.so2_group()
        return directsum([G.irrep(0), G.irrep(1), G.irrep(2), G.irrep(1)]), G.bl_regular_representation(3)
    if case == "O2-bandlimited":
        G = eg.o2_group()
        return G.bl_regular_representation(2), rotated(G.bl_regular_representation(2), 4)
    raise KeyError(case)


FINITE_CASES = [
    "C8-regular",
    "D8-regular",
    "ico-regular",
    "C5-complex-irreps",
    "D4-rotated",
    "D6-mixed",
    "ico-rotated-to-irreps",
    "D8-permutation-mixed",
]
CONTINUOUS_CASES = ["SO2-bandlimited", "O2-bandlimited"]
ALL_CASES = FINITE_CASES + CONTINUOUS_CASES
#: Cases whose representations act by permutation matrices in their own basis (what orbit_gather needs).
PERMUTATION_CASES = ["C8-regular", "D8-regular", "ico-regular", "D8-permutation-mixed"]


def skip_unsupported(strategy: str, case: str) -> None:
    """Skip a strategy on a case it refuses by design (the refusal itself is tested in test_basis.py)."""
    if strategy == "orbit_gather" and case not in PERMUTATION_CASES:
        pytest.skip("orbit_gather needs permutation representations")


@pytest.fixture(params=ALL_CASES)
def case(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param
