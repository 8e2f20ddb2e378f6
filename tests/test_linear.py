import pytest
import torch
from conftest import rep_pair, skip_unsupported
from escnn import group as eg
from escnn.group import directsum
from torch import nn

from symm_layers import BASIS_STRATEGIES, InvariantBias, eAffine, eLinear, impose_linear_equivariance
from symm_layers.testing import assert_equivariant, equivariance_error

CACHE_MODES = ["cached", "uncached"]


@pytest.mark.parametrize("weight_cache", CACHE_MODES)
@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_elinear_is_equivariant(case, strategy, weight_cache, dtype):
    skip_unsupported(strategy, case)
    in_rep, out_rep = rep_pair(case)
    layer = eLinear(in_rep, out_rep, basis_expansion_scheme=strategy, weight_cache=weight_cache, dtype=dtype)
    layer.bias_module.reset_parameters("uniform")
    assert_equivariant(layer, in_rep, out_rep, dtype=dtype)  # grad-recording path
    layer.eval()
    with torch.no_grad():
        assert_equivariant(layer, in_rep, out_rep, dtype=dtype)  # cached path


@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_elinear_strategies_agree_given_the_same_state(strategy):
    in_rep, out_rep = rep_pair("D8-permutation-mixed" if strategy == "orbit_gather" else "D6-mixed")
    ref = eLinear(in_rep, out_rep, basis_expansion_scheme="reference", dtype=torch.float64)
    layer = eLinear(in_rep, out_rep, basis_expansion_scheme=strategy, dtype=torch.float64)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(6, in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(layer(x), ref(x), atol=1e-12, rtol=0)


def test_elinear_float64_equivariance_is_tight_after_double():
    in_rep, out_rep = rep_pair("ico-rotated-to-irreps")
    layer = eLinear(in_rep, out_rep).double()
    err = equivariance_error(layer, in_rep, out_rep, dtype=torch.float64)
    assert err.max_rel <= 1e-12


def test_elinear_wrong_feature_size_names_expected_size():
    in_rep, out_rep = rep_pair("C8-regular")
    layer = eLinear(in_rep, out_rep)
    with pytest.raises(ValueError, match=f"expected {in_rep.size}"):
        layer(torch.randn(2, in_rep.size + 1))


def test_elinear_without_trivial_output_has_no_bias():
    G = eg.cyclic_group(5)
    layer = eLinear(directsum([G.irrep(1)] * 2), G.irrep(1))
    assert layer.bias is None
    assert_equivariant(layer, layer.in_rep, layer.out_rep)


def test_elinear_export_matches(case):
    in_rep, out_rep = rep_pair(case)
    layer = eLinear(in_rep, out_rep)
    layer.bias_module.reset_parameters("uniform")
    plain = layer.export()
    assert type(plain) is nn.Linear
    x = torch.randn(5, in_rep.size)
    torch.testing.assert_close(plain(x), layer(x))


def test_elinear_extra_repr_names_strategies():
    layer = eLinear(*rep_pair("C8-regular"), basis_expansion_scheme="memory_heavy", weight_cache="uncached")
    text = repr(layer)
    assert "memory_heavy" in text and "uncached" in text and "dim_hom" in text


def test_elinear_unknown_weight_cache_is_refused():
    with pytest.raises(ValueError, match="cached, uncached"):
        eLinear(*rep_pair("C8-regular"), weight_cache="sometimes")


def test_elinear_init_none_skips_initialisation():
    layer = eLinear(*rep_pair("C8-regular"), init_scheme=None)
    assert layer.weight_dof.shape == (layer.basis.dim,)


def test_elinear_trains_like_a_linear_layer():
    in_rep, out_rep = rep_pair("D8-regular")
    layer = eLinear(in_rep, out_rep)
    target = eLinear(in_rep, out_rep)
    x = torch.randn(64, in_rep.size)
    with torch.no_grad():
        y = target(x)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss = (layer(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3


@pytest.mark.parametrize("weight_cache", CACHE_MODES)
def test_invariant_bias_is_invariant(case, dtype, weight_cache):
    _, out_rep = rep_pair(case)
    module = InvariantBias(out_rep, init_scheme="uniform", weight_cache=weight_cache, dtype=dtype)
    if not module.has_bias:
        pytest.skip("no trivial irrep")
    assert_equivariant(module, out_rep, out_rep, dtype=dtype)
    with torch.no_grad():
        assert_equivariant(module.eval(), out_rep, out_rep, dtype=dtype)
    for g in [out_rep.group.identity] + list(out_rep.group.testing_elements())[:5]:
        rho = torch.as_tensor(out_rep(g), dtype=dtype)
        torch.testing.assert_close(rho @ module.bias, module.bias)


def test_invariant_bias_without_trivial_irrep_is_identity():
    G = eg.cyclic_group(5)
    module = InvariantBias(G.irrep(2))
    x = torch.randn(3, 2)
    assert module(x) is x and module.bias is None and list(module.parameters()) == []


def test_invariant_bias_export_matches():
    _, out_rep = rep_pair("D6-mixed")
    module = InvariantBias(out_rep, init_scheme="uniform")
    x = torch.randn(4, out_rep.size)
    torch.testing.assert_close(module.export()(x), module(x))


@pytest.mark.parametrize("learnable", [True, False])
def test_eaffine_is_equivariant(case, dtype, learnable):
    in_rep, _ = rep_pair(case)
    module = eAffine(in_rep, learnable=learnable, init_scheme="random", dtype=dtype)
    if learnable:
        assert_equivariant(module, in_rep, in_rep, dtype=dtype)
    else:
        scale = torch.randn(4, module.num_scale_dof, dtype=dtype)
        bias = torch.randn(4, module.num_bias_dof, dtype=dtype)
        x = torch.randn(4, in_rep.size, dtype=dtype)
        assert_equivariant(lambda v: module(v, scale, bias), in_rep, in_rep, x)


def test_eaffine_identity_init_is_identity():
    in_rep, _ = rep_pair("D4-rotated")
    x = torch.randn(3, in_rep.size)
    torch.testing.assert_close(eAffine(in_rep)(x), x)


def test_eaffine_scales_each_irrep_copy():
    G = eg.cyclic_group(5)
    rep = directsum([G.irrep(1), G.trivial_representation])
    module = eAffine(rep, bias=False)
    with torch.no_grad():
        module.scale_dof.copy_(torch.tensor([2.0, -3.0]))
    torch.testing.assert_close(module(torch.ones(1, 3)), torch.tensor([[2.0, 2.0, -3.0]]))


def test_eaffine_export_matches():
    in_rep, _ = rep_pair("D6-mixed")
    module = eAffine(in_rep, init_scheme="random")
    x = torch.randn(5, in_rep.size)
    torch.testing.assert_close(module.export()(x), module(x))


def test_eaffine_external_dof_shape_is_checked():
    in_rep, _ = rep_pair("C8-regular")
    module = eAffine(in_rep, learnable=False)
    with pytest.raises(ValueError, match=f"scale_dof of shape \\(\\.\\.\\., {module.num_scale_dof}\\)"):
        module(torch.randn(2, in_rep.size), torch.randn(2, module.num_scale_dof + 1), None)


def test_impose_linear_equivariance_constrains_weight_and_bias():
    in_rep, out_rep = rep_pair("D4-rotated")
    lin = nn.Linear(in_rep.size, out_rep.size)
    impose_linear_equivariance(lin, in_rep, out_rep)
    assert_equivariant(lin, in_rep, out_rep)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    lin(torch.randn(8, in_rep.size)).pow(2).sum().backward()
    opt.step()
    assert_equivariant(lin, in_rep, out_rep)


def test_impose_linear_equivariance_checks_sizes():
    in_rep, out_rep = rep_pair("C8-regular")
    with pytest.raises(ValueError, match=f"nn.Linear\\({in_rep.size}, {out_rep.size}\\)"):
        impose_linear_equivariance(nn.Linear(3, 4), in_rep, out_rep)


@pytest.mark.parametrize("strategy", ["isotypic_expansion", "memory_heavy"])
def test_indexed_weights_use_one_dof_row_per_sample(strategy, dtype):
    in_rep, out_rep = rep_pair("D6-mixed")
    layer = eLinear(in_rep, out_rep, num_indexed_weights=3, basis_expansion_scheme=strategy, dtype=dtype)
    index = torch.tensor([[0, 2], [1, 2]])
    x = torch.randn(2, 2, in_rep.size, dtype=dtype)
    out = layer(x, weight_index=index)
    for i in range(2):
        for j in range(2):
            weight = layer.basis(layer.weight_dof[index[i, j]])
            torch.testing.assert_close(out[i, j], weight @ x[i, j] + layer.bias)
    assert_equivariant(lambda v: layer(v, weight_index=index), in_rep, out_rep, x)


@pytest.mark.parametrize("strategy", ["isotypic_expansion", "memory_heavy"])
def test_external_weights_are_equivariant_and_differentiable(strategy, dtype):
    in_rep, out_rep = rep_pair("C5-complex-irreps")
    layer = eLinear(in_rep, out_rep, external_weights=True, basis_expansion_scheme=strategy, dtype=dtype)
    assert layer.weight_dof is None
    dof = torch.randn(4, layer.basis.dim, dtype=dtype, requires_grad=True)
    x = torch.randn(4, in_rep.size, dtype=dtype)
    assert_equivariant(lambda v: layer(v, weight_dof=dof), in_rep, out_rep, x)
    layer(x, weight_dof=dof).sum().backward()
    assert dof.grad is not None and dof.grad.abs().sum() > 0


def test_per_row_paths_agree_across_strategies():
    in_rep, out_rep = rep_pair("ico-rotated-to-irreps")
    iso = eLinear(in_rep, out_rep, external_weights=True, dtype=torch.float64)
    ref = eLinear(in_rep, out_rep, external_weights=True, basis_expansion_scheme="reference", dtype=torch.float64)
    ref.load_state_dict(iso.state_dict())
    dof = torch.randn(3, iso.basis.dim, dtype=torch.float64)
    x = torch.randn(3, in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(iso(x, weight_dof=dof), ref(x, weight_dof=dof), atol=1e-12, rtol=0)


def test_per_row_layers_need_their_argument():
    in_rep, out_rep = rep_pair("C8-regular")
    with pytest.raises(ValueError, match="weight_dof of shape"):
        eLinear(in_rep, out_rep, external_weights=True)(torch.randn(2, in_rep.size))
    with pytest.raises(ValueError, match="needs weight_index"):
        eLinear(in_rep, out_rep, num_indexed_weights=2)(torch.randn(2, in_rep.size))
    with pytest.raises(ValueError, match="num_indexed_weights=n"):
        eLinear(in_rep, out_rep)(torch.randn(2, in_rep.size), weight_index=torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="no single dense weight"):
        eLinear(in_rep, out_rep, num_indexed_weights=2).export()


def test_path_normalisation_same_function_distribution_smaller_gradients():
    G = eg.dihedral_group(4)
    in_rep, out_rep = directsum([G.regular_representation] * 8), directsum([G.regular_representation] * 4)
    torch.manual_seed(1)
    element = eLinear(in_rep, out_rep)
    torch.manual_seed(1)
    path = eLinear(in_rep, out_rep, gradient_normalization="path")
    x = torch.randn(16, in_rep.size)
    torch.testing.assert_close(path(x), element(x))  # same draw, same function
    assert path.weight_dof.std().item() == pytest.approx(1.0, rel=0.15)
    element(x).pow(2).sum().backward()
    path(x).pow(2).sum().backward()
    scale = path.dof_scale
    torch.testing.assert_close(path.weight_dof.grad, element.weight_dof.grad * scale)
    assert_equivariant(path, in_rep, out_rep)


def test_unknown_gradient_normalisation_is_refused():
    with pytest.raises(ValueError, match="'element' or 'path'"):
        eLinear(*rep_pair("C8-regular"), gradient_normalization="layer")


@pytest.mark.parametrize("weight_cache", CACHE_MODES)
def test_elinear_compiles(weight_cache):
    in_rep, out_rep = rep_pair("D6-mixed")
    layer = eLinear(in_rep, out_rep, weight_cache=weight_cache)
    compiled = torch.compile(layer, backend="aot_eager")
    x = torch.randn(4, in_rep.size)
    torch.testing.assert_close(compiled(x), layer(x))
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layer(x))


def test_eaffine_compiles():
    in_rep, _ = rep_pair("D4-rotated")
    module = eAffine(in_rep, init_scheme="random")
    x = torch.randn(3, in_rep.size)
    torch.testing.assert_close(torch.compile(module, backend="aot_eager")(x), module(x))


def test_trivial_group_constraint_is_vacuous():
    G = eg.cyclic_group(1)
    in_rep, out_rep = directsum([G.trivial_representation] * 5), directsum([G.trivial_representation] * 3)
    layer = eLinear(in_rep, out_rep)
    assert layer.basis.dim == 15
    dense = torch.randn(3, 5)
    torch.testing.assert_close(layer.basis.orthogonal_projection(dense), dense)
    plain = nn.Linear(5, 3)
    with torch.no_grad():
        layer.weight_dof.copy_(layer.basis.coefficients(plain.weight))
        layer.bias_module.bias_dof.copy_(layer.bias_module.subspace.adjoint(plain.bias))
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), plain(x))
