"""The spectral feature layout: same DoFs, same function (up to the change of basis), equivariance in spectral
coordinates, for eLinear and the norms."""

import pytest
import torch
from conftest import ALL_CASES, rep_pair

from symm_layers import eLayerNorm, eLinear, eRMSNorm
from symm_layers.basis import GroupHomomorphismBasis, hom_space
from symm_layers.basis.spectral import SpectralGather
from symm_layers.layout import SpectralCoordinates, spectral_representation
from symm_layers.testing import assert_equivariant


def _q(rep):
    return torch.as_tensor(rep.change_of_basis, dtype=torch.float64)


@pytest.mark.parametrize("case", ALL_CASES)
def test_spectral_coordinates_apply_q_transpose(case):
    rep = rep_pair(case)[0]
    coords = SpectralCoordinates(rep, dtype=torch.float64)
    x = torch.randn(4, rep.size, dtype=torch.float64)
    torch.testing.assert_close(coords.to_spectral(x), x @ _q(rep), atol=1e-12, rtol=0)
    torch.testing.assert_close(coords.from_spectral(coords.to_spectral(x)), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", ALL_CASES)
def test_spectral_gather_matches_the_rotated_reference(case):
    in_rep, out_rep = rep_pair(case)
    gather = SpectralGather(hom_space(in_rep, out_rep), dtype=torch.float64)
    ref = GroupHomomorphismBasis(in_rep, out_rep, "reference", dtype=torch.float64)
    dof = torch.randn(gather.dim, dtype=torch.float64)
    torch.testing.assert_close(gather.expand(dof), _q(out_rep).T @ ref(dof) @ _q(in_rep), atol=1e-12, rtol=0)
    matrix = torch.randn(out_rep.size, in_rep.size, dtype=torch.float64)
    expected = ref.coefficients(_q(out_rep) @ matrix @ _q(in_rep).T)
    torch.testing.assert_close(gather.adjoint(matrix), expected, atol=1e-12, rtol=0)


def _layers(case, kind):
    in_rep, out_rep = rep_pair(case)
    if kind == "linear":
        spatial = eLinear(in_rep, out_rep, dtype=torch.float64)
        spectral = eLinear(in_rep, out_rep, layout="spectral", dtype=torch.float64)
        if spatial.bias_module.has_bias:
            spatial.bias_module.reset_parameters("uniform")
        return spatial, spectral, in_rep, out_rep
    cls = eRMSNorm if kind == "rmsnorm" else eLayerNorm
    spatial = cls(in_rep, init_scheme="random", dtype=torch.float64)
    return spatial, cls(in_rep, layout="spectral", dtype=torch.float64), in_rep, in_rep


@pytest.mark.parametrize("kind", ["linear", "rmsnorm", "layernorm"])
@pytest.mark.parametrize("case", ALL_CASES)
def test_same_dofs_give_the_same_function_in_both_layouts(case, kind):
    spatial, spectral, in_rep, out_rep = _layers(case, kind)
    spectral.load_state_dict(spatial.state_dict())
    x = torch.randn(6, in_rep.size, dtype=torch.float64)
    expected = SpectralCoordinates(out_rep, dtype=torch.float64).to_spectral(spatial(x))
    z = SpectralCoordinates(in_rep, dtype=torch.float64).to_spectral(x)
    torch.testing.assert_close(spectral(z), expected, atol=1e-12, rtol=0)
    spectral.eval()
    with torch.no_grad():  # the cached path too
        torch.testing.assert_close(spectral(z), expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(spectral.export()(z), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", ["linear", "rmsnorm", "layernorm"])
@pytest.mark.parametrize("case", ALL_CASES)
def test_spectral_layers_are_equivariant_in_spectral_coordinates(case, kind, dtype):
    _, spectral, in_rep, out_rep = _layers(case, kind)
    spectral = spectral.to(dtype)
    assert_equivariant(spectral, spectral_representation(in_rep), spectral_representation(out_rep), dtype=dtype)


def test_diagonal_affine_is_refused_in_the_spectral_layout():
    rep = rep_pair("C8-regular")[0]
    with pytest.raises(ValueError, match="affine='isotypic'"):
        eRMSNorm(rep, affine="diagonal", layout="spectral")


def test_unknown_layout_names_the_choices():
    with pytest.raises(ValueError, match="spatial, spectral"):
        eLinear(*rep_pair("C8-regular"), layout="isotypic")


# ---------------------------------------------------------------------------------------------- composite layers
def _regular(copies=4):
    from escnn.group import dihedral_group, directsum

    return directsum([dihedral_group(4).regular_representation] * copies)


def _pair(build):
    """(spatial, spectral) modules from ``build(layout)``, sharing one state."""
    spatial, spectral = build("spatial").double(), build("spectral").double()
    spectral.load_state_dict(spatial.state_dict())
    return spatial, spectral


def test_attention_gives_the_same_function_in_both_layouts():
    from symm_layers import eMultiheadAttention

    rep = _regular()
    spatial, spectral = _pair(lambda layout: eMultiheadAttention(rep, 2, layout=layout))
    coords = SpectralCoordinates(rep, dtype=torch.float64)
    x = torch.randn(3, 5, rep.size, dtype=torch.float64)
    z = coords.to_spectral(x)
    torch.testing.assert_close(spectral(z, z, z)[0], coords.to_spectral(spatial(x, x, x)[0]), atol=1e-12, rtol=0)
    spectral.check_equivariance()


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_transformer_layers_and_stacks_give_the_same_function_in_both_layouts(kind):
    from symm_layers import TransformerStack, eMultiheadAttention, eTransformerDecoderLayer, eTransformerEncoderLayer

    rep = _regular()

    def build(layout):
        attn = [eMultiheadAttention(rep, 2, layout=layout) for _ in range(2)]
        if kind == "encoder":
            return eTransformerEncoderLayer(rep, attn[0], 64, 0.0, layout=layout)
        return eTransformerDecoderLayer(rep, *attn, 64, 0.0, layout=layout)

    spatial, spectral = _pair(build)
    coords = SpectralCoordinates(rep, dtype=torch.float64)
    x, memory = (torch.randn(3, n, rep.size, dtype=torch.float64) for n in (5, 7))
    args = () if kind == "encoder" else (memory,)
    spectral_args = tuple(coords.to_spectral(a) for a in args)
    expected = coords.to_spectral(spatial(x, *args))
    torch.testing.assert_close(spectral(coords.to_spectral(x), *spectral_args), expected, atol=1e-12, rtol=0)
    spectral.check_equivariance()
    # A stack of spectral layers keeps its own inputs and outputs in the representation's basis.
    stacks = [TransformerStack(layer, 2) for layer in (spatial, spectral)]
    stacks[1].load_state_dict(stacks[0].state_dict())
    torch.testing.assert_close(stacks[1](x, *args), stacks[0](x, *args), atol=1e-12, rtol=0)
    torch.testing.assert_close(stacks[1].export()(x, *args), stacks[0](x, *args), atol=1e-12, rtol=0)
    stacks[1].check_equivariance()


def test_a_spatial_attention_in_a_spectral_layer_is_refused():
    from symm_layers import eMultiheadAttention, eTransformerEncoderLayer

    rep = _regular()
    with pytest.raises(ValueError, match="layout='spectral'"):
        eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 2), 64, layout="spectral")


def test_emlp_gives_the_same_function_in_both_layouts():
    from symm_layers import eMLP

    in_rep, out_rep = rep_pair("D6-mixed")
    spatial, spectral = _pair(lambda layout: eMLP(in_rep, out_rep, [24, 24], layout=layout))
    x = torch.randn(4, in_rep.size, dtype=torch.float64)
    z = SpectralCoordinates(in_rep, dtype=torch.float64).to_spectral(x)
    expected = SpectralCoordinates(out_rep, dtype=torch.float64).to_spectral(spatial(x))
    torch.testing.assert_close(spectral(z), expected, atol=1e-12, rtol=0)
    spectral.check_equivariance()


@pytest.mark.parametrize("num_cond_layers", [0, 1])
def test_regressor_gives_the_same_function_in_every_layout(num_cond_layers):
    from escnn.group import dihedral_group, directsum

    from symm_layers import eCondTransformerRegressor

    G = dihedral_group(8)
    rep = directsum([G.quotient_representation((0, 1))] * 2)
    args = (rep, rep, None, 6, 3, 1, 2, 32, 0.0, 0.0)
    spatial, spectral = _pair(
        lambda layout: eCondTransformerRegressor(*args, num_cond_layers=num_cond_layers, layout=layout)
    )
    X, Z = torch.randn(2, 6, rep.size, dtype=torch.float64), torch.randn(2, 3, rep.size, dtype=torch.float64)
    torch.testing.assert_close(spectral(X, 0.3, Z), spatial(X, 0.3, Z), atol=1e-12, rtol=0)
    torch.testing.assert_close(spectral.export()(X, 0.3, Z), spatial(X, 0.3, Z), atol=1e-12, rtol=0)
    spectral.check_equivariance()


def test_regressor_auto_layout_follows_the_embedding_size():
    from escnn.group import dihedral_group

    from symm_layers import eCondTransformerRegressor

    rep = dihedral_group(8).quotient_representation((0, 1))
    small = eCondTransformerRegressor(rep, rep, None, 4, 2, 1, 2, 32, 0.0, 0.0)
    large = eCondTransformerRegressor(rep, rep, None, 4, 2, 1, 2, 1024, 0.0, 0.0)
    batch = eCondTransformerRegressor(rep, rep, None, 4, 2, 1, 2, 32, 0.0, 0.0, norm_module="batchnorm")
    assert (small.layout, large.layout, batch.layout) == ("spectral", "spatial", "spatial")
    assert "layout=spectral (auto)" in small.extra_repr()
