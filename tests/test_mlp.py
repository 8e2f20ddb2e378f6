import functools
import io
import math
import warnings

import pytest
import torch
from conftest import DTYPES, rotated
from escnn import group as eg
from escnn.group import directsum
from torch import nn

from symm_layers.mlp import ACTIVATIONS, MLP, eMLP
from symm_layers.testing import assert_equivariant

NORMALIZATIONS = ["element", "path"]


@functools.cache
def mlp_reps(case: str):
    """(in_rep, out_rep) for eMLPs whose hidden layers are regular; out_rep is a permutation rep where noted."""
    if case == "C8-regular":
        G = eg.cyclic_group(8)
        return directsum([G.regular_representation] * 2), G.regular_representation
    if case == "D4-regular":
        G = eg.dihedral_group(4)
        return G.regular_representation, directsum([G.regular_representation] * 2)
    if case == "C8-irreps":
        G = eg.cyclic_group(8)
        return directsum([G.irrep(1), G.trivial_representation, G.irrep(3)]), directsum([G.irrep(1), G.irrep(0)])
    if case == "D4-irreps":
        G = eg.dihedral_group(4)
        return directsum([G.irrep(1, 1), G.trivial_representation]), directsum([G.irrep(1, 0), G.irrep(1, 1)])
    if case == "C8-rotated":
        G = eg.cyclic_group(8)
        return rotated(directsum([G.regular_representation, G.irrep(2)]), 5), G.regular_representation
    if case == "D4-rotated":
        G = eg.dihedral_group(4)
        return rotated(G.regular_representation, 6), directsum([G.trivial_representation, G.regular_representation])
    raise KeyError(case)


