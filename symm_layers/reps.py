"""Isotypic decomposition of escnn representations, memoised by content.

An escnn :class:`~escnn.group.Representation` is stored as ``rho(g) = Q (+)_c rho_c(g) Q^T`` where ``Q`` is its
``change_of_basis`` and ``rho_c`` are irreps listed in ``rep.irreps`` order (the *spectral* order). This module
records, per irrep type, the spectral columns of every copy, an orthonormal endomorphism basis, and the block
structure of ``Q``: for direct sums of regular or permutation representations ``Q`` is a row/column permutation of
a block-diagonal matrix whose blocks repeat, so applying it costs ``D * s`` per vector instead of ``D**2``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
from escnn.group import Representation
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ORTHOGONALITY_TOL = 1e-8
ZERO_TOL = 1e-12

__all__ = [
    "BlockType",
    "IrrepType",
    "IsotypicDecomposition",
    "check_representations",
    "check_same_group",
    "check_same_representation",
    "decompose",
    "describe",
    "same_representation",
]


@dataclass(frozen=True, eq=False)
class IrrepType:
    """One irrep type of a representation and where its copies live in spectral coordinates."""

    id: tuple
    dim: int
    kind: str
    endomorphisms: np.ndarray  # (e, d, d), Frobenius-orthonormal, commuting with the irrep
    columns: np.ndarray  # (multiplicity, d) spectral coordinates of each copy

    @property
    def multiplicity(self) -> int:
        return self.columns.shape[0]

    @property
    def endomorphism_dim(self) -> int:
        return self.endomorphisms.shape[0]


@dataclass(frozen=True, eq=False)
class BlockType:
    """Components of the change of basis that share one orthogonal block ``basis`` (s x s).

    ``rows[c]`` are the original coordinates and ``cols[c]`` the spectral coordinates of component ``c``, so
    ``Q[rows[c][:, None], cols[c][None, :]] == basis`` and ``Q`` is zero outside these blocks.
    """

    basis: np.ndarray
    rows: np.ndarray
    cols: np.ndarray

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.basis, np.eye(self.basis.shape[0])))


@dataclass(frozen=True, eq=False)
class IsotypicDecomposition:
    """Content-derived description of a representation (numpy, float64, dtype-free)."""

    group: object
    size: int
    irreps: tuple[IrrepType, ...]  # sorted by irrep id: the isotypic order
    change_of_basis: np.ndarray  # (D, D) orthogonal, columns in spectral order
    blocks: tuple[BlockType, ...]
    copy_index: np.ndarray  # (D,) for each spectral coordinate, the position of its irrep copy in rep.irreps

    @property
    def irrep_ids(self) -> tuple[tuple, ...]:
        return tuple(t.id for t in self.irreps)

    @property
    def multiplicities(self) -> tuple[int, ...]:
        return tuple(t.multiplicity for t in self.irreps)

    @property
    def irrep_dims(self) -> tuple[int, ...]:
        return tuple(t.dim for t in self.irreps)

    @property
    def num_copies(self) -> int:
        return int(self.copy_index.max()) + 1 if self.size else 0

    @property
    def isotypic_permutation(self) -> np.ndarray:
        """Spectral coordinates listed in isotypic order (irrep type, copy, component)."""
        return np.concatenate([t.columns.reshape(-1) for t in self.irreps])

    @property
    def isotypic_slices(self) -> dict[tuple, slice]:
        out, start = {}, 0
        for t in self.irreps:
            out[t.id] = slice(start, start + t.multiplicity * t.dim)
            start += t.multiplicity * t.dim
        return out

    @property
    def isotypic_change_of_basis(self) -> np.ndarray:
        """Orthogonal ``Q_iso`` with ``rho(g) = Q_iso (+)_k (I_{m_k} (x) rho_k(g)) Q_iso^T``."""
        return self.change_of_basis[:, self.isotypic_permutation]

    @property
    def is_permutation_basis(self) -> bool:
        """True when the change of basis only permutes coordinates (no arithmetic needed)."""
        return all(b.is_identity for b in self.blocks)

    def trivial_type(self) -> IrrepType | None:
        trivial_id = self.group.trivial_representation.id
        return next((t for t in self.irreps if t.id == trivial_id), None)


def check_same_group(*reps: Representation) -> None:
    """Raise ``ValueError`` unless all representations act through the same group."""
    first = reps[0].group
    for rep in reps[1:]:
        if rep.group is not first and rep.group != first:
            raise ValueError(
                f"representations of different groups: {first.name} and {rep.group.name}; "
                "build every representation from the same escnn group instance"
            )


def _example_for(value) -> str:
    """A line building a representation of the size the user seems to mean."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        order = next(n for n in (8, 4, 2, 1) if value % n == 0)
        return (
            f"for {value} features, e.g. `G = escnn.group.cyclic_group({order}); "
            f"rep = escnn.group.directsum([G.regular_representation] * {value // order})` ({value // order} copies "
            f"of the regular representation of a group of order {order}); use your own group G"
        )
    return "e.g. `G = escnn.group.dihedral_group(4); rep = escnn.group.directsum([G.regular_representation] * 2)`"


