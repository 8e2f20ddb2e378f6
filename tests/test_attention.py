import copy
import functools

import pytest
import torch
from conftest import DTYPES, rotated
from escnn import group as eg
from escnn.group import directsum
from torch import nn

from symm_layers.attention import (
    AbsolutePositionalAttention,
    MultiheadAttention,
    RelativePositionalAttention,
    eAbsolutePositionalAttention,
    eMultiheadAttention,
    eRelativePositionalAttention,
    valid_num_heads,
)
from symm_layers.testing import assert_equivariant

B, T = 3, 5


@functools.cache
def attention_rep(case: str):
    """(in_rep, num_heads) for a named case."""
    if case == "C4-regular-x4":
        return directsum([eg.cyclic_group(4).regular_representation] * 4), 2
    if case == "D4-regular-x2":
        return directsum([eg.dihedral_group(4).regular_representation] * 2), 2
    if case == "D4-rotated":
        return rotated(directsum([eg.dihedral_group(4).regular_representation] * 2), 5), 1
    if case == "ico-regular":
        return eg.ico_group().regular_representation, 1
    raise KeyError(case)


CASES = ["C4-regular-x4", "D4-regular-x2", "D4-rotated", "ico-regular"]
POSITIONAL = {eAbsolutePositionalAttention: {"max_positions": 8}, eRelativePositionalAttention: {"max_distance": 3}}


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def make(cls=eMultiheadAttention, case="C4-regular-x4", dtype=torch.float64, **kwargs):
    rep, num_heads = attention_rep(case)
    module = cls(rep, num_heads, **POSITIONAL.get(cls, {}), dtype=dtype, **kwargs)
    with torch.no_grad():  # nonzero biases and visible positional terms
        for name, param in module.named_parameters():
            if "bias" in name or "table" in name:
                param.normal_()
    return module


def self_attention(module, **kwargs):
    """``x -> module(x, x, x)``, recording autograd in training mode (the uncached eLinear path)."""

    def fn(x):
        with torch.set_grad_enabled(module.training):
            return module(x, x, x, **kwargs)[0]

    return fn


