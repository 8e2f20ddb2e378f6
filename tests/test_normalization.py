import pytest
import torch
from conftest import rep_pair
from escnn import group as eg
from escnn.group import directsum
from torch import nn

from symm_layers.normalization import (
    NORM_MODULES,
    BatchNormLastDim,
    build_norm,
    build_plain_norm,
    eBatchNorm,
    eLayerNorm,
    eRMSNorm,
)
from symm_layers.testing import assert_equivariant, equivariance_error

NORMS = [eRMSNorm, eLayerNorm, eBatchNorm]


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1.5, 1.5)
    return module


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", NORMS)
def test_norm_is_equivariant(case, cls, dtype, training):
    rep = rep_pair(case)[0]
    module = _randomise(cls(rep, device=None, dtype=dtype)).train(training)
    x = torch.randn(4, 3, rep.size, dtype=dtype) * 3 + 1
    assert_equivariant(module, rep, rep, x)


@pytest.mark.parametrize("cls", NORMS)
def test_norm_export_matches(case, cls):
    rep = rep_pair(case)[0]
    module = _randomise(cls(rep))
    x = torch.randn(5, rep.size)
    if cls is eBatchNorm:
        module.train()(x * 2 + 1)  # populate running statistics
    module.eval()
    torch.testing.assert_close(module.export()(x), module(x))


def test_rmsnorm_without_affine_equals_torch():
    rep = rep_pair("D6-mixed")[0]
    x = torch.randn(7, rep.size)
    ours = eRMSNorm(rep, eps=1e-6, equiv_affine=False)
    torch.testing.assert_close(ours(x), nn.RMSNorm(rep.size, eps=1e-6, elementwise_affine=False)(x))


def test_layernorm_on_permutation_rep_is_torch_layernorm():
    G = eg.dihedral_group(4)
    rep = directsum([G.regular_representation] * 3)
    module = eLayerNorm(rep)
    assert module.centring == "mean"
    x = torch.randn(5, rep.size) + 4
    torch.testing.assert_close(module(x), nn.LayerNorm(rep.size, elementwise_affine=False)(x))


def test_layernorm_on_all_trivial_rep_is_torch_layernorm():
    G = eg.cyclic_group(3)
    rep = directsum([G.trivial_representation] * 6)
    x = torch.randn(5, 6)
    torch.testing.assert_close(eLayerNorm(rep)(x), nn.LayerNorm(6, elementwise_affine=False)(x))


def test_layernorm_without_trivial_irreps_does_not_centre():
    G = eg.cyclic_group(5)
    rep = directsum([G.irrep(1), G.irrep(2)])
    module = eLayerNorm(rep, equiv_affine=False)
    assert module.centring == "none"
    x = torch.randn(3, rep.size)
    torch.testing.assert_close(module(x), nn.RMSNorm(rep.size, eps=1e-5, elementwise_affine=False)(x))


def test_layernorm_keeps_one_dimensional_irrep_coordinates_graded():
    G = eg.dihedral_group(4)
    rep = directsum([G.irrep(0, 0), G.irrep(1, 0), G.irrep(1, 0), G.irrep(1, 0)])  # one trivial + three 1-D irreps
    out = eLayerNorm(rep, equiv_affine=False)(torch.tensor([[5.0, 1.0, 2.0, 3.0]]))
    assert len({round(v, 4) for v in out.abs().flatten().tolist()}) > 2  # not mapped to +-1 copy by copy


def test_layernorm_is_stable_for_large_offsets():
    rep = rep_pair("C8-regular")[0]
    x = torch.randn(4, rep.size, dtype=torch.float64) + 1e6
    out = eLayerNorm(rep, equiv_affine=False, dtype=torch.float64)(x)
    expected = nn.LayerNorm(rep.size, elementwise_affine=False, dtype=torch.float64)(x)
    torch.testing.assert_close(out, expected)


