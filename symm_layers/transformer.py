"""Transformer encoder/decoder layers and stacks: one implementation, equivariant or plain parts injected.

The residual wiring follows ``torch.nn.TransformerEncoderLayer``/``DecoderLayer`` (``_sa_block``, ``_mha_block``,
``_ff_block``, ``norm_first``). :class:`eTransformerEncoderLayer` fills the slots with equivariant attention,
:class:`~symm_layers.linear.eLinear` feed-forward maps through a regular hidden representation, and equivariant
norms; :class:`TransformerEncoderLayer` fills them with plain torch modules. Every part commutes with the group
action (the pointwise activation acts on a regular representation, which permutes coordinates), so the layer does.
"""

from __future__ import annotations

import copy

import torch
from escnn.group import Representation
from torch import nn

from ._types import BasisExpansionScheme, InitScheme, Layout, WeightCacheMode
from .activations import Activation, make_activation, regular_copies
from .attention import MultiheadAttention
from .layout import check_layout
from .linear import eLinear
from .module import EquivariantModule
from .normalization import build_norm, build_plain_norm
from .reps import check_representations, check_same_representation


def regular_hidden_rep(in_rep: Representation, width: int, what: str = "dim_feedforward") -> Representation:
    """``directsum`` of ``width / |G|`` regular representations of ``in_rep``'s group."""
    return regular_copies(in_rep.group, width, what)


def check_part(in_rep: Representation, part: nn.Module, what: str, example: str) -> None:
    """Raise ``ValueError`` unless ``part`` maps ``in_rep`` to ``in_rep`` (compared by content, not size)."""
    fix = f"build {what} on the layer's in_rep, e.g. {example}"
    for attr in ("in_rep", "out_rep"):
        rep = getattr(part, attr, None)
        if not isinstance(rep, Representation):
            raise ValueError(
                f"{what} ({type(part).__name__}) has no {attr}: an equivariant layer needs equivariant parts; {fix}"
            )
        check_same_representation(in_rep, rep, f"{what} ({type(part).__name__}.{attr})", fix)


class _Residual(nn.Module):
    """Feed-forward and dropout slots shared by the encoder and decoder layers."""

    def _init_feedforward(self, linear1, linear2, activation: nn.Module, dropout: float, norm_first: bool) -> None:
        self.linear1, self.linear2, self.activation = linear1, linear2, activation
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout_ff(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _attend(self, attn, dropout, query, memory, attn_mask, key_padding_mask, is_causal, q_pos, k_pos, k_mask):
        out, _ = attn(
            query,
            memory,
            memory,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
            query_positions=q_pos,
            key_positions=k_pos,
            position_mask=k_mask,
        )
        return dropout(out)


class TransformerEncoderLayerBase(_Residual):
    """Self-attention and feed-forward blocks with residuals; parts are injected by subclasses."""

    def _init_parts(self, self_attn, linear1, linear2, norm1, norm2, activation, dropout, norm_first) -> None:
        self.self_attn = self_attn
        self._init_feedforward(linear1, linear2, activation, dropout, norm_first)
        self.norm1, self.norm2 = norm1, norm2
        self.dropout1, self.dropout_ff = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        *,
        src_positions: torch.Tensor | None = None,
        src_position_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        args = (src_mask, src_key_padding_mask, is_causal, src_positions, src_positions, src_position_mask)
        x = src
        if self.norm_first:
            h = self.norm1(x)
            x = x + self._attend(self.self_attn, self.dropout1, h, h, *args)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._attend(self.self_attn, self.dropout1, x, x, *args))
        return self.norm2(x + self._ff_block(x))


