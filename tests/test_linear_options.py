"""eLinear's e3nn-style options: path_normalization, channels, force_irreps_out, instructions."""

import pytest
import torch
from conftest import rep_pair
from escnn import group as eg
from escnn.group import directsum

from symm_layers import eLinear
from symm_layers.testing import assert_equivariant

CASES = ["C8-regular", "C5-complex-irreps", "D4-rotated", "D6-mixed"]  # regular, complex, rotated, non-regular


@pytest.mark.parametrize("gradient_normalization", ["element", "path"])
@pytest.mark.parametrize("path_normalization", ["element", "path", 0.5])
@pytest.mark.parametrize("case_name", CASES)
def test_path_normalization_is_equivariant(case_name, path_normalization, gradient_normalization, dtype):
    in_rep, out_rep = rep_pair(case_name)
    layer = eLinear(in_rep, out_rep, path_normalization=path_normalization,
                    gradient_normalization=gradient_normalization, dtype=dtype)  # fmt: skip
    assert_equivariant(layer, in_rep, out_rep, dtype=dtype)


@pytest.mark.parametrize("case_name", CASES)
def test_path_normalization_gives_unit_variance_outputs(case_name):
    in_rep, out_rep = rep_pair(case_name)
    x = torch.randn(4000, in_rep.size, dtype=torch.float64)
    outs = []
    for seed in range(40):
        torch.manual_seed(seed)
        layer = eLinear(in_rep, out_rep, bias=False, path_normalization="element", dtype=torch.float64)
        outs.append(layer(x).pow(2).mean())
    torch.testing.assert_close(torch.stack(outs).mean(), torch.tensor(1.0, dtype=torch.float64), atol=0.15, rtol=0)


def test_path_normalization_values_agree_with_one_path_per_output():
    in_rep, out_rep = rep_pair("D6-mixed")
    weights = []
    for value in ("element", "path", 0.0, 1.0):
        torch.manual_seed(3)
        weights.append(eLinear(in_rep, out_rep, path_normalization=value, dtype=torch.float64).weight)
    for weight in weights[1:]:
        torch.testing.assert_close(weight, weights[0], atol=0, rtol=0)


