"""Orbit-gather strategy: for permutation representations, W is one gather from orbit coefficients.

When G permutes the coordinates of both representations, an equivariant ``W`` is constant on each orbit of G on
index pairs ``(r, c)``, and the orbit indicators span Hom_G. The canonical DoFs of :mod:`.space` and the orbit
coefficients are related by a fixed linear map that is block-diagonal over pairs of coordinate orbits (one input
orbit, one output orbit), and equal for all pairs whose orbits carry the same action and the same piece of the
change of basis. So

    c_T = theta[perm_T] @ V_T^T        (one small GEMM per *type* of orbit pair T)
    W   = concat_T(c_T)[gather]         (one gather)

with ``V_T[o, t]`` the (constant) value of canonical basis element ``t`` on pair orbit ``o``. Autograd's backward
is the adjoint: an index-add over orbits and one GEMM per pair type. Training calls with few rows (at most half
the output orbits) on regular pair orbits skip ``W`` altogether through the lifted node of :mod:`.orbit_linear`,
which computes the same map from a gather of the input. The map is checked exactly at construction
(every canonical element is rebuilt from its orbit values), so a representation for which it does not hold is
refused instead of approximated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from ..permutation import copy_irrep_ids, permutation_action
from ..reps import ZERO_TOL, IsotypicDecomposition
from .base import HomBasisStrategy
from .orbit_linear import lift_plan, lifted_applies, lifted_linear
from .space import HomSpace

RECONSTRUCTION_TOL = 1e-9


@dataclass(frozen=True)
class PairType:
    """All coordinate-orbit pairs that share one local structure: their DoF indices and the orbit map ``V``."""

    perm: np.ndarray  # (pairs, n_dof) indices into the DoF vector
    values: np.ndarray  # (n_orbits, n_dof) float64
    pair_orbit: np.ndarray  # (s_out, s_in) pair-orbit label of each local entry
    rows: np.ndarray  # (pairs, s_out) output coordinates of each pair
    cols: np.ndarray  # (pairs, s_in) input coordinates of each pair


@dataclass(frozen=True)
class OrbitPlan:
    pair_types: tuple[PairType, ...]
    gather: np.ndarray  # (D_out * D_in,) index into the concatenated coefficients (+ one zero slot if needed)
    num_coefficients: int
    needs_zero: bool


def _refuse(why: str) -> ValueError:
    return ValueError(
        f"basis_expansion_scheme='orbit_gather' needs {why}; use basis_expansion_scheme='isotypic_expansion' "
        "(exact for every representation), or 'auto' to choose per representation"
    )


class _CoordinateOrbits:
    """Coordinate orbits of one representation, the irrep copies living on each, and a structural type key."""

    def __init__(self, decomposition: IsotypicDecomposition, what: str) -> None:
        action = permutation_action(decomposition)
        if action is None:
            raise _refuse(f"permutation representations, and {what} does not act by permutation matrices")
        self.action = action
        q = decomposition.change_of_basis
        ids = copy_irrep_ids(decomposition)
        copies_of: list[list[int]] = [[] for _ in action.orbits]
        self.orbit_of_copy = np.empty(decomposition.num_copies, dtype=np.int64)
        for copy in range(decomposition.num_copies):
            cols = np.flatnonzero(decomposition.copy_index == copy)
            labels = np.unique(action.orbit_of[np.flatnonzero((np.abs(q[:, cols]) > ZERO_TOL).any(axis=1))])
            if labels.size != 1:
                raise _refuse(
                    f"every irrep copy of {what}'s change of basis to live on one orbit of coordinates "
                    f"(copy {copy} spans {labels.size} orbits: a basis rotated across copies)"
                )
            self.orbit_of_copy[copy] = labels[0]
            copies_of[labels[0]].append(copy)
        self.copies_of = copies_of
        self.keys = []
        for orbit, copies in zip(action.orbits, copies_of, strict=True):
            cols = np.concatenate([np.flatnonzero(decomposition.copy_index == c) for c in copies])
            block = np.round(q[np.ix_(orbit, cols)], 10)
            self.keys.append((action.local_perms(orbit).tobytes(), tuple(ids[c] for c in copies), block.tobytes()))


def _pair_orbits(perms_out: np.ndarray, perms_in: np.ndarray) -> np.ndarray:
    """Label of the G-orbit of every local index pair ``(r, c)``, shape ``(s_out, s_in)``."""
    s_out, s_in = perms_out.shape[1], perms_in.shape[1]
    nodes = np.arange(s_out * s_in)
    targets = (perms_out[:, :, None] * s_in + perms_in[:, None, :]).reshape(perms_out.shape[0], -1)
    rows = np.tile(nodes, targets.shape[0])
    graph = sp.coo_matrix((np.ones(rows.size), (rows, targets.reshape(-1))), shape=(nodes.size, nodes.size))
    _, labels = connected_components(graph, directed=False)
    return labels.reshape(s_out, s_in)


def _rank_within(labels: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries carry the same label."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty_like(labels)
    rank[order] = np.arange(labels.size) - first
    return rank


def _canonical_elements(space: HomSpace, dofs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The canonical basis elements ``dofs`` restricted to ``rows x cols``: ``(len(dofs), len(rows), len(cols))``."""
    q_out, q_in = space.codomain.change_of_basis, space.domain.change_of_basis
    out = np.empty((dofs.size, rows.size, cols.size))
    for s in space.shared:
        inside = (dofs >= s.offset) & (dofs < s.offset + s.count)
        if not inside.any():
            continue
        i, j, b = np.unravel_index(dofs[inside] - s.offset, s.shape)
        left = q_out[rows][:, s.out.columns[i]].transpose(1, 0, 2)  # (n, s_out, d)
        right = q_in[cols][:, s.inp.columns[j]].transpose(1, 0, 2)  # (n, s_in, d)
        out[inside] = np.einsum("nrd,nde,nce->nrc", left, s.out.endomorphisms[b], right)
    return out