def random_inputs(rep, dtype, length=T):
    return torch.randn(B, length, rep.size, dtype=dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", CASES)
def test_self_attention_is_equivariant(case, dtype, training):
    module = make(case=case, dtype=dtype).train(training)
    assert_equivariant(self_attention(module), module.in_rep, module.in_rep, random_inputs(module.in_rep, dtype))


def test_cross_attention_is_equivariant(dtype):
    module = make(case="D4-regular-x2", dtype=dtype)
    x = random_inputs(module.in_rep, dtype, length=2 * T + 1)

    def cross_attention(tokens):  # the first T tokens attend to the others
        return module(tokens[:, :T], tokens[:, T:], tokens[:, T:])[0]

    assert_equivariant(cross_attention, module.in_rep, module.in_rep, x)


def _masks(kind, dtype):
    gen = torch.Generator().manual_seed(1)
    if kind == "attn_mask_bool":
        return {"attn_mask": torch.rand(T, T, generator=gen) < 0.3}
    if kind == "attn_mask_float":
        return {"attn_mask": torch.randn(T, T, generator=gen, dtype=dtype)}
    if kind == "attn_mask_per_head":
        return {"attn_mask": torch.rand(B * 2, T, T, generator=gen) < 0.3}
    if kind == "key_padding_mask":
        return {"key_padding_mask": torch.tensor([[False] * T, [False] * 3 + [True] * 2, [True] + [False] * 4])}
    if kind == "is_causal":
        return {"is_causal": True}
    return {"is_causal": True, "attn_mask": torch.rand(T, T, generator=gen) < 0.3}


MASK_KINDS = ["attn_mask_bool", "attn_mask_float", "attn_mask_per_head", "key_padding_mask", "is_causal", "causal+mask"]


@pytest.mark.parametrize("need_weights", [False, True], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masked_self_attention_is_equivariant(kind, need_weights, dtype):
    module = make(dtype=dtype)
    fn = self_attention(module, need_weights=need_weights, **_masks(kind, dtype))
    assert_equivariant(fn, module.in_rep, module.in_rep, random_inputs(module.in_rep, dtype))


def _positions_and_mask():
    positions = torch.tensor([[0, 1, 2, 3, 4], [2, 3, 4, 5, 6], [7, 5, 3, 1, -1]])
    position_mask = torch.tensor([[True] * 5, [True, True, False, True, True], [True] * 4 + [False]])
    return positions, position_mask


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", list(POSITIONAL))
def test_positional_attention_is_equivariant(cls, dtype, training):
    module = make(cls, dtype=dtype).train(training)
    positions, position_mask = _positions_and_mask()
    query_positions = positions.clamp(min=0)  # padded queries still need in-range positions
    kwargs = dict(query_positions=query_positions, key_positions=positions, position_mask=position_mask)
    x = random_inputs(module.in_rep, dtype)
    assert_equivariant(self_attention(module, **kwargs), module.in_rep, module.in_rep, x)
    assert_equivariant(self_attention(module, need_weights=True, **kwargs), module.in_rep, module.in_rep, x)


@pytest.mark.parametrize("cls", list(POSITIONAL))
def test_positional_attention_default_positions_are_arange(cls):
    module = make(cls)
    x = random_inputs(module.in_rep, torch.float64)
    positions = torch.arange(T)
    explicit = module(x, x, x, query_positions=positions, key_positions=positions)[0]
    torch.testing.assert_close(module(x, x, x)[0], explicit)


@pytest.mark.parametrize("cls", list(POSITIONAL))
def test_positional_attention_uses_positions(cls):
    module = make(cls)
    x = random_inputs(module.in_rep, torch.float64)
    reversed_positions = torch.arange(T).flip(0)
    moved = module(x, x, x, key_positions=reversed_positions)[0]
    assert (moved - module(x, x, x)[0]).abs().max() > 1e-3


def test_relative_attention_depends_only_on_position_differences():
    module = make(eRelativePositionalAttention)
    x = random_inputs(module.in_rep, torch.float64)
    shifted = torch.arange(T) + 100
    torch.testing.assert_close(module(x, x, x, query_positions=shifted, key_positions=shifted)[0], module(x, x, x)[0])


@pytest.mark.parametrize("cls", [eMultiheadAttention, *POSITIONAL])
def test_position_mask_masks_keys_like_key_padding_mask(cls):
    module = make(cls)
    x = random_inputs(module.in_rep, torch.float64)
    _, position_mask = _positions_and_mask()
    by_position = module(x, x, x, position_mask=position_mask)[0]
    torch.testing.assert_close(by_position, module(x, x, x, key_padding_mask=~position_mask)[0])


def test_position_mask_ignores_padding_positions():
    module = make(eAbsolutePositionalAttention)
    x = random_inputs(module.in_rep, torch.float64)
    positions, position_mask = _positions_and_mask()
    padded = positions.masked_fill(~position_mask, -7)
    other = positions.masked_fill(~position_mask, 3)
    kwargs = dict(query_positions=positions.clamp(min=0), position_mask=position_mask)
    with_padding = module(x, x, x, key_positions=padded, **kwargs)[0]
    torch.testing.assert_close(with_padding, module(x, x, x, key_positions=other, **kwargs)[0])


def _copy_into_torch(plain: MultiheadAttention) -> nn.MultiheadAttention:
    reference = nn.MultiheadAttention(plain.embed_dim, plain.num_heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        reference.in_proj_weight.copy_(plain.in_proj.weight)
        reference.in_proj_bias.copy_(plain.in_proj.bias.normal_())
        reference.out_proj.weight.copy_(plain.out_proj.weight)
        reference.out_proj.bias.copy_(plain.out_proj.bias.normal_())
    return reference


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("kind", [None, "attn_mask_bool", "attn_mask_float", "attn_mask_per_head", "key_padding_mask"])
def test_plain_twin_matches_torch_multihead_attention(kind, need_weights):
    plain = MultiheadAttention(16, 2, dtype=torch.float64)
    reference = _copy_into_torch(plain)
    query, memory = torch.randn(B, T, 16, dtype=torch.float64), torch.randn(B, T, 16, dtype=torch.float64)
    masks = {} if kind is None else _masks(kind, torch.float64)
    for args in ((query, query, query), (query, memory, memory)):
        for average in (True, False):
            kwargs = dict(need_weights=need_weights, average_attn_weights=average, **masks)
            out, weights = plain(*args, **kwargs)
            expected, expected_weights = reference(*args, **kwargs)
            torch.testing.assert_close(out, expected)
            if need_weights:
                torch.testing.assert_close(weights, expected_weights)


def test_plain_twin_matches_torch_causal_attention():
    plain = MultiheadAttention(16, 4, dtype=torch.float64)
    reference = _copy_into_torch(plain)
    x = torch.randn(B, T, 16, dtype=torch.float64)
    causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    expected = reference(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0]
    torch.testing.assert_close(plain(x, x, x, is_causal=True)[0], expected)


def test_plain_twin_initialises_like_torch():
    plain = MultiheadAttention(16, 2)
    assert plain.in_proj.bias.abs().max() == 0 and plain.out_proj.bias.abs().max() == 0
    bound = (6 / (16 + 48)) ** 0.5  # Xavier-uniform over the stacked (3D, D) weight
    assert plain.in_proj.weight.abs().max() <= bound


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", [eMultiheadAttention, *POSITIONAL])
def test_export_matches(cls, training):
    module = make(cls, case="D4-regular-x2").train(training)
    plain = module.export()
    twin = {eMultiheadAttention: MultiheadAttention, eAbsolutePositionalAttention: AbsolutePositionalAttention}
    assert type(plain) is twin.get(cls, RelativePositionalAttention) and plain.training == training
    x, memory = random_inputs(module.in_rep, torch.float64), random_inputs(module.in_rep, torch.float64, T + 2)
    positional = {} if cls is eMultiheadAttention else {"key_positions": torch.arange(T + 2).flip(0)}
    with torch.set_grad_enabled(training):
        torch.testing.assert_close(plain(x, x, x, is_causal=True)[0], module(x, x, x, is_causal=True)[0])
        cross = plain(x, memory, memory, **positional)[0]
        torch.testing.assert_close(cross, module(x, memory, memory, **positional)[0])


@pytest.mark.parametrize("cls", [eMultiheadAttention, *POSITIONAL])
def test_state_dict_round_trip(cls):
    module = make(cls, case="D4-rotated")
    rep, num_heads = attention_rep("D4-rotated")
    fresh = cls(rep, num_heads, **POSITIONAL.get(cls, {}), init_scheme=None, dtype=torch.float64)
    fresh.load_state_dict(module.state_dict())
    x = random_inputs(rep, torch.float64)
    torch.testing.assert_close(fresh(x, x, x)[0], module(x, x, x)[0])


@pytest.mark.parametrize("cls", [eMultiheadAttention, *POSITIONAL])
def test_every_parameter_gets_a_gradient(cls):
    module = make(cls, dtype=torch.float32)
    x = random_inputs(module.in_rep, torch.float32)
    module(x, x, x)[0].pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in module.parameters())


@pytest.mark.parametrize("cls", [eMultiheadAttention, *POSITIONAL])
def test_deepcopy_then_double_stays_equivariant(cls):
    module = copy.deepcopy(make(cls, case="D4-rotated", dtype=torch.float32)).double()
    x = random_inputs(module.in_rep, torch.float64)
    kwargs = {} if cls is eMultiheadAttention else {"key_positions": torch.arange(T).flip(0)}
    assert_equivariant(self_attention(module, **kwargs), module.in_rep, module.in_rep, x)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [eMultiheadAttention, *POSITIONAL])
def test_cuda_attention_is_equivariant_and_exports(cls):
    module = make(cls, dtype=torch.float32).cuda()
    x = random_inputs(module.in_rep, torch.float32).cuda()
    key_padding_mask = torch.tensor([[False] * T, [False] * 3 + [True] * 2, [True] + [False] * 4], device="cuda")
    fn = self_attention(module, key_padding_mask=key_padding_mask, is_causal=True)
    assert_equivariant(fn, module.in_rep, module.in_rep, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(module.export()(x, x, x)[0], module(x, x, x)[0])


@pytest.mark.slow
def test_compiled_module_matches_eager():
    module = make(dtype=torch.float32)
    x = random_inputs(module.in_rep, torch.float32)
    compiled = torch.compile(module)
    torch.testing.assert_close(compiled(x, x, x)[0], module(x, x, x)[0])


@pytest.mark.parametrize("kind", [None, *MASK_KINDS])
def test_attention_weights_are_probabilities_and_agree_with_sdpa(kind):
    module = make(eRelativePositionalAttention)
    x = random_inputs(module.in_rep, torch.float64)
    masks = {} if kind is None else _masks(kind, torch.float64)
    out, weights = module(x, x, x, need_weights=True, average_attn_weights=False, **masks)
    assert weights.shape == (B, module.num_heads, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, module.num_heads, T, dtype=torch.float64))
    torch.testing.assert_close(module(x, x, x, need_weights=True, **masks)[1], weights.mean(1))
    torch.testing.assert_close(out, module(x, x, x, **masks)[0])


def test_fully_masked_query_gets_zero_attention_on_both_paths():
    module = make(bias=False)
    x = random_inputs(module.in_rep, torch.float64)
    attn_mask = torch.zeros(T, T, dtype=torch.bool)
    attn_mask[1] = True
    out, weights = module(x, x, x, attn_mask=attn_mask, need_weights=True)
    assert weights[:, 1].abs().max() == 0 and out[:, 1].abs().max() == 0
    torch.testing.assert_close(module(x, x, x, attn_mask=attn_mask)[0], out)


def test_dropout_acts_in_training_only():
    module = make(dropout=0.5)
    x = random_inputs(module.in_rep, torch.float64)
    reference = module.eval()(x, x, x)[0]
    torch.testing.assert_close(module(x, x, x)[0], reference)
    assert (module.train()(x, x, x)[0] - reference).abs().max() > 1e-6


def test_biases_start_at_zero():
    rep, num_heads = attention_rep("C4-regular-x4")
    module = eMultiheadAttention(rep, num_heads)
    assert module.in_proj.bias.abs().max() == 0 and module.out_proj.bias.abs().max() == 0


def test_valid_num_heads():
    assert valid_num_heads(attention_rep("C4-regular-x4")[0]) == [1, 2, 4]
    assert valid_num_heads(attention_rep("D4-rotated")[0]) == [1]
    C4 = eg.cyclic_group(4)
    # identity change of basis: only the irrep copies couple coordinates
    assert valid_num_heads(directsum([C4.irrep(1), C4.irrep(1), C4.trivial_representation, C4.irrep(2)])) == [1, 3]


def test_num_heads_that_split_a_component_are_refused():
    with pytest.raises(ValueError, match=r"num_heads=8 splits a component .* choose num_heads among \[1, 2, 4\]"):
        eMultiheadAttention(attention_rep("C4-regular-x4")[0], 8)


def test_num_heads_not_dividing_the_dimension_are_refused():
    with pytest.raises(ValueError, match=r"not divisible by num_heads=3; choose among \[1, 2, 4\]"):
        eMultiheadAttention(attention_rep("C4-regular-x4")[0], 3)
    with pytest.raises(ValueError, match=r"choose among \[1, 2, 4, 8, 16\]"):
        MultiheadAttention(16, 3)


def test_wrong_feature_size_names_expected_size():
    module = make()
    x = torch.randn(B, T, 17, dtype=torch.float64)
    with pytest.raises(ValueError, match="expected 16"):
        module(x, x, x)


def test_unbatched_input_is_refused():
    module = make()
    x = torch.randn(T, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch-first"):
        module(x, x, x)


def test_positions_are_refused_without_positional_encoding():
    module = make()
    x = random_inputs(module.in_rep, torch.float64)
    with pytest.raises(ValueError, match="eAbsolutePositionalAttention"):
        module(x, x, x, query_positions=torch.arange(T))


def test_out_of_range_absolute_position_is_refused():
    module = make(eAbsolutePositionalAttention)
    x = random_inputs(module.in_rep, torch.float64)
    with pytest.raises(ValueError, match="max_positions=8"):
        module(x, x, x, key_positions=torch.arange(T) + 4)


def test_absolute_positions_need_a_trivial_irrep():
    C4 = eg.cyclic_group(4)
    with pytest.raises(ValueError, match="no trivial irrep"):
        eAbsolutePositionalAttention(directsum([C4.irrep(1)] * 2), 1, max_positions=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attn_mask": torch.zeros(T, T + 1, dtype=torch.bool)}, "attn_mask of shape"),
        ({"key_padding_mask": torch.zeros(B, T + 1, dtype=torch.bool)}, "key_padding_mask of shape"),
        ({"position_mask": torch.ones(B, T)}, "position_mask .* bool"),
    ],
)
def test_badly_shaped_masks_are_refused(kwargs, match):
    module = make()
    x = random_inputs(module.in_rep, torch.float64)
    with pytest.raises(ValueError, match=match):
        module(x, x, x, **kwargs)
