"""asv suite of the composite models: transformer encoder/decoder layers, eMLP, eCondTransformerRegressor.

``impl="torch"`` is each model's plain twin (``TransformerEncoderLayer``, ``TransformerDecoderLayer``, ``MLP``,
``CondTransformerRegressor``: same wiring, plain torch parts, what ``export()`` returns). Tokens are
``(BATCH, SEQ_LEN, D)``, ``D`` a whole number of regular representations of the group, feed-forward width
``FFN_RATIO * D``, ``NUM_HEADS`` heads, pre-norm RMSNorm, no dropout. See ``_asv_common`` for the metrics.
"""

from __future__ import annotations

import torch
from torch import nn

from symm_layers import (
    MLP,
    CondTransformerRegressor,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    eCondTransformerRegressor,
    eMLP,
    eMultiheadAttention,
    eTransformerDecoderLayer,
    eTransformerEncoderLayer,
)

from ._asv_common import (
    BASELINE,
    DEVICES,
    GROUPS,
    PLAIN_OR_EQUIVARIANT,
    STRATEGIES,
    Case,
    FamilySuite,
    grid,
    make_case,
    randn,
    regular_rep,
    require_dense_basis,
    require_heads,
    strategy,
)

BATCH, SEQ_LEN, MEMORY_LEN = 8, 16, 8
NUM_HEADS = 2  # whole regular copies per head for every group at D ~ 128 (ico: 2 copies)
FFN_RATIO = 4
FEATURES = grid([128], [128, 512])


def _apply(module: nn.Module, *inputs):
    return module(*inputs)


def _split_tokens(length: int):
    """``(module, x) -> module(x[:, :length], x[:, length:])``: the equivariance probe for two token inputs."""

    def on_features(module: nn.Module, x):
        return module(x[:, :length], x[:, length:])

    return on_features


def _attention(rep, impl: str, device: str) -> nn.Module:
    return eMultiheadAttention(rep, NUM_HEADS, dropout=0.0, device=device, **strategy(impl))


def _require_transformer(impl: str, group: str, rep) -> None:
    require_heads(impl, rep, NUM_HEADS)
    hidden = regular_rep(group, FFN_RATIO * rep.size)
    require_dense_basis(impl, (rep, regular_rep(group, 3 * rep.size)), (rep, hidden), (hidden, rep))


class EncoderLayer(FamilySuite):
    """``eTransformerEncoderLayer`` (self-attention + feed-forward through a regular hidden representation)."""

    params = [STRATEGIES, GROUPS, FEATURES, DEVICES]
    param_names = ["impl", "group", "features", "device"]

    @staticmethod
    def make_case(impl, group, features, device) -> Case:
        rep = regular_rep(group, features)
        src = randn(BATCH, SEQ_LEN, rep.size, device=device)
        d = rep.size
        if impl == BASELINE:
            construct = lambda: TransformerEncoderLayer(d, NUM_HEADS, FFN_RATIO * d, 0.0, device=device)  # noqa: E731
            return make_case(construct, _apply, (src,))
        _require_transformer(impl, group, rep)
        options = strategy(impl)

        def construct() -> nn.Module:
            attn = _attention(rep, impl, device)
            return eTransformerEncoderLayer(rep, attn, FFN_RATIO * d, 0.0, device=device, **options)

        return make_case(construct, _apply, (src,), on_features=_apply, probe=src[:2], reps=(rep, rep))


class DecoderLayer(FamilySuite):
    """``eTransformerDecoderLayer`` (self-attention, cross-attention to a memory, feed-forward)."""

    params = [STRATEGIES, GROUPS, FEATURES, DEVICES]
    param_names = ["impl", "group", "features", "device"]

    @staticmethod
    def make_case(impl, group, features, device) -> Case:
        rep = regular_rep(group, features)
        tgt = randn(BATCH, SEQ_LEN, rep.size, device=device)
        memory = randn(BATCH, MEMORY_LEN, rep.size, device=device, seed=1)
        d = rep.size
        if impl == BASELINE:
            construct = lambda: TransformerDecoderLayer(d, NUM_HEADS, FFN_RATIO * d, 0.0, device=device)  # noqa: E731
            return make_case(construct, _apply, (tgt, memory))
        _require_transformer(impl, group, rep)
        options = strategy(impl)

        def construct() -> nn.Module:
            attns = [_attention(rep, impl, device) for _ in range(2)]
            return eTransformerDecoderLayer(rep, *attns, FFN_RATIO * d, 0.0, device=device, **options)

        probe = torch.cat([tgt[:2], memory[:2]], dim=1)
        return make_case(construct, _apply, (tgt, memory), on_features=_split_tokens(SEQ_LEN), probe=probe,
                         reps=(rep, rep))  # fmt: skip


class Perceptron(FamilySuite):
    """``eMLP(rep, rep, [2 D, 2 D])`` with GELU on regular hidden representations, on ``(BATCH * SEQ_LEN, D)``."""

    params = [STRATEGIES, GROUPS, FEATURES, DEVICES]
    param_names = ["impl", "group", "features", "device"]

    @staticmethod
    def make_case(impl, group, features, device) -> Case:
        rep = regular_rep(group, features)
        x = randn(BATCH * SEQ_LEN, rep.size, device=device)
        d = rep.size
        if impl == BASELINE:
            return make_case(lambda: MLP(d, d, [2 * d, 2 * d], device=device), _apply, (x,))
        hidden = regular_rep(group, 2 * d)
        require_dense_basis(impl, (rep, hidden), (hidden, hidden), (hidden, rep))
        options = strategy(impl)
        construct = lambda: eMLP(rep, rep, [2 * d, 2 * d], device=device, **options)  # noqa: E731
        return make_case(construct, _apply, (x,), on_features=_apply, probe=x[:8], reps=(rep, rep))


class Regressor(FamilySuite):
    """``eCondTransformerRegressor`` (eMLP condition encoder, 2 decoder layers), input/condition/output tokens one
    regular representation each, embedding ``D``. It takes no strategy arguments: ``impl`` is plain or equivariant.
    """

    params = [PLAIN_OR_EQUIVARIANT, GROUPS, FEATURES, DEVICES]
    param_names = ["impl", "group", "features", "device"]
    num_layers, cond_len, step = 2, 4, 3.0

    @classmethod
    def make_case(cls, impl, group, features, device) -> Case:
        token = regular_rep(group, 1)
        d, size = regular_rep(group, features).size, token.size
        X = randn(BATCH, SEQ_LEN, size, device=device)
        Z = randn(BATCH, cls.cond_len, size, device=device, seed=1)
        shape = (SEQ_LEN, cls.cond_len, cls.num_layers, NUM_HEADS, d)
        call = lambda model, X, Z: model(X, cls.step, Z)  # noqa: E731
        if impl == BASELINE:
            construct = lambda: CondTransformerRegressor(size, size, size, *shape, 0.0, 0.0, device=device)  # noqa: E731
            return make_case(construct, call, (X, Z))
        require_heads(impl, regular_rep(group, features), NUM_HEADS)
        construct = lambda: eCondTransformerRegressor(token, token, None, *shape, 0.0, 0.0, device=device)  # noqa: E731

        def on_features(model: nn.Module, x):
            return model(x[:, :SEQ_LEN], cls.step, x[:, SEQ_LEN:])

        probe = torch.cat([X[:2], Z[:2]], dim=1)
        return make_case(construct, call, (X, Z), on_features=on_features, probe=probe, reps=(token, token))
