"""Coordinate permutations of permutation representations, and the orbits of G on coordinates.

A representation is a *permutation representation* in its own basis when every ``rho(g)`` is a 0/1 permutation
matrix. Then Hom_G between two of them has a basis of 0/1 matrices with disjoint supports, one per orbit of G on
pairs of coordinates, which is what :mod:`symm_layers.basis.orbit` gathers from.

``rho(g) = Q D(g) Q^T`` is formed through sparse products (``Q`` has ``D * s`` non-zeros for block size ``s``),
only for a generating set of a finite group, and memoised by the representation's content, so checking an
icosahedral representation of size 240 costs milliseconds instead of 60 dense ``D x D`` products.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from escnn.group import Representation
from scipy.sparse.csgraph import connected_components

from .reps import ZERO_TOL, IsotypicDecomposition, decompose

PERMUTATION_TOL = 1e-6

__all__ = ["PermutationAction", "is_permutation_representation", "permutation_action"]


@dataclass(frozen=True, eq=False)
class PermutationAction:
    """How a generating set of G permutes the coordinates of a permutation representation.

    Attributes:
        perms: ``(n, D)`` int array; ``rho(g_i) e_r = e_{perms[i, r]}`` for the generating elements ``g_i``.
        orbit_of: ``(D,)`` label of the G-orbit of each coordinate.
        orbits: the coordinates of each orbit, sorted.
    """

    perms: np.ndarray
    orbit_of: np.ndarray
    orbits: tuple[np.ndarray, ...]

    def local_perms(self, orbit: np.ndarray) -> np.ndarray:
        """``(n, len(orbit))``: the generators' action on ``orbit`` in positions within ``orbit``."""
        position = np.empty(self.perms.shape[1], dtype=np.int64)
        position[orbit] = np.arange(orbit.size)
        return position[self.perms[:, orbit]]


def _generating_elements(group) -> list:
    if group.continuous:
        from .testing import group_elements  # sampled elements: only trivial actions can pass the check

        return group_elements(group)
    try:
        generators = list(group.generators)
    except (AttributeError, NotImplementedError, ValueError):
        generators = []
    return generators or list(group.elements)


def copy_irrep_ids(decomposition: IsotypicDecomposition) -> list[tuple]:
    """The irrep id of every copy, in the spectral (``rep.irreps``) order."""
    ids: list = [None] * decomposition.num_copies
    for irrep in decomposition.irreps:
        for cols in irrep.columns:
            ids[decomposition.copy_index[cols[0]]] = irrep.id
    return ids


def permutation_action(rep: Representation | IsotypicDecomposition) -> PermutationAction | None:
    """The coordinate permutations of ``rep``'s generating elements, or ``None`` if some ``rho(g)`` is not one."""
    return _permutation_action(rep if isinstance(rep, IsotypicDecomposition) else decompose(rep))


@functools.lru_cache(maxsize=256)
def _permutation_action(decomposition: IsotypicDecomposition) -> PermutationAction | None:
    # Decompositions are memoised by content, so keying on the object is keying on the content.
    size = decomposition.size
    group = decomposition.group
    q = decomposition.change_of_basis
    q_sparse = sp.csr_matrix(np.where(np.abs(q) > ZERO_TOL, q, 0.0))
    ids = copy_irrep_ids(decomposition)
    perms = []
    for element in _generating_elements(group):
        spectral = sp.block_diag([np.asarray(group.irrep(*i)(element), dtype=np.float64) for i in ids])
        matrix = (q_sparse @ spectral @ q_sparse.T).tocsr()
        matrix.data[np.abs(matrix.data) <= PERMUTATION_TOL] = 0.0
        matrix.eliminate_zeros()
        if matrix.nnz != size or np.abs(matrix.data - 1.0).max(initial=0.0) > PERMUTATION_TOL:
            return None
        coo = matrix.tocoo()
        target = np.full(size, -1, dtype=np.int64)
        target[coo.col] = coo.row  # rho(g) e_col = e_row
        if (target < 0).any() or np.unique(target).size != size:
            return None
        perms.append(target)
    perms = np.stack(perms) if perms else np.arange(size)[None]
    rows = np.repeat(np.arange(size), perms.shape[0])
    graph = sp.coo_matrix((np.ones(rows.size), (rows, perms.T.reshape(-1))), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    orbits = tuple(np.flatnonzero(labels == label) for label in range(labels.max() + 1 if size else 0))
    return PermutationAction(perms=perms, orbit_of=labels, orbits=orbits)


def is_permutation_representation(rep: Representation) -> bool:
    """True when every ``rep(g)`` is a 0/1 permutation matrix (checked on a generating set of the group)."""
    return permutation_action(rep) is not None
