"""Small instances of every public layer with matching inputs, for the toolbox and property tests."""

from __future__ import annotations

import functools

import torch
from escnn import group as eg
from escnn.group import directsum

import symm_layers as sl

BATCH, TOKENS = 3, 4


@functools.cache
def reps():
    """C4 representations: two regular copies (8), one regular copy (4) and the output of the regressor."""
    G = eg.cyclic_group(4)
    return directsum([G.regular_representation] * 2, name="2x_regular"), G.regular_representation


def _tokens(size, dtype, length=TOKENS):
    return torch.randn(BATCH, length, size, dtype=dtype)


def _attention(cls, rep, strategy, extra=()):
    return cls(rep, 2, *extra, dropout=0.0, **strategy)


def build(name: str, *, basis="isotypic_expansion", cache="cached", dtype=torch.float64, device=None):
    """``(module, inputs)`` for the layer called ``name``, its parameters in ``dtype``, random (non-identity).

    Inputs are on the CPU whatever ``device`` the module is built on.
    """
    rep, small = reps()
    strategy = {"basis_expansion_scheme": basis, "weight_cache": cache, "dtype": dtype, "device": device}
    lin_options = {"basis_expansion_scheme": basis, "weight_cache": cache, "dtype": dtype, "device": device}
    layer_options = dict(dim_feedforward=8, dropout=0.0, **lin_options)
    x = _tokens(rep.size, dtype)
    if name == "eLinear":
        module, inputs = sl.eLinear(rep, small, **lin_options), (x,)
    elif name == "InvariantBias":
        module = sl.InvariantBias(rep, weight_cache=cache, init_scheme="uniform", dtype=dtype, device=device)
        inputs = (x,)
    elif name == "eAffine":
        module, inputs = sl.eAffine(rep, init_scheme="random", dtype=dtype, device=device), (x,)
    elif name == "eRMSNorm":
        module, inputs = sl.eRMSNorm(rep, init_scheme="random", dtype=dtype, device=device), (x,)
    elif name == "eLayerNorm":
        module, inputs = sl.eLayerNorm(rep, init_scheme="random", dtype=dtype, device=device), (x,)
    elif name == "eBatchNorm":
        module, inputs = sl.eBatchNorm(rep, dtype=dtype, device=device), (x,)
    elif name == "eMultiheadAttention":
        module, inputs = _attention(sl.eMultiheadAttention, rep, strategy), (x, x, x)
    elif name == "eAbsolutePositionalAttention":
        module, inputs = _attention(sl.eAbsolutePositionalAttention, rep, strategy, (TOKENS,)), (x, x, x)
    elif name == "eRelativePositionalAttention":
        module, inputs = _attention(sl.eRelativePositionalAttention, rep, strategy, (2,)), (x, x, x)
    elif name == "eTransformerEncoderLayer":
        attn = _attention(sl.eMultiheadAttention, rep, strategy)
        module, inputs = sl.eTransformerEncoderLayer(rep, attn, **layer_options), (x,)
    elif name == "eTransformerDecoderLayer":
        attns = [_attention(sl.eMultiheadAttention, rep, strategy) for _ in range(2)]
        module = sl.eTransformerDecoderLayer(rep, *attns, **layer_options)
        inputs = (x, _tokens(rep.size, dtype, length=2))
    elif name == "TransformerStack":
        attn = _attention(sl.eMultiheadAttention, rep, strategy)
        module = sl.TransformerStack(sl.eTransformerEncoderLayer(rep, attn, **layer_options), 2)
        inputs = (x,)
    elif name == "eMLP":
        module, inputs = sl.eMLP(rep, small, [8], **lin_options), (x,)
    elif name == "eCondTransformerRegressor":
        module = sl.eCondTransformerRegressor(
            small, small, None, TOKENS, 2, 1, 2, 8, p_drop_emb=0.0, p_drop_attn=0.0, **lin_options
        )
        inputs = (_tokens(small.size, dtype), torch.tensor(3.0, dtype=dtype), _tokens(small.size, dtype, length=2))
    else:
        raise KeyError(name)
    _randomise(module)
    return module, inputs


@torch.no_grad()
def _randomise(module: torch.nn.Module) -> None:
    """Move every parameter away from its (often zero or identity) initial value."""
    for p in module.parameters():
        p.add_(0.1 * torch.randn_like(p))


LAYERS = [
    "eLinear",
    "InvariantBias",
    "eAffine",
    "eRMSNorm",
    "eLayerNorm",
    "eBatchNorm",
    "eMultiheadAttention",
    "eAbsolutePositionalAttention",
    "eRelativePositionalAttention",
    "eTransformerEncoderLayer",
    "eTransformerDecoderLayer",
    "TransformerStack",
    "eMLP",
    "eCondTransformerRegressor",
]


def output(module, inputs) -> torch.Tensor:
    """The module's main output (attention returns ``(out, weights)``)."""
    out = module(*inputs)
    return out[0] if isinstance(out, tuple) else out