def test_batchnorm_normalises_trivial_and_irrep_norms():
    G = eg.cyclic_group(5)
    rep = directsum([G.trivial_representation, G.irrep(1)])
    module = eBatchNorm(rep, affine=False, eps=0.0)
    out = module(torch.randn(4096, rep.size) * torch.tensor([3.0, 2.0, 2.0]) + torch.tensor([5.0, 0.0, 0.0]))
    assert out[:, 0].mean().abs() < 1e-5
    torch.testing.assert_close(out[:, 0].pow(2).mean(), torch.tensor(1.0))
    torch.testing.assert_close(out[:, 1:].pow(2).sum(-1).mean() / 2, torch.tensor(1.0))


def test_batchnorm_running_statistics_track_the_batch():
    rep = rep_pair("D4-rotated")[0]
    module = eBatchNorm(rep, momentum=1.0)
    x = torch.randn(64, rep.size) * 2
    module.train()(x)
    torch.testing.assert_close(module.eval()(x), module.train()(x))


def test_batchnorm_instance_mode_uses_token_axes():
    rep = rep_pair("C8-regular")[0]
    module = eBatchNorm(rep, instance=True, affine=False)
    x = torch.randn(3, 10, rep.size)
    torch.testing.assert_close(module(x)[1], module(x[1:2])[0])


@pytest.mark.parametrize("option", [{"reduce": "max"}, {"normalization": "norm"}])
def test_batchnorm_options_stay_equivariant(option):
    rep = rep_pair("ico-rotated-to-irreps")[0]
    assert_equivariant(eBatchNorm(rep, **option), rep, rep, torch.randn(8, rep.size))


@pytest.mark.parametrize("case_name", ["C8-regular", "D6-mixed", "ico-rotated-to-irreps"])
def test_batchnorm_e3nn_eps_is_equivariant(case_name, dtype):
    rep = rep_pair(case_name)[0]
    module = eBatchNorm(rep, eps=1e-4, eps_mode="interpolate", dtype=dtype)
    assert_equivariant(module, rep, rep, dtype=dtype, batch_shape=(8,))
    module.eval()
    assert_equivariant(module, rep, rep, dtype=dtype, batch_shape=(8,))


def test_batchnorm_e3nn_eps_divides_by_the_interpolated_norm():
    G = eg.cyclic_group(5)
    rep = directsum([G.irrep(1)])
    x = torch.randn(16, rep.size, dtype=torch.float64)
    norm = x.pow(2).sum(-1).mean() / 2  # component normalisation of the one irrep copy
    module = eBatchNorm(rep, eps=0.25, eps_mode="interpolate", affine=False, dtype=torch.float64)
    torch.testing.assert_close(module(x), x / (0.75 * norm + 0.25).sqrt())


def test_batchnorm_e3nn_eps_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="eps in \\[0, 1\\]"):
        eBatchNorm(rep_pair("C8-regular")[0], eps=2.0, eps_mode="interpolate")
    with pytest.raises(ValueError, match="'add' \\(n \\+ eps\\) or 'interpolate'"):
        eBatchNorm(rep_pair("C8-regular")[0], eps_mode="e3nn")


def test_batchnorm_bad_option_is_refused():
    with pytest.raises(ValueError, match="'mean' or 'max'"):
        eBatchNorm(rep_pair("C8-regular")[0], reduce="median")


def test_batchnorm_plain_twin_matches_torch():
    x = torch.randn(4, 6, 5)
    ours, theirs = BatchNormLastDim(5), nn.BatchNorm1d(5)
    torch.testing.assert_close(ours(x), theirs(x.reshape(-1, 5)).view_as(x))


@pytest.mark.parametrize("name", list(NORM_MODULES))
def test_norm_registry_builds_equivariant_and_plain(name):
    rep = rep_pair("C8-regular")[0]
    assert isinstance(build_norm(name, rep, 1e-5), NORM_MODULES[name][0])
    assert isinstance(build_plain_norm(name, rep.size, 1e-5), NORM_MODULES[name][1])


