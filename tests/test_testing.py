import pytest
import torch
from conftest import rep_pair
from escnn import group as eg

from symm_layers.testing import assert_equivariant, equivariance_error, group_elements


def test_all_elements_of_small_finite_groups():
    assert len(group_elements(eg.dihedral_group(8))) == 16
    assert len(group_elements(eg.ico_group())) == 60


def test_continuous_groups_get_seeded_samples():
    first = [str(g) for g in group_elements(eg.so2_group(), num_samples=5, seed=1)]
    again = [str(g) for g in group_elements(eg.so2_group(), num_samples=5, seed=1)]
    assert first == again and len(first) == 5


def test_detects_a_non_equivariant_map():
    in_rep, out_rep = rep_pair("C8-regular")
    dense = torch.nn.Linear(in_rep.size, out_rep.size)
    err = equivariance_error(dense, in_rep, out_rep)
    assert err.max_rel > 1e-2
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(dense, in_rep, out_rep)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_is_equivariant(dtype):
    rep = rep_pair("D4-rotated")[0]
    err = assert_equivariant(lambda x: x, rep, rep, dtype=dtype)
    assert err.max_abs < (1e-5 if dtype == torch.float32 else 1e-12)
