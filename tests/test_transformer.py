import pytest
import torch
from conftest import rotated
from escnn import group as eg
from escnn.group import directsum
from torch import nn

from symm_layers.attention import eMultiheadAttention, eRelativePositionalAttention
from symm_layers.stack import TransformerStack
from symm_layers.testing import assert_equivariant, group_elements
from symm_layers.transformer import (
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    eTransformerDecoderLayer,
    eTransformerEncoderLayer,
)


def _reps():
    G = eg.dihedral_group(4)
    return {
        "D4-regular": directsum([G.regular_representation] * 4),
        "D4-rotated": rotated(directsum([G.regular_representation] * 2), 5),
    }


REPS = _reps()


def _encoder(rep, heads=1, **kw):
    kw.setdefault("dropout", 0.0)
    attn = eMultiheadAttention(rep, heads, dtype=kw.get("dtype"))
    return eTransformerEncoderLayer(rep, attn, dim_feedforward=2 * rep.size, **kw)


def _decoder(rep, **kw):
    kw.setdefault("dropout", 0.0)
    dtype = kw.get("dtype")
    attn = eMultiheadAttention(rep, 1, dtype=dtype)
    cross = eRelativePositionalAttention(rep, 1, max_distance=6, dtype=dtype)
    return eTransformerDecoderLayer(rep, attn, cross, dim_feedforward=2 * rep.size, **kw)


def _causal(t):
    return torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("norm_module", ["rmsnorm", "layernorm", "batchnorm"])
@pytest.mark.parametrize("rep_name", list(REPS))
def test_encoder_is_equivariant(rep_name, norm_module, norm_first, dtype):
    rep = REPS[rep_name]
    layer = _encoder(rep, norm_module=norm_module, norm_first=norm_first, dtype=dtype)
    _check_encoder(layer, rep, dtype)


@pytest.mark.parametrize("norm_module", ["rmsnorm", "layernorm"])
def test_encoder_with_diagonal_norm_affine_is_equivariant(norm_module, dtype):
    rep = REPS["D4-regular"]
    layer = _encoder(rep, norm_module=norm_module, norm_affine="diagonal", dtype=dtype)
    _check_encoder(layer, rep, dtype)
    layer.eval()
    x = torch.randn(2, 3, rep.size, dtype=dtype)
    torch.testing.assert_close(layer.export()(x), layer(x))


def _check_encoder(layer, rep, dtype):
    x = torch.randn(3, 5, rep.size, dtype=dtype)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[1, -2:] = True
    assert_equivariant(lambda v: layer(v, src_key_padding_mask=padding), rep, rep, x)
    assert_equivariant(lambda v: layer(v, src_mask=_causal(5), is_causal=True), rep, rep, x)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("rep_name", list(REPS))
def test_decoder_is_equivariant(rep_name, norm_first, dtype):
    rep = REPS[rep_name]
    layer = _decoder(rep, norm_first=norm_first, dtype=dtype)
    tgt, memory = torch.randn(2, 4, rep.size, dtype=dtype), torch.randn(2, 6, rep.size, dtype=dtype)
    positions = torch.arange(6)
    for g in group_elements(rep.group):
        r = torch.as_tensor(rep(g), dtype=dtype)
        kwargs = {"tgt_mask": _causal(4), "tgt_is_causal": True, "memory_positions": positions}
        out = layer(tgt @ r.mT, memory @ r.mT, **kwargs)
        torch.testing.assert_close(out, layer(tgt, memory, **kwargs) @ r.mT)


def test_encoder_export_matches():
    rep = REPS["D4-regular"]
    layer = _encoder(rep, heads=2, norm_module="layernorm").eval()
    plain = layer.export()
    assert isinstance(plain, TransformerEncoderLayer) and not plain.training
    x = torch.randn(2, 5, rep.size)
    torch.testing.assert_close(plain(x), layer(x))