@functools.lru_cache(maxsize=128)
def orbit_plan(space: HomSpace) -> OrbitPlan:
    """The gather plan of ``space`` (memoised; spaces are memoised by content)."""
    out, inp = _CoordinateOrbits(space.codomain, "out_rep"), _CoordinateOrbits(space.domain, "in_rep")
    # Every DoF (type k, out copy i, in copy j, b) belongs to the pair (orbit of i, orbit of j). Sorting all DoFs by
    # (pair, type, local rank of i, local rank of j, b) makes each pair's DoFs contiguous and identically ordered
    # across pairs of one structural type.
    n_in_orbits = len(inp.action.orbits)
    keys = []  # per DoF: (pair, type index, rank of i, rank of j, b)
    for k, s in enumerate(space.shared):
        m_out, m_in, e = s.shape
        out_orbit = out.orbit_of_copy[space.codomain.copy_index[s.out.columns[:, 0]]]
        in_orbit = inp.orbit_of_copy[space.domain.copy_index[s.inp.columns[:, 0]]]
        i, j, b = np.meshgrid(np.arange(m_out), np.arange(m_in), np.arange(e), indexing="ij")
        pair = out_orbit[i] * n_in_orbits + in_orbit[j]
        keys.append(np.stack([pair, np.full_like(pair, k), _rank_within(out_orbit)[i], _rank_within(in_orbit)[j], b]))
    keys = np.concatenate([key.reshape(5, -1) for key in keys], axis=1)
    order = np.lexsort(keys[::-1])  # DoF indices sorted by pair first
    pairs_sorted = keys[0, order]
    pair_ids, starts = np.unique(pairs_sorted, return_index=True)
    pair_dofs = dict(zip(pair_ids.tolist(), np.split(order, starts[1:]), strict=True))
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for pair in pair_ids.tolist():
        p, q = divmod(pair, n_in_orbits)
        groups.setdefault((out.keys[p], inp.keys[q]), []).append((p, q))
    covered = np.zeros((space.codomain.size, space.domain.size), dtype=bool)
    gather = np.zeros((space.codomain.size, space.domain.size), dtype=np.int64)
    pair_types, offset = [], 0
    for members in groups.values():
        p0, q0 = members[0]
        rows0, cols0 = out.action.orbits[p0], inp.action.orbits[q0]
        pair_orbit = _pair_orbits(out.action.local_perms(rows0), inp.action.local_perms(cols0))
        elements = _canonical_elements(space, pair_dofs[p0 * n_in_orbits + q0], rows0, cols0)
        n_orbits = pair_orbit.max() + 1
        counts = np.bincount(pair_orbit.reshape(-1), minlength=n_orbits)
        sums = np.zeros((n_orbits, elements.shape[0]))
        np.add.at(sums, pair_orbit.reshape(-1), elements.reshape(elements.shape[0], -1).T)
        values = sums / counts[:, None]
        error = np.abs(values[pair_orbit] - np.moveaxis(elements, 0, -1)).max(initial=0.0)
        if error > RECONSTRUCTION_TOL:
            raise _refuse(f"Hom_G to be constant on orbits of index pairs (off by {error:.1e})")
        perm = np.stack([pair_dofs[p * n_in_orbits + q] for p, q in members])
        rows = np.stack([out.action.orbits[p] for p, _ in members])
        cols = np.stack([inp.action.orbits[q] for _, q in members])
        slots = offset + np.arange(len(members))[:, None, None] * n_orbits + pair_orbit[None]
        gather[rows[:, :, None], cols[:, None, :]] = slots
        covered[rows[:, :, None], cols[:, None, :]] = True
        pair_types.append(PairType(perm=perm, values=values, pair_orbit=pair_orbit, rows=rows, cols=cols))
        offset += len(members) * n_orbits
    needs_zero = not covered.all()
    gather[~covered] = offset
    return OrbitPlan(
        pair_types=tuple(pair_types),
        gather=gather.reshape(-1),
        num_coefficients=offset + int(needs_zero),
        needs_zero=needs_zero,
    )


