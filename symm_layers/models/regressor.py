"""Conditional transformer regressor ``V = f(X_k, Z, k)``, equivariant or plain through one implementation.

Input tokens are embedded, position and timestep embeddings are added, the conditioning tokens (timestep token
first) are encoded, and a decoder stack cross-attends from the input tokens to them. The equivariant model embeds
into ``embedding_dim / |G|`` regular representations and keeps every positional and timestep term on the invariant
subspace, so adding it to equivariant tokens preserves equivariance.
"""

from __future__ import annotations

import math

import torch
from escnn.group import Representation
from torch import nn

from .._types import BasisExpansionScheme, InitScheme, Layout, WeightCacheMode
from ..attention import eMultiheadAttention
from ..basis import auto_strategy, hom_space
from ..layout import check_layout
from ..linear import InvariantSubspace, eLinear
from ..mlp import MLP, eMLP
from ..module import EquivariantModule, StackedAction
from ..normalization import build_norm, build_plain_norm
from ..reps import check_representations, check_same_group
from ..stack import TransformerStack
from ..transformer import (
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    _exported,
    eTransformerDecoderLayer,
    eTransformerEncoderLayer,
    regular_hidden_rep,
)

POSITION_INIT_STD = 0.02


class SinusoidalTimestep(nn.Module):
    """``k -> [sin(k w_i), cos(k w_i)]`` with geometric frequencies ``w_i`` (no parameters)."""

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.dim, self.max_period = dim, max_period

    def forward(self, step: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        steps = torch.arange(half, device=step.device, dtype=step.dtype)
        freqs = torch.exp(-math.log(self.max_period) * steps / max(half, 1))
        angles = step[:, None] * freqs[None]
        out = torch.cat([angles.sin(), angles.cos()], dim=-1)
        return nn.functional.pad(out, (0, self.dim - 2 * half))


class InvariantEmbedding(EquivariantModule):
    """Coefficients on the trivial irreps -> invariant vectors of ``rep`` (a fixed linear map)."""

    def __init__(self, rep: Representation, *, layout: Layout = "spatial", device=None, dtype=None) -> None:
        super().__init__()
        self.in_rep = self.out_rep = rep
        self.layout = check_layout(layout)
        self.subspace = InvariantSubspace(rep, layout=layout, device=device, dtype=dtype)
        if self.subspace.dim == 0:
            raise ValueError(f"representation '{rep.name}' has no trivial irrep to carry invariant embeddings")

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self.subspace.expand(coefficients)

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module):
        """Invariant coefficients in (the trivial irrep, ``subspace.dim`` times), vectors of ``rep`` out."""
        trivial = StackedAction([self.in_rep.group.trivial_representation] * self.subspace.dim)
        return call, trivial, self.feature_reps()[1], (batch_size, seq_len)

    def export(self) -> nn.Linear:
        dtype = next((b.dtype for b in self.buffers() if b.is_floating_point()), torch.get_default_dtype())
        eye = torch.eye(self.subspace.dim, device=self.subspace.positions.device, dtype=dtype)
        weight = self.subspace.expand(eye).mT
        lin = nn.Linear(self.subspace.dim, self.in_rep.size, bias=False, device=weight.device, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(weight)
        return lin


def auto_layout(embedding_rep: Representation, norm_module: str, norm_affine: str = "isotypic") -> str:
    """The layout ``layout="auto"`` picks for a model whose tokens live in ``embedding_rep`` (documented rule).

    Measured on CPU (D8, B=64, T=8): at embedding 128 the spectral layout trains at 1.08x and infers at 0.99x the
    plain twin against 1.12x / 1.15x spatial; at embedding 512 spatial trains at 0.58x against 1.10x spectral,
    whose weights are dense there. The boundary is where the ``"auto"`` basis strategy stops forming weights.
    """
    if norm_module == "batchnorm" or norm_affine == "diagonal":  # no spectral batch norm; diagonal fuses spatially
        return "spatial"
    return "spectral" if auto_strategy(hom_space(embedding_rep, embedding_rep)) == "orbit_gather" else "spatial"


class PositionTable(nn.Module):
    """A learned table of ``rows`` positions, optionally mapped through a fixed embedding (invariant vectors)."""

    def __init__(self, rows: int, width: int, embed: nn.Module | None = None, *, device=None, dtype=None) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.empty(rows, width, device=device, dtype=dtype))
        self.embed = embed
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.table, std=POSITION_INIT_STD)

    def forward(self, length: int) -> torch.Tensor:
        rows = self.table[:length]
        return rows if self.embed is None else self.embed(rows)

    def export(self) -> PositionTable:
        with torch.no_grad():
            values = self.forward(self.table.shape[0])
        plain = PositionTable(*values.shape, device=values.device, dtype=values.dtype)
        with torch.no_grad():
            plain.table.copy_(values)
        return plain


