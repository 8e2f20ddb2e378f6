"""The lifted autograd node of orbit_gather (symm_layers.basis.orbit_linear) against the composite path."""

import copy

import pytest
import torch
from conftest import DTYPES, rep_pair
from escnn import group as eg
from escnn.group import directsum

from symm_layers import eLinear
from symm_layers.basis import orbit_linear
from symm_layers.testing import assert_equivariant


@pytest.fixture
def any_size(monkeypatch):
    """Let the node run on small weights, so the tests stay fast (the size rule itself is tested below)."""
    monkeypatch.setattr(orbit_linear, "MIN_LIFTED_ENTRIES", 0)


def _regular(group, copies):
    return directsum([group.regular_representation] * copies)


#: (in_rep, out_rep) pairs with a lift plan: free actions, several orbits on each side.
LIFT_CASES = {
    "C4 6->6": lambda: (_regular(eg.cyclic_group(4), 6), _regular(eg.cyclic_group(4), 6)),
    "D4 3->5": lambda: (_regular(eg.dihedral_group(4), 3), _regular(eg.dihedral_group(4), 5)),
    "ico 1->2": lambda: (eg.ico_group().regular_representation, _regular(eg.ico_group(), 2)),
}


def _pair(name):
    if name not in _pair.memo:
        _pair.memo[name] = LIFT_CASES[name]()
    return _pair.memo[name]


_pair.memo = {}


def _layers(name, dtype, bias=True):
    """The same eLinear twice: the node enabled, and a copy forced onto the composite path."""
    in_rep, out_rep = _pair(name)
    layer = eLinear(in_rep, out_rep, bias=bias, basis_expansion_scheme="orbit_gather", dtype=dtype)
    composite = copy.deepcopy(layer)
    composite.basis.strategy.lift = None
    return layer, composite


def _rows(layer):
    return layer.basis.strategy.lift.heads.size // 2


def _uses_node(y):
    """True when the lifted node made ``y`` (directly, or through the view that restores leading dimensions)."""
    fn = y.grad_fn
    if fn is not None and type(fn).__name__.startswith("View"):
        fn = fn.next_functions[0][0]
    return fn is not None and "LiftedLinear" in type(fn).__name__


@pytest.mark.parametrize("name", list(LIFT_CASES))
def test_lift_plan_exists_for_regular_representations(name):
    layer, _ = _layers(name, torch.float64)
    plan = layer.basis.strategy.lift
    assert plan is not None
    assert sorted(plan.out_order.tolist()) == list(range(layer.out_features))
    assert plan.lift.size == (layer.out_features // plan.heads.size) * layer.in_features


def test_no_lift_plan_when_pair_orbits_are_not_regular():
    in_rep, out_rep = rep_pair("D8-permutation-mixed")  # quotient orbits and a trivial copy
    layer = eLinear(in_rep, out_rep, basis_expansion_scheme="orbit_gather")
    assert layer.basis.strategy.lift is None
    x = torch.randn(1, in_rep.size, requires_grad=True)
    assert not _uses_node(layer(x))


@pytest.mark.usefixtures("any_size")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LIFT_CASES))
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_match_composite(name, dtype, bias):
    layer, composite = _layers(name, dtype, bias)
    x = torch.randn(_rows(layer), layer.in_features, dtype=dtype, requires_grad=True)
    upstream = torch.randn(x.shape[0], layer.out_features, dtype=dtype)
    y = layer(x)
    assert _uses_node(y)
    expected = composite(x)
    assert not _uses_node(expected)
    torch.testing.assert_close(y, expected)
    got = torch.autograd.grad(y, [x, *layer.parameters()], upstream)
    want = torch.autograd.grad(expected, [x, *composite.parameters()], upstream)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.usefixtures("any_size")