def test_decoder_export_matches():
    rep = REPS["D4-rotated"]
    layer = _decoder(rep).eval()
    x, memory = torch.randn(2, 3, rep.size), torch.randn(2, 4, rep.size)
    torch.testing.assert_close(layer.export()(x, memory), layer(x, memory))


def test_stack_is_equivariant_and_exports():
    rep = REPS["D4-regular"]
    stack = TransformerStack(_encoder(rep), num_layers=3).eval()
    assert not torch.equal(stack.layers[0].linear1.weight_dof, stack.layers[1].linear1.weight_dof)
    x = torch.randn(2, 4, rep.size)
    assert_equivariant(stack, rep, rep, x)
    torch.testing.assert_close(stack.export()(x), stack(x))


def test_plain_encoder_matches_torch_wiring_with_layernorm():
    torch.manual_seed(0)
    ours = TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, norm_module="layernorm", activation="relu")
    theirs = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
    with torch.no_grad():
        theirs.self_attn.in_proj_weight.copy_(ours.self_attn.in_proj.weight)
        theirs.self_attn.in_proj_bias.copy_(ours.self_attn.in_proj.bias)
        theirs.self_attn.out_proj.load_state_dict(ours.self_attn.out_proj.state_dict())
        for name in ("linear1", "linear2", "norm1", "norm2"):
            getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(ours(x), theirs(x))


def test_plain_decoder_runs_with_every_norm():
    for norm_module in ("rmsnorm", "layernorm", "batchnorm"):
        layer = TransformerDecoderLayer(8, 2, dim_feedforward=16, norm_module=norm_module)
        assert layer(torch.randn(2, 3, 8), torch.randn(2, 5, 8)).shape == (2, 3, 8)


def test_feedforward_width_must_be_a_multiple_of_group_order():
    rep = REPS["D4-regular"]
    with pytest.raises(ValueError, match="multiple of \\|D4\\| = 8.*use 24 or 32"):
        eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), dim_feedforward=30)


def test_activation_instances_are_not_shared():
    rep = REPS["D4-regular"]
    act = nn.GELU()
    a = eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), dim_feedforward=32, activation=act)
    b = eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), dim_feedforward=32, activation=act)
    assert a.activation is not b.activation is not act


def test_unknown_norm_module_is_refused():
    rep = REPS["D4-regular"]
    with pytest.raises(ValueError, match="rmsnorm, layernorm, batchnorm"):
        eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), dim_feedforward=32, norm_module="groupnorm")


def test_encoder_wrong_feature_size():
    rep = REPS["D4-regular"]
    with pytest.raises(ValueError, match=f"expected {rep.size}"):
        _encoder(rep)(torch.randn(2, 3, rep.size + 8))


def test_encoder_state_dict_round_trip():
    rep = REPS["D4-regular"]
    a, b = _encoder(rep), _encoder(rep)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, rep.size)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.mark.slow
def test_encoder_compiles():
    rep = REPS["D4-regular"]
    layer = _encoder(rep).eval()
    x = torch.randn(2, 3, rep.size)
    torch.testing.assert_close(torch.compile(layer)(x), layer(x))


def test_decoder_accepts_multihead_attn_keyword():
    rep = REPS["D4-regular"]
    cross = eMultiheadAttention(rep, 1)
    layer = eTransformerDecoderLayer(rep, eMultiheadAttention(rep, 1), multihead_attn=cross, dim_feedforward=32)
    assert layer.multihead_attn is cross


def test_decoder_refuses_both_cross_attention_keywords():
    rep = REPS["D4-regular"]
    attn = [eMultiheadAttention(rep, 1) for _ in range(3)]
    with pytest.raises(TypeError, match="cross_attn= or multihead_attn="):
        eTransformerDecoderLayer(rep, attn[0], attn[1], multihead_attn=attn[2], dim_feedforward=32)
    with pytest.raises(TypeError, match="cross_attn= or multihead_attn="):
        eTransformerDecoderLayer(rep, attn[0], dim_feedforward=32)