class TransformerDecoderLayerBase(_Residual):
    """Self-attention, cross-attention and feed-forward blocks with residuals."""

    def _init_parts(
        self, self_attn, cross_attn, linear1, linear2, norm1, norm2, norm3, activation, dropout, norm_first
    ) -> None:
        self.self_attn, self.multihead_attn = self_attn, cross_attn
        self._init_feedforward(linear1, linear2, activation, dropout, norm_first)
        self.norm1, self.norm2, self.norm3 = norm1, norm2, norm3
        self.dropout1, self.dropout2, self.dropout_ff = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
        *,
        tgt_positions: torch.Tensor | None = None,
        memory_positions: torch.Tensor | None = None,
        tgt_position_mask: torch.Tensor | None = None,
        memory_position_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sa = (tgt_mask, tgt_key_padding_mask, tgt_is_causal, tgt_positions, tgt_positions, tgt_position_mask)
        ca = (memory_mask, memory_key_padding_mask, memory_is_causal, tgt_positions, memory_positions)
        ca = (*ca, memory_position_mask)
        x = tgt
        if self.norm_first:
            h = self.norm1(x)
            x = x + self._attend(self.self_attn, self.dropout1, h, h, *sa)
            x = x + self._attend(self.multihead_attn, self.dropout2, self.norm2(x), memory, *ca)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._attend(self.self_attn, self.dropout1, x, x, *sa))
        x = self.norm2(x + self._attend(self.multihead_attn, self.dropout2, x, memory, *ca))
        return self.norm3(x + self._ff_block(x))


def _plain_parts(d_model, dim_feedforward, norm_module, layer_norm_eps, bias, count, factory):
    linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
    linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
    norms = [build_plain_norm(norm_module, d_model, layer_norm_eps, **factory) for _ in range(count)]
    return linear1, linear2, norms


def _equivariant_parts(in_rep, count, *, dim_feedforward, norm_module, layer_norm_eps, bias, norm_affine, layout,
                       device, dtype, **linear_options):  # fmt: skip
    """Feed-forward eLinear maps through a regular hidden rep, and ``count`` equivariant norms.

    The hidden features stay in the regular representation's own (permutation) basis, where the pointwise
    activation acts; in the spectral layout the change of basis is folded into the two maps' weights.
    """
    factory = {"device": device, "dtype": dtype}
    hidden = regular_hidden_rep(in_rep, dim_feedforward)
    linear1 = eLinear(in_rep, hidden, bias=bias, layout=(layout, "spatial"), **linear_options, **factory)
    linear2 = eLinear(hidden, in_rep, bias=bias, layout=("spatial", layout), **linear_options, **factory)
    norm_options = {"affine": norm_affine, "layout": layout, **factory}
    norms = [build_norm(norm_module, in_rep, layer_norm_eps, **norm_options) for _ in range(count)]
    return linear1, linear2, norms


def _check_attention_layout(attn: nn.Module, layout: str, what: str) -> None:
    got = getattr(attn, "layout", "spatial")
    if got != layout:
        raise ValueError(
            f"{what} works in layout {got!r} but the layer in {layout!r}; build it with "
            f"eMultiheadAttention(in_rep, num_heads, layout={layout!r})"
        )


_PART_OPTIONS = (
    "dim_feedforward",
    "norm_module",
    "layer_norm_eps",
    "bias",
    "norm_affine",
    "device",
    "dtype",
    "init_scheme",
    "basis_expansion_scheme",
    "weight_cache",
    "layout",
)


def _part_options(arguments: dict) -> dict:
    """The constructor arguments that configure the feed-forward maps and norms."""
    return {name: arguments[name] for name in _PART_OPTIONS}


def _exported(module: nn.Module) -> nn.Module:
    """Plain copy of a part, in the same train/eval mode."""
    out = module.export() if hasattr(module, "export") else copy.deepcopy(module)
    return out.train(module.training)