@pytest.mark.parametrize("shape", [(), (1,), (1, 2)])
def test_leading_shapes(shape):
    layer, composite = _layers("C4 6->6", torch.float64)
    x = torch.randn(*shape, layer.in_features, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert _uses_node(y) and y.shape == (*shape, layer.out_features)
    torch.testing.assert_close(y, composite(x))
    (got,) = torch.autograd.grad(y.sum(), x)
    (want,) = torch.autograd.grad(composite(x).sum(), x)
    torch.testing.assert_close(got, want)


@pytest.mark.usefixtures("any_size")
def test_only_the_inputs_that_need_gradients_get_them():
    layer, composite = _layers("D4 3->5", torch.float64)
    layer.weight_dof.requires_grad_(False)
    composite.weight_dof.requires_grad_(False)
    x = torch.randn(2, layer.in_features, dtype=torch.float64)  # no grad for x either: only the bias records
    y = layer(x)
    assert _uses_node(y)
    (got,) = torch.autograd.grad(y.pow(2).sum(), layer.bias_module.bias_dof)
    (want,) = torch.autograd.grad(composite(x).pow(2).sum(), composite.bias_module.bias_dof)
    torch.testing.assert_close(got, want)


@pytest.mark.usefixtures("any_size")
def test_gradcheck_and_gradgradcheck_in_double():
    layer, _ = _layers("C4 6->6", torch.float64)
    strategy, fix = layer.basis.strategy, layer.bias_module.subspace.spatial_matrix()

    def fn(dof, x, bias_dof):
        return orbit_linear.lifted_linear(strategy, dof, x, bias_dof, fix)

    dof = torch.randn(layer.basis.dim, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, layer.in_features, dtype=torch.float64, requires_grad=True)
    bias_dof = torch.randn(layer.bias_module.subspace.dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (dof, x, bias_dof))
    assert torch.autograd.gradgradcheck(fn, (dof, x, bias_dof))


@pytest.mark.usefixtures("any_size")
def test_second_derivatives_match_composite():
    layer, composite = _layers("D4 3->5", torch.float64)
    x = torch.randn(2, layer.in_features, dtype=torch.float64, requires_grad=True)

    def input_gradient_penalty_grads(module):
        (g,) = torch.autograd.grad(module(x).pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), [x, *module.parameters()])

    for a, b in zip(input_gradient_penalty_grads(layer), input_gradient_penalty_grads(composite), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.usefixtures("any_size")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LIFT_CASES))
def test_equivariant_over_all_group_elements(name, dtype):
    layer, _ = _layers(name, dtype)

    def recorded(t):
        with torch.enable_grad():
            y = layer(t.detach().requires_grad_())
        assert _uses_node(y)
        return y.detach()

    elements = list(layer.in_rep.group.elements)
    assert_equivariant(
        recorded, layer.in_rep, layer.out_rep, elements=elements, batch_shape=(_rows(layer),), dtype=dtype
    )


@pytest.mark.usefixtures("any_size")
def test_transformed_and_untracked_calls_take_the_composite_path():
    layer, composite = _layers("C4 6->6", torch.float64)
    x = torch.randn(2, layer.in_features, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), composite(x))
    params = dict(layer.named_parameters())
    out = torch.func.functional_call(layer, params, (x.requires_grad_(),))
    assert _uses_node(out)  # plain eager tensors: still the node
    grads = torch.func.grad(lambda p: torch.func.functional_call(layer, p, (x,)).pow(2).sum())(params)
    expected = torch.autograd.grad(composite(x).pow(2).sum(), list(composite.parameters()))
    for a, b in zip(grads.values(), expected, strict=True):
        torch.testing.assert_close(a, b)
    batched = torch.func.vmap(layer)(x.detach().unsqueeze(1))
    torch.testing.assert_close(batched.squeeze(1), composite(x).detach())
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x.detach(), torch.ones_like(x))
        tangent = torch.autograd.forward_ad.unpack_dual(layer(dual)).tangent
    torch.testing.assert_close(tangent, composite(torch.ones_like(x)) - composite(torch.zeros_like(x)))


@pytest.mark.usefixtures("any_size")
def test_export_traces_the_composite_path():
    layer, composite = _layers("C4 6->6", torch.float32)
    x = torch.randn(2, layer.in_features)
    program = torch.export.export(layer, (x,))
    assert "LiftedLinear" not in str(program.graph)
    torch.testing.assert_close(program.module()(x), composite(x))


def test_size_and_rows_rule():
    in_rep = _regular(eg.cyclic_group(8), 16)  # D = 128, 16 output orbits
    layer = eLinear(in_rep, in_rep, basis_expansion_scheme="orbit_gather")
    assert layer(torch.randn(8, 128, requires_grad=True)).grad_fn.name().endswith("LiftedLinearBackward")
    assert not _uses_node(layer(torch.randn(9, 128, requires_grad=True)))  # more rows than half the orbits
    small_rep = _regular(eg.cyclic_group(8), 8)
    small = eLinear(small_rep, small_rep, basis_expansion_scheme="orbit_gather")
    assert not _uses_node(small(torch.randn(2, 64, requires_grad=True)))  # 64 x 64: below MIN_LIFTED_ENTRIES


@pytest.mark.usefixtures("any_size")
def test_in_place_edit_of_output_and_moved_module():
    layer, composite = _layers("C4 6->6", torch.float64)
    x = torch.randn(3, layer.in_features, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    y += 1.0  # the output is no view of anything the node saved
    (got,) = torch.autograd.grad(y.sum(), x)
    (want,) = torch.autograd.grad(composite(x).sum(), x)
    torch.testing.assert_close(got, want)
    layer.float()
    y32 = layer(x.float())
    assert _uses_node(y32) and y32.dtype == torch.float32
    torch.testing.assert_close(y32, composite.float()(x.float()))
