import numpy as np
import pytest
from conftest import random_orthogonal, rep_pair, rotated
from escnn import group as eg
from escnn.group import Representation, change_basis, directsum

from symm_layers import decompose, eLinear
from symm_layers.testing import assert_equivariant


def _block_diag_rho(decomposition, g):
    group = decomposition.group
    blocks = np.zeros((decomposition.size, decomposition.size))
    for t in decomposition.irreps:
        for cols in t.columns:
            blocks[np.ix_(cols, cols)] = group.irrep(*t.id)(g)
    return blocks


@pytest.mark.parametrize("case", ["C8-regular", "D6-mixed", "D4-rotated", "C5-complex-irreps"])
def test_decomposition_reconstructs_representation(case):
    rep = rep_pair(case)[0]
    d = decompose(rep)
    for g in rep.group.elements:
        q = d.change_of_basis
        np.testing.assert_allclose(q @ _block_diag_rho(d, g) @ q.T, rep(g), atol=1e-10)


def test_isotypic_change_of_basis_orders_types():
    G = eg.dihedral_group(6)
    rep = directsum([G.irrep(1, 1), G.regular_representation, G.irrep(1, 1)])
    d = decompose(rep)
    assert d.irrep_ids == tuple(sorted(d.irrep_ids))
    q_iso = d.isotypic_change_of_basis
    np.testing.assert_allclose(q_iso.T @ q_iso, np.eye(rep.size), atol=1e-12)
    slices = d.isotypic_slices
    assert sum(s.stop - s.start for s in slices.values()) == rep.size
    assert d.multiplicities[d.irrep_ids.index((1, 1))] == 4  # two explicit copies + two inside the regular rep


def test_regular_sum_has_repeated_blocks():
    G = eg.cyclic_group(8)
    d = decompose(directsum([G.regular_representation] * 5))
    assert len(d.blocks) == 1
    assert d.blocks[0].rows.shape == (5, 8)


def test_sum_of_irreps_is_a_permutation_basis():
    G = eg.cyclic_group(5)
    assert decompose(directsum([G.irrep(1), G.trivial_representation, G.irrep(2)])).is_permutation_basis


def test_memoised_by_content_not_name():
    G = eg.dihedral_group(4)
    base = directsum([G.regular_representation, G.irrep(1, 1)])
    a = change_basis(base, random_orthogonal(base.size, 10), name="same_name")
    b = change_basis(base, random_orthogonal(base.size, 11), name="same_name")
    assert decompose(a) is not decompose(b)
    assert decompose(a) is decompose(change_basis(base, random_orthogonal(base.size, 10), name="other"))
    layer = eLinear(a, b)
    assert_equivariant(layer, a, b)


def test_non_orthogonal_representation_is_refused():
    G = eg.cyclic_group(4)
    base = G.regular_representation
    skew = np.eye(4) + 0.3 * np.triu(np.ones((4, 4)), 1)
    rep = Representation(G, "skewed", base.irreps, skew @ base.change_of_basis)
    with pytest.raises(ValueError, match="non-orthogonal"):
        decompose(rep)


def test_different_groups_are_refused():
    with pytest.raises(ValueError, match="different groups"):
        eLinear(eg.cyclic_group(4).regular_representation, eg.cyclic_group(8).regular_representation)


def test_rotated_rep_is_one_dense_block():
    G = eg.cyclic_group(6)
    d = decompose(rotated(G.regular_representation, 0))
    assert len(d.blocks) == 1 and d.blocks[0].rows.shape == (1, 6)