def check_representations(owner: str, **reps) -> None:
    """Raise ``TypeError`` for any argument that is not an escnn :class:`~escnn.group.Representation`.

    Args:
        owner: the class or function taking the arguments, named in the message.
        reps: argument name -> value (``None`` values are skipped: optional representations).
    """
    for name, value in reps.items():
        if value is None or isinstance(value, Representation):
            continue
        raise TypeError(
            f"{owner}: {name} must be an escnn Representation (it says how the group acts on the features), got "
            f"{type(value).__name__} {value!r}; build one, {_example_for(value)}"
        )


def describe(rep: Representation) -> str:
    """``'name' of G (size D, irreps [...])``: enough to tell two representations apart in an error."""
    irreps = list(rep.irreps)
    shown = irreps if len(irreps) <= 8 else [*irreps[:8], "..."]
    return f"'{rep.name}' of {rep.group.name} (size {rep.size}, irreps {shown})"


def same_representation(a: Representation, b: Representation) -> bool:
    """True when ``a`` and ``b`` have the same content: group, irreps and change of basis (the name plays no part)."""
    return a is b or _ContentKey(a) == _ContentKey(b)


def check_same_representation(expected: Representation, got: Representation, what: str, fix: str) -> None:
    """Raise ``ValueError`` naming both representations unless they agree in content (never by size alone).

    Args:
        expected: the representation the layer is built on.
        got: the representation of the part.
        what: the part, e.g. ``"self_attn"``.
        fix: how to build the part right, appended to the message.
    """
    if same_representation(expected, got):
        return
    if expected.group is not got.group and expected.group != got.group:
        why = f"they act through different groups ({expected.group.name} and {got.group.name})"
    elif list(expected.irreps) != list(got.irreps):
        why = "their irreps differ"
    else:
        why = "their irreps agree but their changes of basis differ (another basis of the same space)"
    raise ValueError(
        f"{what} is built on representation {describe(got)}, but the layer's is {describe(expected)}: {why}, so "
        f"the layer would not be equivariant; {fix}"
    )


class _ContentKey:
    """Hashable key of a representation's content: group, irreps and the bytes of its change of basis."""

    __slots__ = ("rep", "_key")

    def __init__(self, rep: Representation):
        q = np.ascontiguousarray(rep.change_of_basis, dtype=np.float64)
        digest = hashlib.sha1(q.tobytes()).hexdigest()
        self.rep = rep
        self._key = (id(rep.group), rep.group.name, tuple(rep.irreps), q.shape, digest)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _ContentKey) and self._key == other._key


