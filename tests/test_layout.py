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