class TransformerEncoderLayer(TransformerEncoderLayerBase):
    """Plain twin of :class:`eTransformerEncoderLayer` (same wiring, plain torch parts)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "gelu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = True,
        norm_module: str = "rmsnorm",
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, **factory)
        linear1, linear2, norms = _plain_parts(d_model, dim_feedforward, norm_module, layer_norm_eps, bias, 2, factory)
        self._init_parts(attn, linear1, linear2, *norms, make_activation(activation), dropout, norm_first)

    @classmethod
    def from_parts(cls, *parts, dropout: float, norm_first: bool) -> TransformerEncoderLayer:
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._init_parts(*parts, dropout, norm_first)
        return layer


class eTransformerEncoderLayer(EquivariantModule, TransformerEncoderLayerBase):
    r"""Equivariant transformer encoder layer with the API of ``torch.nn.TransformerEncoderLayer``.

    .. math::
        f(\rho(g) x_{1:T}) = \rho(g) f(x_{1:T}) \quad \forall g \in G

    Attention logits are invariant, the feed-forward maps are equivariant linear maps through a regular hidden
    representation with a pointwise activation (which commutes with permutation matrices), norms are equivariant,
    and residual sums of equivariant maps are equivariant.

    Args:
        in_rep: representation of each token's features.
        self_attn: a pre-built equivariant attention module (e.g. :class:`~symm_layers.eMultiheadAttention`).
        dim_feedforward: hidden width, a multiple of ``|G|`` (the hidden representation is regular).
        dropout: dropout probability after attention, inside and after the feed-forward block.
        activation: a name (``"gelu"``, ``"relu"``, ...), a zero-argument factory, or a module (copied).
        layer_norm_eps: eps of the norms.
        norm_first: pre-norm (``True``) or post-norm wiring.
        norm_module: ``"rmsnorm"``, ``"layernorm"`` or ``"batchnorm"``.
        bias: invariant biases in the feed-forward maps.
        init_scheme: initialisation of the feed-forward maps.
        basis_expansion_scheme, weight_cache: strategies of the feed-forward :class:`eLinear` maps.
        norm_affine: ``"isotypic"`` (per-irrep-copy scales) or ``"diagonal"`` (orbit-constant, permutation
            representations only, fused into torch's norm kernels); see :class:`~symm_layers.eRMSNorm`.
        layout: ``"spatial"`` or ``"spectral"``: the layout of ``src`` and the output, and of the residual stream
            (:mod:`symm_layers.layout`). Spectral: the norms' per-irrep affine is fused into torch's kernels, the
            attention (built with the same layout) works on spectral features, and the change of basis into the
            regular hidden representation is folded into the feed-forward weights. Wrap a stack of spectral layers
            in :class:`TransformerStack` to keep its inputs and outputs in ``in_rep``'s own basis.

    Shape:
        ``src``: ``(B, T, D)`` -> ``(B, T, D)``.
    """

    def __init__(
        self,
        in_rep: Representation,
        self_attn: nn.Module,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "gelu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = True,
        norm_module: str = "rmsnorm",
        bias: bool = True,
        device=None,
        dtype=None,
        init_scheme: InitScheme | None = "xavier_uniform",
        *,
        basis_expansion_scheme: BasisExpansionScheme = "auto",
        weight_cache: WeightCacheMode = "cached",
        norm_affine: str = "isotypic",
        layout: Layout = "spatial",
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep)
        self.in_rep = self.out_rep = in_rep
        self.layout = check_layout(layout)
        check_part(in_rep, self_attn, "self_attn", "eMultiheadAttention(in_rep, num_heads)")
        _check_attention_layout(self_attn, layout, "self_attn")
        linear1, linear2, norms = _equivariant_parts(in_rep, 2, **_part_options(locals()))
        self._init_parts(self_attn, linear1, linear2, *norms, make_activation(activation), dropout, norm_first)

    def forward(self, src: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.check_features(src, what="src")
        return super().forward(src, *args, **kwargs)

    def export(self) -> TransformerEncoderLayer:
        parts = [_exported(m) for m in (self.self_attn, self.linear1, self.linear2, self.norm1, self.norm2)]
        layer = TransformerEncoderLayer.from_parts(
            *parts, copy.deepcopy(self.activation), dropout=self.dropout.p, norm_first=self.norm_first
        )
        return layer.train(self.training)


class TransformerDecoderLayer(TransformerDecoderLayerBase):
    """Plain twin of :class:`eTransformerDecoderLayer`."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "gelu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = True,
        norm_module: str = "rmsnorm",
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        attns = [MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, **factory) for _ in range(2)]
        linear1, linear2, norms = _plain_parts(d_model, dim_feedforward, norm_module, layer_norm_eps, bias, 3, factory)
        self._init_parts(*attns, linear1, linear2, *norms, make_activation(activation), dropout, norm_first)

    @classmethod
    def from_parts(cls, *parts, dropout: float, norm_first: bool) -> TransformerDecoderLayer:
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._init_parts(*parts, dropout, norm_first)
        return layer