def decompose(rep: Representation) -> IsotypicDecomposition:
    """Return the (memoised) isotypic decomposition of ``rep``.

    Two representations share a decomposition only when group, irreps and change of basis are identical; the
    name plays no part.

    Raises:
        ValueError: if the change of basis is not orthogonal.
    """
    check_representations("decompose", rep=rep)
    return _decompose(_ContentKey(rep))


@functools.lru_cache(maxsize=512)
def _decompose(key: _ContentKey) -> IsotypicDecomposition:
    rep = key.rep
    group = rep.group
    q = np.asarray(rep.change_of_basis, dtype=np.float64)
    size = q.shape[0]
    ortho_err = np.abs(q.T @ q - np.eye(size)).max() if size else 0.0
    if ortho_err > ORTHOGONALITY_TOL:
        raise ValueError(
            f"representation '{rep.name}' has a non-orthogonal change of basis (|Q^T Q - I| = {ortho_err:.1e}); "
            "equivariant layers here need orthogonal representations: orthonormalise Q (e.g. with "
            "scipy.linalg.polar) and rebuild it with escnn.group.change_basis"
        )
    columns: dict[tuple, list[np.ndarray]] = {}
    copy_index = np.empty(size, dtype=np.int64)
    start = 0
    for copy, irrep_id in enumerate(rep.irreps):
        d = group.irrep(*irrep_id).size
        columns.setdefault(irrep_id, []).append(np.arange(start, start + d))
        copy_index[start : start + d] = copy
        start += d
    irreps = tuple(
        IrrepType(
            id=irrep_id,
            dim=group.irrep(*irrep_id).size,
            kind=group.irrep(*irrep_id).type,
            endomorphisms=_orthonormal_endomorphisms(group.irrep(*irrep_id)),
            columns=np.stack(columns[irrep_id]),
        )
        for irrep_id in sorted(columns)
    )
    return IsotypicDecomposition(
        group=group,
        size=size,
        irreps=irreps,
        change_of_basis=q,
        blocks=_block_structure(q),
        copy_index=copy_index,
    )


def _orthonormal_endomorphisms(irrep) -> np.ndarray:
    basis = np.asarray(irrep.endomorphism_basis(), dtype=np.float64)
    e, d, _ = basis.shape
    ortho, _ = np.linalg.qr(basis.reshape(e, d * d).T)
    out = ortho.T.reshape(e, d, d)
    # Fix signs so that the first element is a positive multiple of the identity when it can be.
    signs = np.sign(np.einsum("bii->b", out))
    signs[signs == 0] = 1.0
    return out * signs[:, None, None]


def _block_structure(q: np.ndarray) -> tuple[BlockType, ...]:
    """Split ``q`` into connected blocks and group equal blocks into types."""
    size = q.shape[0]
    if size == 0:
        return ()
    rows, cols = np.nonzero(np.abs(q) > ZERO_TOL)
    graph = coo_matrix((np.ones(rows.size), (rows, cols + size)), shape=(2 * size, 2 * size))
    _, labels = connected_components(graph, directed=False)
    row_labels, col_labels = labels[:size], labels[size:]
    groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    blocks: dict[tuple, np.ndarray] = {}
    for label in np.unique(row_labels):
        r = np.flatnonzero(row_labels == label)
        c = np.flatnonzero(col_labels == label)
        if r.size != c.size:  # cannot happen for an invertible q; keep the dense route honest
            return (BlockType(basis=q, rows=np.arange(size)[None], cols=np.arange(size)[None]),)
        block = q[np.ix_(r, c)]
        type_key = (r.size, np.round(block, 12).tobytes())
        groups.setdefault(type_key, []).append((r, c))
        blocks.setdefault(type_key, block)
    return tuple(
        BlockType(
            basis=blocks[k],
            rows=np.stack([r for r, _ in members]),
            cols=np.stack([c for _, c in members]),
        )
        for k, members in groups.items()
    )
