"""The seed documents' signatures construct and run exactly as written there (names, defaults, call forms)."""

import pytest
import torch
from escnn import group as eg
from escnn.group import directsum
from torch import nn

from symm_layers import (
    GroupHomomorphismBasis,
    InvariantBias,
    eAffine,
    eCondTransformerRegressor,
    eLinear,
    eMultiheadAttention,
    eRMSNorm,
    eTransformerEncoderLayer,
    impose_linear_equivariance,
)
from symm_layers.testing import assert_equivariant

G = eg.cyclic_group(4)
REP = directsum([G.regular_representation] * 4)


def test_elinear_seed_signature():
    layer = eLinear(REP, REP, bias=True, init_scheme="xavier_normal", basis_expansion_scheme="isotypic_expansion")
    assert layer(torch.randn(2, REP.size)).shape == (2, REP.size)
    assert isinstance(layer.basis, GroupHomomorphismBasis) and layer.bias is not None


def test_invariant_bias_and_eaffine_seed_signatures():
    assert InvariantBias(REP)(torch.randn(3, REP.size)).shape == (3, REP.size)
    affine = eAffine(REP, bias=True, learnable=True, init_scheme="identity")
    x = torch.randn(3, REP.size)
    torch.testing.assert_close(affine(x), x)
    film = eAffine(REP, bias=True, learnable=False)
    out = film(x, torch.randn(3, film.num_scale_dof), torch.randn(3, film.num_bias_dof))
    assert out.shape == x.shape


def test_impose_linear_equivariance_seed_signature():
    lin = nn.Linear(REP.size, REP.size)
    impose_linear_equivariance(lin, REP, REP, basis_expansion_scheme="isotypic_expansion")
    assert_equivariant(lin, REP, REP)


def test_ermsnorm_seed_signature():
    norm = eRMSNorm(REP, eps=1e-06, equiv_affine=True, device=None, dtype=None, init_scheme="identity")
    norm.reset_parameters(scheme="random")
    assert_equivariant(norm, REP, REP)


def test_encoder_layer_seed_signature_and_forward():
    layer = eTransformerEncoderLayer(
        REP,
        eMultiheadAttention(REP, 2),
        dim_feedforward=2048,
        dropout=0.1,
        activation=nn.GELU(approximate="none"),
        layer_norm_eps=1e-05,
        norm_first=True,
        norm_module="rmsnorm",
        bias=True,
        device=None,
        dtype=None,
        init_scheme="xavier_uniform",
    )
    src = torch.randn(2, 5, REP.size)
    out = layer(src, src_mask=None, src_key_padding_mask=None, is_causal=False, src_positions=None,
                src_position_mask=None)  # fmt: skip
    assert out.shape == src.shape


@pytest.mark.parametrize("num_cond_layers", [0, 1])
def test_regressor_seed_signature_and_forward(num_cond_layers):
    model = eCondTransformerRegressor(
        REP,
        G.regular_representation,
        REP,
        in_horizon=4,
        cond_horizon=2,
        num_layers=1,
        num_attention_heads=2,
        embedding_dim=32,
        p_drop_emb=0.1,
        p_drop_attn=0.1,
        causal_attn=False,
        num_cond_layers=num_cond_layers,
        norm_module="rmsnorm",
        init_scheme="xavier_uniform",
    )
    out = model(torch.randn(3, 4, REP.size), torch.tensor([1.0, 5.0, 9.0]), torch.randn(3, 2, 4))
    assert out.shape == (3, 4, REP.size)
    model.reset_parameters(scheme="xavier_uniform")
    torch.optim.AdamW(model.get_optim_groups(weight_decay=0.001))