class OrbitGather(HomBasisStrategy):
    """Stores, per type of coordinate-orbit pair, the DoF indices and a small orbit map; plus one gather index."""

    name = "orbit_gather"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, **unused) -> None:
        super().__init__(space)
        plan = orbit_plan(space)
        self.needs_zero = plan.needs_zero
        self.num_coefficients = plan.num_coefficients
        self._types = []
        for k, t in enumerate(plan.pair_types):
            self.register_constant(f"perm_{k}", t.perm.reshape(-1), device=device)
            self.register_constant(f"orbit_values_{k}", t.values, device=device, dtype=dtype)
            self.register_constant(f"orbit_values_t_{k}", np.ascontiguousarray(t.values.T), device=device, dtype=dtype)
            self._types.append((t.perm.shape[0], t.values.shape[0], t.values.shape[1]))
        self.register_constant("gather", plan.gather, device=device)
        self._single = len(self._types) == 1 and not self.needs_zero
        self.lift = lift_plan(plan, self.in_size)  # few rows per call: see .orbit_linear
        if self.lift is not None:
            self.register_constant("lift_index", self.lift.lift, device=device)
            self.register_constant("lift_input_order", self.lift.lift_order, device=device)
            self.register_constant("lift_out_order", self.lift.out_order, device=device)
            self.register_constant("lift_out_inverse", self.lift.out_inverse, device=device)
            self.register_constant("lift_heads", self.lift.heads, device=device)
            self.register_constant("lift_dof_order", self.lift.dof_order, device=device)

    def coefficients_of(self, dof: torch.Tensor) -> torch.Tensor:
        """Orbit values ``(..., num_coefficients)`` of the weight ``W(dof)`` (one per orbit, plus a zero slot)."""
        if self._single and dof.dim() == 1:  # the per-call hot path: two ops, buffers read from the dict
            buffers = self._buffers  # (nn.Module attribute lookup costs ~0.3 us per buffer at D=64)
            theta = dof.index_select(0, buffers["perm_0"]).view(self._types[0][0], self._types[0][2])
            return torch.mm(theta, buffers["orbit_values_t_0"]).view(-1)
        lead = dof.shape[:-1]
        pieces = []
        for k, (pairs, _, n_dof) in enumerate(self._types):
            theta = dof.index_select(-1, getattr(self, f"perm_{k}")).view(*lead, pairs, n_dof)
            pieces.append((theta @ getattr(self, f"orbit_values_{k}").mT).reshape(*lead, -1))
        if self.needs_zero:
            pieces.append(dof.new_zeros(*lead, 1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients_of(dof)
        w = coefficients.index_select(-1, self._buffers["gather"])
        return w.view(*dof.shape[:-1], self.out_size, self.in_size)

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        lead = matrix.shape[:-2]
        flat = matrix.reshape(*lead, self.out_size * self.in_size)
        sums = flat.new_zeros(*lead, self.num_coefficients).index_add_(-1, self.gather, flat)
        dof = matrix.new_zeros(*lead, self.dim)
        start = 0
        for k, (pairs, n_orbits, _) in enumerate(self._types):
            block = sums[..., start : start + pairs * n_orbits].unflatten(-1, (pairs, n_orbits))
            start += pairs * n_orbits
            values = (block @ getattr(self, f"orbit_values_{k}")).flatten(-2)
            dof.index_copy_(-1, getattr(self, f"perm_{k}"), values)
        return dof

    def linear(self, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        """Through :mod:`.orbit_linear`'s lifted node for the calls it applies to, else the composite path."""
        fix = None if bias is None else bias[0].spatial_matrix()
        bias_dof = None if bias is None else bias[1]
        if (bias is None or fix is not None) and lifted_applies(self, dof, x, bias_dof):
            return lifted_linear(self, dof, x, bias_dof, fix)
        return super().linear(dof, x, bias)

    def expand_batch(self, dof: torch.Tensor) -> torch.Tensor:
        return self.expand(dof)  # leading dimensions are native here

    def adjoint_batch(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.adjoint(matrix)

    def apply_per_row(self, dof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        weights = self.expand(dof.reshape(-1, self.dim))
        out = torch.einsum("roi,ri->ro", weights, x.reshape(-1, self.in_size))
        return out.view(*x.shape[:-1], self.out_size)

    def expand_macs(self) -> int:
        return sum(p * o * n for p, o, n in self._types) + self.out_size * self.in_size