class eTransformerDecoderLayer(EquivariantModule, TransformerDecoderLayerBase):
    r"""Equivariant transformer decoder layer (self-attention, cross-attention to ``memory``, feed-forward).

    .. math::
        f(\rho(g) y_{1:T}, \rho(g) m_{1:S}) = \rho(g) f(y_{1:T}, m_{1:S}) \quad \forall g \in G

    Same arguments as :class:`eTransformerEncoderLayer` plus ``cross_attn`` (attention from targets to memory),
    which may also be passed as ``multihead_attn=`` (the reference library's name, and the attribute's name).

    Raises:
        TypeError: if neither or both of ``cross_attn`` and ``multihead_attn`` are given.
    """

    def __init__(
        self,
        in_rep: Representation,
        self_attn: nn.Module,
        cross_attn: nn.Module | None = None,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "gelu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = True,
        norm_module: str = "rmsnorm",
        bias: bool = True,
        device=None,
        dtype=None,
        init_scheme: InitScheme | None = "xavier_uniform",
        *,
        basis_expansion_scheme: BasisExpansionScheme = "auto",
        weight_cache: WeightCacheMode = "cached",
        norm_affine: str = "isotypic",
        multihead_attn: nn.Module | None = None,
        layout: Layout = "spatial",
    ) -> None:
        if (cross_attn is None) == (multihead_attn is None):
            raise TypeError("eTransformerDecoderLayer takes the cross-attention once: cross_attn= or multihead_attn=")
        cross_attn = cross_attn if multihead_attn is None else multihead_attn
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep)
        self.in_rep = self.out_rep = in_rep
        check_part(in_rep, self_attn, "self_attn", "eMultiheadAttention(in_rep, num_heads)")
        check_part(in_rep, cross_attn, "cross_attn", "eMultiheadAttention(in_rep, num_heads)")
        self.layout = check_layout(layout)
        _check_attention_layout(self_attn, layout, "self_attn")
        _check_attention_layout(cross_attn, layout, "cross_attn")
        linear1, linear2, norms = _equivariant_parts(in_rep, 3, **_part_options(locals()))
        activation = make_activation(activation)
        self._init_parts(self_attn, cross_attn, linear1, linear2, *norms, activation, dropout, norm_first)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.check_features(tgt, what="tgt")
        self.check_features(memory, what="memory")
        return super().forward(tgt, memory, *args, **kwargs)

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module):
        """``call(tgt, memory)`` with ``seq_len`` targets and ``seq_len + 1`` memory tokens, packed along tokens."""

        def fn(tokens: torch.Tensor) -> torch.Tensor:
            return call(tokens[:, :seq_len], tokens[:, seq_len:])

        return fn, *self.feature_reps(), (batch_size, 2 * seq_len + 1)

    def export(self) -> TransformerDecoderLayer:
        names = ("self_attn", "multihead_attn", "linear1", "linear2", "norm1", "norm2", "norm3")
        parts = [_exported(getattr(self, n)) for n in names]
        layer = TransformerDecoderLayer.from_parts(
            *parts, copy.deepcopy(self.activation), dropout=self.dropout.p, norm_first=self.norm_first
        )
        return layer.train(self.training)