PERMUTATION_OUT_CASES = ["C8-regular", "D4-regular", "C8-rotated", "D4-rotated"]
EQUIVARIANCE_CASES = [(c, act) for c in PERMUTATION_OUT_CASES for act in (False, True)] + [
    (c, False) for c in ("C8-irreps", "D4-irreps")
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("gradient_normalization", NORMALIZATIONS)
@pytest.mark.parametrize("case, output_activation", EQUIVARIANCE_CASES)
def test_emlp_is_equivariant(case, output_activation, gradient_normalization, dtype):
    in_rep, out_rep = mlp_reps(case)
    mlp = eMLP(
        in_rep,
        out_rep,
        [16, 8],
        output_activation=output_activation,
        gradient_normalization=gradient_normalization,
        dtype=dtype,
    )
    assert_equivariant(mlp, in_rep, out_rep, dtype=dtype)


def test_emlp_on_icosahedral_group_is_equivariant():
    G = eg.ico_group()
    in_rep, out_rep = G.regular_representation, directsum([G.irrep(1), G.trivial_representation])
    mlp = eMLP(in_rep, out_rep, [60], activation="silu", dtype=torch.float64)
    assert_equivariant(mlp, in_rep, out_rep, dtype=torch.float64)


def test_emlp_passes_basis_and_cache_strategies_to_every_layer():
    in_rep, out_rep = mlp_reps("D4-rotated")
    options = dict(basis_expansion_scheme="memory_heavy", weight_cache="uncached", dtype=torch.float64)
    mlp = eMLP(in_rep, out_rep, [8, 8], **options)
    layers = [d.linear for d in mlp.stack.dense_layers()]
    assert {(lin.basis.basis_expansion, lin.weight_cache.name) for lin in layers} == {("memory_heavy", "uncached")}
    assert_equivariant(mlp, in_rep, out_rep, dtype=torch.float64)


def test_emlp_accepts_permutation_representations_as_hidden_layers():
    G = eg.cyclic_group(8)
    hidden = [G.quotient_representation(4), directsum([G.regular_representation, G.trivial_representation])]
    mlp = eMLP(G.regular_representation, G.irrep(1), hidden, dtype=torch.float64)
    assert [rep.size for rep in mlp.hidden_reps] == [2, 9]
    assert_equivariant(mlp, mlp.in_rep, mlp.out_rep, dtype=torch.float64)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_named_activation_keeps_equivariance(activation):
    in_rep, out_rep = mlp_reps("D4-rotated")
    mlp = eMLP(in_rep, out_rep, [8], activation=activation, output_activation=True, dtype=torch.float64)
    assert_equivariant(mlp, in_rep, out_rep, dtype=torch.float64)


def test_each_layer_gets_its_own_activation_instance():
    calls = []

    def factory():
        calls.append(nn.SiLU())
        return calls[-1]

    mlp = eMLP(*mlp_reps("C8-regular"), [16, 8, 8], activation=factory, output_activation=True)
    activations = [m for m in mlp.modules() if isinstance(m, nn.SiLU)]
    assert len(calls) == 4 and len({id(m) for m in activations}) == 4


def test_activation_module_instance_is_copied_per_layer():
    given = nn.GELU()
    mlp = eMLP(*mlp_reps("C8-regular"), [8, 8], activation=given)
    activations = [m for m in mlp.modules() if isinstance(m, nn.GELU)]
    assert len(activations) == 2 and len({id(m) for m in activations} | {id(given)}) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(activation="swish"), "relu, gelu, silu, tanh, elu, identity"),
        (dict(gradient_normalization="layer"), "'element'.*'path'"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_unknown_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        eMLP(*mlp_reps("C8-regular"), [8], **kwargs)
    with pytest.raises(ValueError, match=message):
        MLP(4, 2, [8], **kwargs)


@pytest.mark.parametrize("hidden_kind", ["irreps", "rotated-regular"])
def test_non_permutation_hidden_rep_is_refused(hidden_kind):
    G = eg.cyclic_group(8)
    hidden = directsum([G.irrep(1), G.trivial_representation]) if hidden_kind == "irreps" else None
    hidden = hidden if hidden is not None else rotated(G.regular_representation, 7)
    with pytest.raises(ValueError, match="hidden representation 0 .*use regular/permutation representations"):
        eMLP(G.regular_representation, G.regular_representation, [hidden])


def test_output_activation_on_non_permutation_out_rep_is_refused():
    with pytest.raises(ValueError, match="out_rep \\(output_activation=True\\).*norm\\) nonlinearity"):
        eMLP(*mlp_reps("C8-irreps"), [8], output_activation=True)


def test_non_positive_width_names_the_smallest_valid_width():
    with pytest.raises(ValueError, match="width 0 is not a positive multiple of \\|C8\\| = 8.*use 8$"):
        eMLP(*mlp_reps("C8-regular"), [16, 0])


@pytest.mark.parametrize("width, rounded", [(12, 16), (5, 8), (9, 16)])
def test_width_is_rounded_up_to_whole_regular_copies_with_a_warning(width, rounded):
    expected = f"hidden layer 1: width {width} is not a multiple of \\|C8\\| = 8; using {rounded} "
    with pytest.warns(UserWarning, match=expected):
        mlp = eMLP(*mlp_reps("C8-regular"), [16, width])
    assert mlp.hidden_reps[1].size == rounded


def test_width_multiple_of_group_order_is_used_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mlp = eMLP(*mlp_reps("C8-regular"), [16, 64])
    assert [rep.size for rep in mlp.hidden_reps] == [16, 64]


def test_rounded_width_mlp_is_equivariant(dtype):
    in_rep, out_rep = mlp_reps("C8-regular")
    with pytest.warns(UserWarning, match="using 24"):
        mlp = eMLP(in_rep, out_rep, [20], dtype=dtype)
    assert_equivariant(mlp, in_rep, out_rep, dtype=dtype)


def test_integer_width_on_continuous_group_is_refused():
    G = eg.so2_group()
    with pytest.raises(ValueError, match="continuous.*pass a Representation"):
        eMLP(G.irrep(1), G.irrep(1), [8])


def test_emlp_wrong_feature_size_names_expected_size():
    in_rep, out_rep = mlp_reps("D4-regular")
    mlp = eMLP(in_rep, out_rep, [8])
    with pytest.raises(ValueError, match=f"expected {in_rep.size}"):
        mlp(torch.randn(2, in_rep.size + 1))


def test_mlp_wrong_feature_size_names_expected_size():
    with pytest.raises(ValueError, match="expected 4"):
        MLP(4, 2, [8])(torch.randn(2, 5))


def _outputs_by_seed(mlp, x, seeds):
    outputs = []
    for seed in seeds:
        torch.manual_seed(seed)
        mlp.reset_parameters()
        with torch.no_grad():
            outputs.append(mlp(x))
    return torch.stack(outputs)


@pytest.mark.parametrize("family", ["eMLP", "MLP"])
def test_path_and_element_have_the_same_output_distribution_at_init(family):
    G = eg.cyclic_group(8)
    rep = directsum([G.regular_representation] * 4)

    def build(gradient_normalization):
        if family == "eMLP":
            return eMLP(rep, rep, [64, 64], gradient_normalization=gradient_normalization)
        return MLP(rep.size, rep.size, [64, 64], gradient_normalization=gradient_normalization)

    x = torch.randn(128, rep.size, generator=torch.Generator().manual_seed(0))
    element = _outputs_by_seed(build("element"), x, range(0, 12))
    path = _outputs_by_seed(build("path"), x, range(100, 112))  # independent draws
    torch.testing.assert_close(path.var(), element.var(), rtol=0.25, atol=0)
    torch.testing.assert_close(path.mean(), element.mean(), rtol=0, atol=0.25 * element.std().item())


def test_path_init_is_element_init_times_sqrt_fan_in_with_identical_outputs():
    in_rep, out_rep = mlp_reps("D4-regular")
    torch.manual_seed(1)
    element = eMLP(in_rep, out_rep, [16, 8], dtype=torch.float64)
    torch.manual_seed(1)
    path = eMLP(in_rep, out_rep, [16, 8], gradient_normalization="path", dtype=torch.float64)
    for e, p in zip(element.stack.dense_layers(), path.stack.dense_layers(), strict=True):
        torch.testing.assert_close(p.linear.weight_dof, e.linear.weight_dof * math.sqrt(e.fan_in))
    x = torch.randn(5, in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(path(x), element(x))


@pytest.mark.parametrize("family", ["eMLP", "MLP"])
def test_path_weight_gradients_are_smaller_by_sqrt_fan_in(family):
    in_rep, out_rep = mlp_reps("C8-regular")
    build = functools.partial(eMLP, in_rep, out_rep) if family == "eMLP" else functools.partial(MLP, 16, 8)
    grads = {}
    for normalization in NORMALIZATIONS:
        torch.manual_seed(2)
        mlp = build([32, 8], gradient_normalization=normalization, dtype=torch.float64)
        mlp(torch.randn(6, in_rep.size, dtype=torch.float64)).pow(2).sum().backward()
        grads[normalization] = [(d.fan_in, next(d.linear.parameters()).grad) for d in mlp.stack.dense_layers()]
    for (fan_in, g_element), (_, g_path) in zip(grads["element"], grads["path"], strict=True):
        assert g_element.abs().max() > 0
        torch.testing.assert_close(g_path * math.sqrt(fan_in), g_element)


def test_path_weights_of_square_plain_layers_have_unit_variance():
    mlp = MLP(256, 256, [256], gradient_normalization="path")
    for dense in mlp.stack.dense_layers():
        torch.testing.assert_close(dense.linear.weight.var().item(), 1.0, rtol=0.03, atol=0)


@pytest.mark.parametrize("gradient_normalization", NORMALIZATIONS)
def test_plain_mlp_equals_emlp_of_trivial_group_with_copied_weights(gradient_normalization):
    G = eg.cyclic_group(1)
    in_rep, out_rep = directsum([G.regular_representation] * 3), directsum([G.regular_representation] * 2)
    options = dict(gradient_normalization=gradient_normalization, output_activation=True, dtype=torch.float64)
    equivariant = eMLP(in_rep, out_rep, [5, 4], **options)
    plain = MLP(3, 2, [5, 4], **options)
    with torch.no_grad():
        for e, p in zip(equivariant.stack.dense_layers(), plain.stack.dense_layers(), strict=True):
            p.linear.weight.copy_(e.linear.weight)
            p.bias.bias.copy_(e.bias.bias)
    x = torch.randn(7, 3, dtype=torch.float64)
    torch.testing.assert_close(plain(x), equivariant(x))


@pytest.mark.parametrize("gradient_normalization", NORMALIZATIONS)
@pytest.mark.parametrize("case, output_activation", [("D4-rotated", True), ("C8-irreps", False)])
def test_emlp_export_matches(case, output_activation, gradient_normalization):
    in_rep, out_rep = mlp_reps(case)
    mlp = eMLP(
        in_rep, out_rep, [16], "tanh", output_activation, gradient_normalization=gradient_normalization, dropout=0.1
    ).eval()
    plain = mlp.export().eval()
    assert type(plain) is MLP and plain.stack.options == mlp.stack.options
    assert all(type(d.linear) is nn.Linear for d in plain.stack.dense_layers())
    x = torch.randn(5, in_rep.size)
    torch.testing.assert_close(plain(x), mlp(x))


def test_export_zero_fills_bias_of_out_rep_without_trivial_irrep():
    G = eg.cyclic_group(8)
    mlp = eMLP(G.regular_representation, directsum([G.irrep(1), G.irrep(2)]), [8])
    plain = mlp.export()
    assert torch.count_nonzero(plain.stack.dense_layers()[-1].bias.bias) == 0
    x = torch.randn(5, 8)
    torch.testing.assert_close(plain(x), mlp(x))


@pytest.mark.parametrize("family", ["eMLP", "MLP"])
def test_reset_parameters_reproduces_constructor_init(family):
    in_rep, out_rep = mlp_reps("D4-regular")
    build = functools.partial(eMLP, in_rep, out_rep) if family == "eMLP" else functools.partial(MLP, 8, 16)
    torch.manual_seed(3)
    initialised = build([16], gradient_normalization="path", init_scheme="kaiming_uniform")
    torch.manual_seed(3)
    deferred = build([16], gradient_normalization="path", init_scheme=None)
    deferred.reset_parameters("kaiming_uniform")
    for key, value in initialised.state_dict().items():
        torch.testing.assert_close(deferred.state_dict()[key], value)


def test_state_dict_round_trip():
    in_rep, out_rep = mlp_reps("C8-rotated")
    mlp = eMLP(in_rep, out_rep, [16, 8], gradient_normalization="path")
    buffer = io.BytesIO()
    torch.save(mlp.state_dict(), buffer)
    buffer.seek(0)
    restored = eMLP(in_rep, out_rep, [16, 8], gradient_normalization="path", init_scheme=None)
    restored.load_state_dict(torch.load(buffer))
    x = torch.randn(4, in_rep.size)
    torch.testing.assert_close(restored(x), mlp(x))


def test_dropout_acts_in_training_only():
    mlp = eMLP(*mlp_reps("C8-regular"), [64], dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in mlp.modules()) == 1
    x = torch.randn(4, 16)
    assert not torch.equal(mlp(x), mlp(x))
    mlp.eval()
    torch.testing.assert_close(mlp(x), mlp(x))


def test_extra_repr_names_group_widths_and_normalization():
    text = repr(eMLP(*mlp_reps("C8-regular"), [16], gradient_normalization="path"))
    assert "group=C8" in text and "16 -> 16 -> 8" in text and "gradient_normalization=path" in text
    assert "features=4 -> 8 -> 2" in repr(MLP(4, 2, [8]))


def test_torch_compile_matches_eager():
    G = eg.cyclic_group(4)
    mlp = eMLP(G.regular_representation, G.regular_representation, [8], gradient_normalization="path")
    x = torch.randn(3, 4)
    torch.testing.assert_close(torch.compile(mlp, backend="aot_eager")(x), mlp(x))


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager():
    G = eg.cyclic_group(4)
    mlp = eMLP(G.regular_representation, G.regular_representation, [8], gradient_normalization="path")
    x = torch.randn(3, 4)
    torch.testing.assert_close(torch.compile(mlp)(x), mlp(x))
