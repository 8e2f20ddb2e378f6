"""asv suite of multi-head self-attention: eMultiheadAttention (every strategy) and the positional variants.

``impl="torch"`` is the plain twin (``MultiheadAttention``: ``nn.Linear`` projections and
``F.scaled_dot_product_attention``, what ``export()`` returns). Tokens are ``(BATCH, seq_len, D)``, ``D`` a whole
number of regular representations; ``NUM_HEADS`` heads, skipped where they would split a regular copy (ico at
``D = 60`` has one copy). See ``_asv_common`` for the metrics and the conventions.
"""

from __future__ import annotations

from torch import nn

from symm_layers import (
    AbsolutePositionalAttention,
    MultiheadAttention,
    RelativePositionalAttention,
    eAbsolutePositionalAttention,
    eMultiheadAttention,
    eRelativePositionalAttention,
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

BATCH = 8
NUM_HEADS = 4
SEQ_LENS = grid([32], [32, 128])
#: (equivariant, plain) classes and the keyword that sizes their table (``max_positions`` / ``max_distance``).
POSITIONAL = {
    "absolute": (eAbsolutePositionalAttention, AbsolutePositionalAttention),
    "relative": (eRelativePositionalAttention, RelativePositionalAttention),
}


def _self_attention(module: nn.Module, x):
    return module(x, x, x, need_weights=False)[0]  # the fused kernel; weights (the default) take the explicit path


def _tokens_case(construct, rep, seq_len: int, device: str, equivariant: bool) -> Case:
    x = randn(BATCH, seq_len, rep.size, device=device)
    if not equivariant:
        return make_case(construct, _self_attention, (x,))
    return make_case(construct, _self_attention, (x,), on_features=_self_attention, probe=x[:2], reps=(rep, rep))


class Attention(FamilySuite):
    """``eMultiheadAttention`` per basis expansion and weight cache (fused in-projection), beside the plain twin."""

    params = [STRATEGIES, GROUPS, grid([64, 256], [64, 256, 1024]), SEQ_LENS, DEVICES]
    param_names = ["impl", "group", "features", "seq_len", "device"]

    @staticmethod
    def make_case(impl, group, features, seq_len, device) -> Case:
        rep = regular_rep(group, features)
        if impl == BASELINE:
            construct = lambda: MultiheadAttention(rep.size, NUM_HEADS, dropout=0.0, device=device)  # noqa: E731
            return _tokens_case(construct, rep, seq_len, device, False)
        require_heads(impl, rep, NUM_HEADS)
        # the fused in-projection maps rep to three copies of it (as many regular copies as regular_rep(3 D))
        require_dense_basis(impl, (rep, regular_rep(group, 3 * rep.size)), (rep, rep))
        options = strategy(impl)
        construct = lambda: eMultiheadAttention(rep, NUM_HEADS, dropout=0.0, device=device, **options)  # noqa: E731
        return _tokens_case(construct, rep, seq_len, device, True)


class PositionalAttention(FamilySuite):
    """Learned absolute (invariant embeddings) or relative (per-head logit bias) positions, default strategy."""

    params = [PLAIN_OR_EQUIVARIANT, list(POSITIONAL), GROUPS, grid([64], [64, 256]), SEQ_LENS, DEVICES]
    param_names = ["impl", "positions", "group", "features", "seq_len", "device"]

    @staticmethod
    def make_case(impl, positions, group, features, seq_len, device) -> Case:
        rep = regular_rep(group, features)
        equivariant_cls, plain_cls = POSITIONAL[positions]
        if impl == BASELINE:
            construct = lambda: plain_cls(rep.size, NUM_HEADS, seq_len, dropout=0.0, device=device)  # noqa: E731
            return _tokens_case(construct, rep, seq_len, device, False)
        require_heads(impl, rep, NUM_HEADS)
        construct = lambda: equivariant_cls(rep, NUM_HEADS, seq_len, dropout=0.0, device=device)  # noqa: E731
        return _tokens_case(construct, rep, seq_len, device, True)