def test_norm_registry_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="rmsnorm, layernorm, batchnorm"):
        build_norm("groupnorm", rep_pair("C8-regular")[0], 1e-5)


@pytest.mark.parametrize("cls", NORMS)
def test_norm_wrong_feature_size(cls):
    rep = rep_pair("C8-regular")[0]
    with pytest.raises(ValueError, match=f"expected {rep.size}"):
        cls(rep)(torch.randn(2, rep.size - 1))


@pytest.mark.parametrize("cls", NORMS)
def test_norm_state_dict_round_trip(cls):
    rep = rep_pair("D6-mixed")[0]
    a, b = _randomise(cls(rep)), cls(rep)
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, rep.size)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("cls", NORMS)
def test_norm_float64_after_double_is_tight(cls):
    rep = rep_pair("ico-rotated-to-irreps")[0]
    module = _randomise(cls(rep)).double().eval()
    assert equivariance_error(module, rep, rep, dtype=torch.float64).max_rel < 1e-12


@pytest.mark.parametrize("cls", NORMS)
def test_norm_compiles(cls):
    rep = rep_pair("D4-rotated")[0]
    module = _randomise(cls(rep)).eval()
    x = torch.randn(4, rep.size)
    torch.testing.assert_close(torch.compile(module, backend="aot_eager")(x), module(x))


PERMUTATION_CASES = ["C8-regular", "D8-regular", "ico-regular", "D6-mixed"]


@pytest.mark.parametrize("case", PERMUTATION_CASES)
@pytest.mark.parametrize("cls", [eRMSNorm, eLayerNorm])
def test_diagonal_affine_norm_is_equivariant(case, cls, dtype):
    rep = rep_pair(case)[0]
    module = _randomise(cls(rep, affine="diagonal", dtype=dtype))
    assert module.fused_affine
    assert_equivariant(module, rep, rep, torch.randn(4, 3, rep.size, dtype=dtype))


@pytest.mark.parametrize("cls", [eRMSNorm, eLayerNorm])
def test_diagonal_affine_matches_the_isotypic_path_with_the_same_map(cls):
    rep = rep_pair("C8-regular")[0]
    fused = _randomise(cls(rep, affine="diagonal"))
    x = torch.randn(5, rep.size)
    unfused = cls(rep, affine="diagonal")
    unfused.load_state_dict(fused.state_dict())
    unfused.fused_affine = False  # the unfused reference: normalise, then apply the affine module
    torch.testing.assert_close(fused(x), unfused(x))
    torch.testing.assert_close(fused.export()(x), fused(x))


def test_diagonal_affine_on_trivial_group_is_torch_layernorm():
    G = eg.cyclic_group(1)
    rep = directsum([G.trivial_representation] * 6)
    ours, theirs = _randomise(eLayerNorm(rep, affine="diagonal")), nn.LayerNorm(6)
    with torch.no_grad():
        theirs.weight.copy_(ours.affine.scale_dof)
        theirs.bias.copy_(ours.affine.bias_dof)
    x = torch.randn(3, 6)
    torch.testing.assert_close(ours(x), theirs(x))


def test_diagonal_affine_scales_are_orbit_constant():
    G = eg.dihedral_group(4)
    rep = directsum([G.regular_representation, G.trivial_representation])
    module = eRMSNorm(rep, affine="diagonal")
    assert module.affine.num_orbits == 2


def test_diagonal_affine_refuses_non_permutation_reps():
    with pytest.raises(ValueError, match="affine='isotypic'"):
        eRMSNorm(rep_pair("D4-rotated")[0], affine="diagonal")


def test_unknown_affine_is_refused():
    with pytest.raises(ValueError, match="isotypic, diagonal"):
        eLayerNorm(rep_pair("C8-regular")[0], affine="full")