def _time_mlp(width: int, out: int, factory) -> list[nn.Module]:
    return [
        SinusoidalTimestep(width),
        nn.Linear(width, 4 * width, **factory),
        nn.SiLU(),
        nn.Linear(4 * width, out, **factory),
    ]


class CondTransformerRegressorBase(nn.Module):
    """The forward pass shared by the equivariant and the plain regressor."""

    def _init_parts(self, input_emb, cond_emb, time_emb, in_pos, cond_pos, encoder, decoder, final_norm, head,
                    p_drop_emb: float, causal_attn: bool, in_horizon: int, cond_horizon: int) -> None:  # fmt: skip
        self.input_emb, self.cond_emb, self.time_emb = input_emb, cond_emb, time_emb
        self.in_pos, self.cond_pos = in_pos, cond_pos
        self.encoder, self.decoder, self.final_norm, self.head = encoder, decoder, final_norm, head
        self.drop = nn.Dropout(p_drop_emb)
        self.causal_attn, self.in_horizon, self.cond_horizon = causal_attn, in_horizon, cond_horizon

    def _check(self, X: torch.Tensor, Z: torch.Tensor, in_size: int, cond_size: int) -> None:
        if X.dim() != 3 or X.shape[-1] != in_size or not 1 <= X.shape[1] <= self.in_horizon:
            raise ValueError(
                f"X of shape {tuple(X.shape)}: expected (B, T, {in_size}) with 1 <= T <= in_horizon = "
                f"{self.in_horizon}; build the model with a larger in_horizon for longer sequences"
            )
        if Z.dim() != 3 or Z.shape[-1] != cond_size or not 1 <= Z.shape[1] <= self.cond_horizon:
            raise ValueError(
                f"Z of shape {tuple(Z.shape)}: expected (B, T_z, {cond_size}) with 1 <= T_z <= cond_horizon = "
                f"{self.cond_horizon}"
            )
        if X.shape[0] != Z.shape[0]:
            raise ValueError(f"X and Z have batch sizes {X.shape[0]} and {Z.shape[0]}; they must match")

    @staticmethod
    def _check_step(step: torch.Tensor, batch: int) -> None:
        if step.dim() > 1 or (step.dim() == 1 and step.shape[0] not in (1, batch)):
            raise ValueError(
                f"opt_step of shape {tuple(step.shape)}: expected a scalar (the same step for every sample) or "
                f"({batch},) (one step per batch row); flatten a ({batch}, 1) tensor with opt_step.reshape(-1)"
            )

    def forward(self, X: torch.Tensor, opt_step: torch.Tensor | float, Z: torch.Tensor) -> torch.Tensor:
        batch, length = X.shape[:2]
        step = torch.as_tensor(opt_step, device=X.device, dtype=X.dtype)  # float, for the sinusoid
        self._check_step(step, batch)
        step = step.expand(batch)
        time_token = self.time_emb(step)[:, None]
        cond = torch.cat([time_token, self.cond_emb(Z)], dim=1)
        memory = self.encoder(self.drop(cond + self.cond_pos(cond.shape[1])))
        x = self.drop(self.input_emb(X) + self.in_pos(length))
        mask = None
        if self.causal_attn:
            mask = torch.triu(torch.ones(length, length, dtype=torch.bool, device=X.device), diagonal=1)
        x = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=self.causal_attn)
        return self.head(self.final_norm(x))

    def get_optim_groups(self, weight_decay: float = 1e-3) -> list[dict]:
        """Two groups covering every parameter once: linear-map DoFs/weights decay, everything else does not.

        Decay is tagged by role, not by ``p.dim() >= 2``: all equivariant DoFs are 1-D vectors.
        """
        decay, no_decay, seen = [], [], set()
        for module in self.modules():
            for name, param in module.named_parameters(recurse=False):
                if id(param) in seen:
                    continue
                seen.add(id(param))
                is_map = (isinstance(module, eLinear) and name == "weight_dof") or (
                    isinstance(module, nn.Linear) and name == "weight"
                )
                (decay if is_map else no_decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class CondTransformerRegressor(CondTransformerRegressorBase):
    """Plain twin of :class:`eCondTransformerRegressor` (same options, plain torch parts)."""

    def __init__(self, in_dim: int, cond_dim: int, out_dim: int, in_horizon: int, cond_horizon: int,
                 num_layers: int, num_attention_heads: int, embedding_dim: int, p_drop_emb: float = 0.1,
                 p_drop_attn: float = 0.1, causal_attn: bool = False, num_cond_layers: int = 0,
                 norm_module: str = "rmsnorm", device=None, dtype=None, *,
                 norm_first: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.in_dim, self.cond_dim = in_dim, cond_dim
        f = {"device": device, "dtype": dtype}
        d, h = embedding_dim, num_attention_heads
        if num_cond_layers > 0:
            options = {"norm_first": norm_first, "norm_module": norm_module, **f}
            layer = TransformerEncoderLayer(d, h, 4 * d, p_drop_attn, **options)
            encoder = TransformerStack(layer, num_cond_layers)
        else:
            encoder = MLP(d, d, [4 * d], activation="gelu", device=device, dtype=dtype)
        decoder = TransformerStack(TransformerDecoderLayer(d, h, 4 * d, p_drop_attn, norm_first=norm_first,
                                                           norm_module=norm_module, **f), num_layers)  # fmt: skip
        self._init_parts(
            nn.Linear(in_dim, d, **f), nn.Linear(cond_dim, d, **f), nn.Sequential(*_time_mlp(d, d, f)),
            PositionTable(in_horizon, d, **f), PositionTable(cond_horizon + 1, d, **f), encoder, decoder,
            build_plain_norm(norm_module, d, 1e-5, **f), nn.Linear(d, out_dim, **f),
            p_drop_emb, causal_attn, in_horizon, cond_horizon,
        )  # fmt: skip

    def forward(self, X: torch.Tensor, opt_step, Z: torch.Tensor) -> torch.Tensor:
        self._check(X, Z, self.in_dim, self.cond_dim)
        return super().forward(X, opt_step, Z)


class eCondTransformerRegressor(EquivariantModule, CondTransformerRegressorBase):
    r"""Equivariant conditional transformer regressor.

    .. math::
        f(\rho_X(g) X_k, \rho_Z(g) Z, k) = \rho_Y(g) f(X_k, Z, k) \quad \forall g \in G

    Tokens are embedded by :class:`~symm_layers.eLinear` into ``embedding_dim / |G|`` regular representations;
    positional and timestep embeddings live on the invariant subspace; the encoder (an :class:`~symm_layers.eMLP`
    when ``num_cond_layers = 0``) and the decoder stack are equivariant; the head is an ``eLinear`` to ``out_rep``.

    Args:
        in_rep, cond_rep, out_rep: representations of input, conditioning and output tokens (``out_rep=None``
            means ``in_rep``).
        in_horizon, cond_horizon: maximum numbers of input and conditioning tokens.
        num_layers: decoder layers; num_cond_layers: encoder layers over the conditioning tokens.
        num_attention_heads: heads of every attention (each must hold whole regular copies).
        embedding_dim: a multiple of ``|G|``.
        p_drop_emb, p_drop_attn: dropout on embeddings and inside attention/feed-forward blocks.
        causal_attn: mask future input tokens.
        norm_module: ``"rmsnorm"``, ``"layernorm"`` or ``"batchnorm"``.
        init_scheme: initialisation of every equivariant linear map.
        norm_affine: ``"isotypic"`` or ``"diagonal"`` affine in every norm (see :class:`~symm_layers.eRMSNorm`).
        norm_first: pre-norm (``True``) or post-norm residual blocks in the encoder and decoder layers.
        basis_expansion_scheme, weight_cache: strategies of every :class:`~symm_layers.eLinear` in the model
            (embeddings, attention projections, feed-forward maps, head).
        layout: the feature layout *inside* the model (:mod:`symm_layers.layout`); ``X``, ``Z`` and the output
            are always in the representations' own bases, and the same DoFs give the same function in every
            layout. ``"spectral"``: the token embeddings map straight into spectral coordinates, every norm fuses
            its per-irrep affine into torch's kernel, and the changes of basis into regular hidden representations
            are folded into the feed-forward weights. ``"auto"`` (default, :func:`auto_layout`): spectral while the
            embedding's weights are cheap to form (``basis_expansion_scheme="auto"`` resolves to ``orbit_gather``
            for it) and the norms gain from it (not ``"batchnorm"``, not ``norm_affine="diagonal"``), spatial
            otherwise (large embeddings, where the
            spatial maps' isotypic path never forms a weight). ``layout`` shows the choice.

    Shape:
        ``X``: ``(B, T, |in|)``, ``opt_step``: scalar or ``(B,)``, ``Z``: ``(B, T_z, |cond|)`` ->
        ``(B, T, |out|)``.
    """

    def __init__(self, in_rep: Representation, cond_rep: Representation, out_rep: Representation | None,
                 in_horizon: int, cond_horizon: int, num_layers: int, num_attention_heads: int, embedding_dim: int,
                 p_drop_emb: float = 0.1, p_drop_attn: float = 0.1, causal_attn: bool = False,
                 num_cond_layers: int = 0, norm_module: str = "rmsnorm",
                 init_scheme: InitScheme | None = "xavier_uniform", *, norm_affine: str = "isotypic",
                 norm_first: bool = True, basis_expansion_scheme: BasisExpansionScheme = "auto",
                 weight_cache: WeightCacheMode = "cached", layout: Layout | str = "auto", device=None,
                 dtype=None) -> None:  # fmt: skip
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep, cond_rep=cond_rep, out_rep=out_rep)
        self.requested_layout = layout
        if layout != "auto":
            check_layout(layout)
        out_rep = in_rep if out_rep is None else out_rep
        check_same_group(in_rep, cond_rep, out_rep)
        self.in_rep, self.cond_rep, self.out_rep = in_rep, cond_rep, out_rep
        emb = regular_hidden_rep(in_rep, embedding_dim, what="embedding_dim")
        if layout == "auto":
            layout = auto_layout(emb, norm_module, norm_affine)
        elif layout == "spectral" and norm_module == "batchnorm":
            raise ValueError("norm_module='batchnorm' supports layout='spatial' only; use 'rmsnorm' or 'layernorm'")
        self.layout = layout
        ffn = 4 * embedding_dim
        f = {"device": device, "dtype": dtype}
        strategy = {"basis_expansion_scheme": basis_expansion_scheme, "weight_cache": weight_cache}
        lin = {"init_scheme": init_scheme, **strategy, **f}
        layer_options = {"norm_first": norm_first, "norm_module": norm_module, "norm_affine": norm_affine, **lin}
        layer_options["layout"] = layout
        h = num_attention_heads
        invariant = InvariantEmbedding(emb, layout=layout, **f)
        attn_options = {"dropout": p_drop_attn, "layout": layout, **strategy, **f}
        if num_cond_layers > 0:
            layer = eTransformerEncoderLayer(emb, eMultiheadAttention(emb, h, **attn_options), ffn, p_drop_attn,
                                             **layer_options)  # fmt: skip
            encoder = TransformerStack(layer, num_cond_layers, io_layout=layout)
        else:
            encoder = eMLP(emb, emb, [ffn], activation="gelu", layout=layout, **lin)
        attns = [eMultiheadAttention(emb, h, **attn_options) for _ in range(2)]
        decoder_layer = eTransformerDecoderLayer(emb, *attns, ffn, p_drop_attn, **layer_options)
        decoder = TransformerStack(decoder_layer, num_layers, io_layout=layout)
        width = invariant.subspace.dim
        self._init_parts(
            eLinear(in_rep, emb, layout=("spatial", layout), **lin),
            eLinear(cond_rep, emb, layout=("spatial", layout), **lin),
            nn.Sequential(*_time_mlp(width, width, f), invariant),
            PositionTable(in_horizon, width, InvariantEmbedding(emb, layout=layout, **f), **f),
            PositionTable(cond_horizon + 1, width, InvariantEmbedding(emb, layout=layout, **f), **f),
            encoder, decoder, build_norm(norm_module, emb, 1e-5, affine=norm_affine, layout=layout, **f),
            eLinear(emb, out_rep, layout=(layout, "spatial"), **lin),
            p_drop_emb, causal_attn, in_horizon, cond_horizon,
        )  # fmt: skip
        self.embedding_rep = emb

    def forward(self, X: torch.Tensor, opt_step, Z: torch.Tensor) -> torch.Tensor:
        self._check(X, Z, self.in_rep.size, self.cond_rep.size)
        return super().forward(X, opt_step, Z)

    def extra_repr(self) -> str:
        auto = " (auto)" if self.requested_layout == "auto" else ""
        return (
            f"in_rep={self.in_rep.name}[{self.in_rep.size}], cond_rep={self.cond_rep.name}[{self.cond_rep.size}], "
            f"out_rep={self.out_rep.name}[{self.out_rep.size}], layout={self.layout}{auto}"
        )

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module):
        """``call(X, 0.5, Z)`` with ``min(seq_len, in_horizon)`` input and ``cond_horizon`` conditioning tokens.

        ``X`` and ``Z`` are packed into one feature vector per sample, acted on by ``rho_X`` on each input token
        and ``rho_Z`` on each conditioning token (a :class:`~symm_layers.module.StackedAction`).
        """
        length, cond_length = min(seq_len, self.in_horizon), self.cond_horizon
        in_size, cond_size = self.in_rep.size, self.cond_rep.size

        def fn(packed: torch.Tensor) -> torch.Tensor:
            X = packed[:, : length * in_size].reshape(-1, length, in_size)
            Z = packed[:, length * in_size :].reshape(-1, cond_length, cond_size)
            return call(X, 0.5, Z).flatten(1)

        in_action = StackedAction([self.in_rep] * length + [self.cond_rep] * cond_length)
        return fn, in_action, StackedAction([self.out_rep] * length), (batch_size,)

    @torch.no_grad()
    def reset_parameters(self, scheme: InitScheme = "xavier_uniform") -> None:
        for module in self.modules():
            if isinstance(module, eLinear):
                module.reset_parameters(scheme)
            elif isinstance(module, PositionTable):
                module.reset_parameters()

    def export(self) -> CondTransformerRegressor:
        plain = CondTransformerRegressor.__new__(CondTransformerRegressor)
        nn.Module.__init__(plain)
        plain.in_dim, plain.cond_dim = self.in_rep.size, self.cond_rep.size
        time_emb = nn.Sequential(*[_exported(m) for m in self.time_emb])
        parts = [_exported(getattr(self, n)) for n in ("input_emb", "cond_emb")]
        parts += [time_emb] + [_exported(getattr(self, n)) for n in ("in_pos", "cond_pos", "encoder", "decoder")]
        parts += [_exported(self.final_norm), _exported(self.head)]
        plain._init_parts(*parts, self.drop.p, self.causal_attn, self.in_horizon, self.cond_horizon)
        return plain.train(self.training)