def test_path_normalization_gradient_path_moves_the_scale_into_the_forward():
    in_rep, out_rep = rep_pair("C5-complex-irreps")
    torch.manual_seed(1)
    element = eLinear(in_rep, out_rep, path_normalization="path", dtype=torch.float64)
    torch.manual_seed(1)
    path = eLinear(in_rep, out_rep, path_normalization="path", gradient_normalization="path", dtype=torch.float64)
    x = torch.randn(5, in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(path(x), element(x))
    torch.testing.assert_close(path.weight_dof * path.dof_scale, element.weight_dof)


def test_unknown_path_normalization_is_refused():
    with pytest.raises(ValueError, match="path_normalization 'component'"):
        eLinear(*rep_pair("C8-regular"), path_normalization="component")
    with pytest.raises(ValueError, match="float in \\[0, 1\\]"):
        eLinear(*rep_pair("C8-regular"), path_normalization=2.0)


# ------------------------------------------------------------------------------------------- channels
@pytest.mark.parametrize("case_name", CASES)
def test_channel_out_is_equivariant(case_name, dtype):
    in_rep, out_rep = rep_pair(case_name)
    layer = eLinear(in_rep, out_rep, channel_in=3, channel_out=2, dtype=dtype)
    layer.bias_module.reset_parameters("uniform")
    assert layer(torch.randn(4, 3, in_rep.size, dtype=dtype)).shape == (4, 2, out_rep.size)
    layer.check_equivariance()


@pytest.mark.parametrize("case_name", CASES)
def test_weights_per_channel_is_equivariant(case_name, dtype):
    in_rep, out_rep = rep_pair(case_name)
    layer = eLinear(in_rep, out_rep, channel_in=3, weights_per_channel=True, dtype=dtype)
    assert layer(torch.randn(4, 3, in_rep.size, dtype=dtype)).shape == (4, 3, out_rep.size)
    layer.check_equivariance()


def test_channel_out_is_a_sum_of_maps_per_channel_pair():
    in_rep, out_rep = rep_pair("D6-mixed")
    layer = eLinear(in_rep, out_rep, channel_in=3, channel_out=2, dtype=torch.float64)
    layer.bias_module.reset_parameters("uniform")
    x = torch.randn(5, 3, in_rep.size, dtype=torch.float64)
    bias = layer.bias  # (2, D_out), one invariant vector per output channel
    for a in range(2):
        expected = sum(x[:, c] @ layer.basis(layer.weight_dof[a, c]).mT for c in range(3)) + bias[a]
        torch.testing.assert_close(layer(x)[:, a], expected)


def test_weights_per_channel_keeps_channels_apart():
    in_rep, out_rep = rep_pair("D4-rotated")
    layer = eLinear(in_rep, out_rep, channel_in=2, weights_per_channel=True, bias=False, dtype=torch.float64)
    x = torch.randn(5, 2, in_rep.size, dtype=torch.float64)
    for c in range(2):
        torch.testing.assert_close(layer(x)[:, c], x[:, c] @ layer.basis(layer.weight_dof[c]).mT)


def test_channel_out_init_matches_the_flattened_layer_variance():
    # DoFs of a channel pair see channel_in times the fan-in: same per-DoF std as eLinear on channel copies.
    G = eg.cyclic_group(4)
    rep = G.regular_representation
    layer = eLinear(rep, rep, channel_in=3, channel_out=2, init_scheme="kaiming_normal")
    flat = eLinear(directsum([rep] * 3), directsum([rep] * 2), init_scheme="kaiming_normal")
    torch.testing.assert_close(
        torch.as_tensor(layer._dof_std("kaiming_normal")).max(), torch.as_tensor(flat._dof_std("kaiming_normal")).max()
    )


def test_channel_options_are_validated():
    in_rep, out_rep = rep_pair("C8-regular")
    with pytest.raises(ValueError, match="need channel_in="):
        eLinear(in_rep, out_rep, channel_out=2)
    with pytest.raises(ValueError, match="channel_out \\(mix channels\\) or weights_per_channel"):
        eLinear(in_rep, out_rep, channel_in=2, channel_out=2, weights_per_channel=True)
    layer = eLinear(in_rep, out_rep, channel_in=2, channel_out=2)
    with pytest.raises(ValueError, match=f"\\(\\.\\.\\., 2, {in_rep.size}\\)"):
        layer(torch.randn(4, 3, in_rep.size))
    with pytest.raises(ValueError, match="not one dense matrix"):
        _ = layer.weight


def test_channel_out_backward_reaches_every_parameter():
    layer = eLinear(*rep_pair("C8-regular"), channel_in=2, channel_out=3)
    layer(torch.randn(4, 2, layer.in_features)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


# ------------------------------------------------------------------------------------------- paths
def test_force_irreps_out_builds_the_zero_map_plus_bias(dtype):
    G = eg.cyclic_group(5)
    in_rep, out_rep = G.irrep(1), directsum([G.irrep(2), G.trivial_representation])
    with pytest.raises(ValueError, match="no equivariant map"):
        eLinear(in_rep, out_rep)
    layer = eLinear(in_rep, out_rep, force_irreps_out=True, dtype=dtype)
    layer.bias_module.reset_parameters("uniform")
    x = torch.randn(3, in_rep.size, dtype=dtype)
    torch.testing.assert_close(layer(x), layer.bias.expand(3, -1))
    assert layer.weight_dof.numel() == 0 and layer.weight.abs().sum() == 0
    assert_equivariant(layer, in_rep, out_rep, dtype=dtype)


@pytest.mark.parametrize("case_name", CASES)
def test_instructions_keep_only_the_named_paths(case_name, dtype):
    in_rep, out_rep = rep_pair(case_name)
    full = eLinear(in_rep, out_rep, dtype=dtype)
    shared = full.basis.space.shared
    kept = [shared[0].out.id]
    layer = eLinear(in_rep, out_rep, instructions=kept, dtype=dtype)
    assert layer.basis.dim == shared[0].count
    assert_equivariant(layer, in_rep, out_rep, dtype=dtype)
    # The dense weight lies in the kept isotypic block: the full basis' coefficients vanish elsewhere.
    coefs = full.basis.coefficients(layer.weight.detach())
    torch.testing.assert_close(coefs[shared[0].count :], torch.zeros_like(coefs[shared[0].count :]))


def test_instructions_selecting_nothing_need_force_irreps_out():
    in_rep, out_rep = rep_pair("C8-regular")
    with pytest.raises(ValueError, match="no equivariant map"):
        eLinear(in_rep, out_rep, instructions=[])
    layer = eLinear(in_rep, out_rep, instructions=[], force_irreps_out=True, bias=False)
    torch.testing.assert_close(layer(torch.randn(2, in_rep.size)), torch.zeros(2, out_rep.size))


def test_instructions_with_unknown_irrep_are_refused():
    with pytest.raises(ValueError, match="carry no equivariant path"):
        eLinear(*rep_pair("C5-complex-irreps"), instructions=[(4,)])


def test_options_appear_in_extra_repr():
    text = repr(eLinear(*rep_pair("C8-regular"), path_normalization="path", channel_in=2, channel_out=3))
    assert "path_normalization=path" in text and "channel_in=2" in text and "channel_out=3" in text
