"""Multi-head attention, equivariant and plain, with optional positional encodings.

One forward (:class:`_AttentionCore`) serves every class; ``__init__`` injects ``in_proj`` (``D -> 3D``, as in
``torch.nn.MultiheadAttention``), ``out_proj`` and a ``positional`` strategy. The equivariant classes inject
:class:`~symm_layers.linear.eLinear` maps and invariant positional terms; ``export()`` gives their plain twin.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from escnn.group import Representation, directsum
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from ._types import BasisExpansionScheme, InitScheme, WeightCacheMode
from .linear import InvariantSubspace, eLinear
from .module import EquivariantModule
from .positional import AbsolutePositions, NoPositions, RelativePositions
from .reps import decompose

__all__ = [
    "AbsolutePositionalAttention",
    "MultiheadAttention",
    "RelativePositionalAttention",
    "eAbsolutePositionalAttention",
    "eMultiheadAttention",
    "eRelativePositionalAttention",
    "valid_num_heads",
]


# ----------------------------------------------------------------------------------------------------- heads
def _mixing_groups(rep: Representation) -> np.ndarray:
    """Label coordinates by group: a group spans whole blocks of the change of basis and whole irrep copies."""
    decomposition = decompose(rep)
    size, src, dst = decomposition.size, [], []
    for block in decomposition.blocks:
        for rows, cols in zip(block.rows, block.cols, strict=True):
            targets = rows.tolist() + (size + np.unique(decomposition.copy_index[cols])).tolist()
            src.extend([rows[0]] * len(targets))
            dst.extend(targets)
    nodes = size + decomposition.num_copies
    return connected_components(coo_matrix((np.ones(len(src)), (src, dst)), shape=(nodes, nodes)))[1][:size]


def valid_num_heads(rep: Representation) -> list[int]:
    """Head counts whose contiguous feature slices are subrepresentations (``n`` regular copies: divisors of n)."""
    labels, size = _mixing_groups(rep), rep.size
    num_groups, divisors = np.unique(labels).size, [h for h in range(1, size + 1) if size % h == 0]
    # every group lies inside one head iff there are as many distinct (group, head) pairs as groups
    pairs = [np.unique(np.stack([labels, np.arange(size) * h // size]), axis=1).shape[1] for h in divisors]
    return [h for h, count in zip(divisors, pairs, strict=True) if count == num_groups]


def _check_num_heads(embed_dim: int, num_heads: int, rep: Representation | None = None) -> None:
    valid = [h for h in range(1, embed_dim + 1) if embed_dim % h == 0] if rep is None else valid_num_heads(rep)
    if num_heads <= 0 or embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; choose among {valid}")
    if num_heads not in valid:
        raise ValueError(
            f"num_heads={num_heads} splits a component of in_rep '{rep.name}' (coordinates that rho(g) mixes would "
            f"fall in different heads, so per-head logits are not invariant); choose num_heads among {valid}"
        )


# ----------------------------------------------------------------------------------------------------- positions
# ----------------------------------------------------------------------------------------------------- core
def _additive(mask: torch.Tensor, dtype: torch.dtype, blocked_value: bool = True) -> torch.Tensor:
    """Bool masks become ``-inf`` where ``mask == blocked_value`` and 0 elsewhere; float masks are additive."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    blocked = mask if blocked_value else ~mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(blocked, float("-inf"))


class _AttentionCore(nn.Module):
    r"""The forward of every attention class here; subclasses set ``in_proj``, ``out_proj`` and ``positional``.

    .. math::
        \operatorname{head}_h = \operatorname{softmax}\big(q_h k_h^\top / \sqrt{D/H} + M + P_h\big)\, v_h

    :math:`q_h, k_h, v_h` are the ``h``-th contiguous width-``D/H`` slices of the projected inputs, :math:`M` the
    summed additive masks, :math:`P_h` the positional logit bias. ``in_proj`` exposes ``.weight``/``.bias``.
    """

    batch_first = True

    def _init_core(self, embed_dim: int, num_heads: int, dropout: float, bias: bool, device, dtype) -> None:
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.has_bias, self._factory = float(dropout), bias, dict(device=device, dtype=dtype)
        self.positional: nn.Module = NoPositions()

    def _check_features(self, x: torch.Tensor, what: str) -> None:
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"{what} of shape {tuple(x.shape)}: last dimension must be embed_dim={self.embed_dim}")

    def _check_inputs(self, query, key, value) -> None:
        for x, what in ((query, "query"), (key, "key"), (value, "value")):
            if x.dim() != 3:
                raise ValueError(f"{what} of shape {tuple(x.shape)} is not batch-first (B, T, D); use .unsqueeze(0)")
            self._check_features(x, what)
        if query.shape[0] != key.shape[0] or value.shape[:2] != key.shape[:2]:
            raise ValueError(
                f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}: all need one batch "
                "size, and key and value one sequence length"
            )

    def _project_inputs(self, query, key, value):
        if query is key and key is value:  # self-attention: one fused projection
            return self.in_proj(query).split(self.embed_dim, dim=-1)
        weights, bias = self.in_proj.weight.split(self.embed_dim), self.in_proj.bias
        biases = (None,) * 3 if bias is None else bias.split(self.embed_dim)
        return [F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases, strict=True)]

    def _mask(self, query, key, attn_mask, key_padding_mask, position_mask) -> torch.Tensor | None:
        """The sum of the given masks as one additive ``(B | 1, H | 1, T_q, T_k)`` mask, or ``None``."""
        (batch, t_q), t_k, heads, dtype, parts = query.shape[:2], key.shape[1], self.num_heads, query.dtype, []
        if attn_mask is not None:
            if attn_mask.shape not in ((t_q, t_k), (batch * heads, t_q, t_k)):
                raise ValueError(
                    f"attn_mask of shape {tuple(attn_mask.shape)}: expected ({t_q}, {t_k}) or (batch * num_heads, "
                    f"T_q, T_k) = ({batch * heads}, {t_q}, {t_k})"
                )
            parts.append(_additive(attn_mask, dtype).view(-1, heads if attn_mask.dim() == 3 else 1, t_q, t_k))
        for mask, what in ((key_padding_mask, "key_padding_mask"), (position_mask, "position_mask")):
            if mask is None:
                continue
            if mask.shape != (batch, t_k) or what == "position_mask" and mask.dtype != torch.bool:
                raise ValueError(
                    f"{what} of shape {tuple(mask.shape)} and dtype {mask.dtype}: expected ({batch}, {t_k})"
                    + (", bool, True where the key position is valid" if what == "position_mask" else "")
                )
            parts.append(_additive(mask, dtype, blocked_value=what == "key_padding_mask")[:, None, None, :])
        return sum(parts[1:], parts[0]) if parts else None

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        *,
        query_positions: torch.Tensor | None = None,
        key_positions: torch.Tensor | None = None,
        position_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # (output, attention weights or None)
        """Attend from ``query`` ``(B, T_q, D)`` to ``key``/``value`` ``(B, T_k, D)``; returns ``(out, weights)``.

        Args:
            query, key, value: one tensor passed as all three takes the fused self-attention projection.
            key_padding_mask, attn_mask, is_causal: as in ``torch.nn.MultiheadAttention``: ``(B, T_k)``;
                ``(T_q, T_k)`` or batch-major ``(B * num_heads, T_q, T_k)``; bool ``True`` masks out, float is
                added. ``is_causal`` masks keys ``j > i`` (top-left aligned) on top of ``attn_mask``, if any.
            need_weights, average_attn_weights: also return the softmax weights (explicit path instead of
                ``F.scaled_dot_product_attention``), ``(B, T_q, T_k)`` averaged over heads or
                ``(B, num_heads, T_q, T_k)``; taken before dropout (torch: after), so rows sum to 1.
            query_positions, key_positions: integer ``(T,)`` or ``(B, T)``, default ``arange(T)``; positional
                classes only, the others raise ``ValueError``.
            position_mask: bool ``(B, T_k)``, ``True`` where a key's position is valid. A ``False`` key is masked
                out for every query (as ``key_padding_mask=~position_mask``) and its position is never read (may
                be padding such as ``-1``). Queries are not masked: padded query rows still need in-range
                positions for the absolute variant, and their outputs are meaningless.

        Note:
            Dropout acts in training mode only. A query whose keys are all masked gets zero weights and output
            with ``need_weights``; otherwise what ``F.scaled_dot_product_attention`` gives (zeros on torch 2.13 CPU).
        """
        self._check_inputs(query, key, value)
        (batch, t_q), t_k = query.shape[:2], key.shape[1]
        mask = self._mask(query, key, attn_mask, key_padding_mask, position_mask)
        query_in, key_in, logit_bias = self.positional(query, key, query_positions, key_positions, position_mask)
        q, k, v = (
            x.view(batch, x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
            for x in self._project_inputs(query_in, key_in, value)
        )
        if logit_bias is not None:
            mask = logit_bias.to(q.dtype) if mask is None else mask + logit_bias.to(q.dtype)
        if is_causal and (need_weights or mask is not None):  # else SDPA applies it from is_causal
            allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
            mask = _additive(allowed, q.dtype, blocked_value=False) + (0.0 if mask is None else mask)
            is_causal = False
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            logits = (q @ k.mT) * (1.0 / math.sqrt(self.head_dim))
            logits = logits if mask is None else logits + mask
            weights = torch.softmax(logits, dim=-1)
            if mask is not None:  # a fully masked row attends to nothing instead of producing NaN
                weights = weights.masked_fill(torch.isneginf(logits).all(dim=-1, keepdim=True), 0.0)
            heads = F.dropout(weights, dropout_p) @ v
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
            weights = None
        return self.out_proj(heads.transpose(1, 2).reshape(batch, t_q, self.embed_dim)), weights


# ----------------------------------------------------------------------------------------------------- plain
class MultiheadAttention(_AttentionCore):
    """Plain batch-first multi-head attention, the twin of ``torch.nn.MultiheadAttention(batch_first=True)``.

    Torch's parameters (``in_proj.weight``/``.bias`` are its ``in_proj_weight``/``in_proj_bias``) and
    initialisation; forward as :meth:`_AttentionCore.forward`. Head ``h`` reads features ``hD/H : (h+1)D/H``.

    Raises:
        ValueError: if ``num_heads`` does not divide ``embed_dim``, or for badly shaped inputs or masks.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout=0.0, bias=True, *, device=None, dtype=None) -> None:
        super().__init__()
        _check_num_heads(embed_dim, num_heads)
        self._init_core(embed_dim, num_heads, dropout, bias, device, dtype)
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias, **self._factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **self._factory)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Torch's scheme: Xavier-uniform ``in_proj``, default ``nn.Linear`` ``out_proj``, zero biases."""
        nn.init.xavier_uniform_(self.in_proj.weight)
        self.out_proj.reset_parameters()
        for proj in (self.in_proj, self.out_proj):
            if proj.bias is not None:
                proj.bias.zero_()
        self.positional.reset_parameters()

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, bias={self.has_bias}"


class AbsolutePositionalAttention(MultiheadAttention):
    """:class:`MultiheadAttention` adding learned embeddings ``table[p]`` (``max_positions x D``) to query and key.

    Other arguments as :class:`MultiheadAttention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, max_positions: int, *args, **kwargs) -> None:
        super().__init__(embed_dim, num_heads, *args, **kwargs)
        self.positional = AbsolutePositions(max_positions, None, embed_dim, **self._factory)


class RelativePositionalAttention(MultiheadAttention):
    r""":class:`MultiheadAttention` adding a learned per-head bias over clipped relative distance to the logits.

    .. math::
        \text{logit}_{h,i,j} \mathrel{+}= b_h\big[\operatorname{clip}(p^k_j - p^q_i, -M, M)\big],
        \qquad M = \texttt{max\_distance}
    """

    def __init__(self, embed_dim: int, num_heads: int, max_distance: int, *args, **kwargs) -> None:
        super().__init__(embed_dim, num_heads, *args, **kwargs)
        self.positional = RelativePositions(num_heads, max_distance, **self._factory)


# ----------------------------------------------------------------------------------------------------- equivariant
class eMultiheadAttention(EquivariantModule, _AttentionCore):
    r"""Multi-head attention with :class:`eLinear` projections, G-equivariant in the token features.

    .. math::
        \operatorname{MHA}(\rho(g) Q, \rho(g) K, \rho(g) V) = \rho(g) \operatorname{MHA}(Q, K, V) \qquad \forall g

    The projections commute with :math:`\rho(g)`, and each head's feature slice holds whole components of the
    change of basis, so it is a subrepresentation acting orthogonally: every logit :math:`q_h \cdot k_h` is
    invariant and the softmax mixes tokens that transform alike.

    Args:
        in_rep: orthogonal representation of the token features, ``D = in_rep.size``.
        num_heads: must not split a component of ``in_rep`` (:func:`valid_num_heads`; for ``n`` regular copies, the
            divisors of ``n``).
        dropout: on the attention weights, training only.
        bias: invariant biases in both projections, initialised to zero as torch does.
        basis_expansion_scheme, weight_cache: of the :class:`eLinear` projections.
        init_scheme: of the projection weights; ``None`` skips it (checkpoint loading).

    Shape:
        ``(B, T_q, D), (B, T_k, D), (B, T_k, D) -> (B, T_q, D)``; see :meth:`_AttentionCore.forward`.

    Note:
        Self-attention (``query is key is value``) runs one fused ``eLinear(in_rep, 3 * in_rep)`` that forms no
        dense weight while training; other calls slice its dense weight (cached under ``no_grad``).

    Raises:
        ValueError: for a ``num_heads`` splitting a component (naming the valid ones), features of the wrong size,
            bad masks, or positions given to this non-positional class.

    Example:
        >>> from escnn.group import cyclic_group, directsum
        >>> attn = eMultiheadAttention(directsum([cyclic_group(4).regular_representation] * 4), num_heads=2)
        >>> x = torch.randn(3, 5, 16)
        >>> attn(x, x, x)[0].shape
        torch.Size([3, 5, 16])
    """

    def __init__(
        self,
        in_rep: Representation,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        basis_expansion_scheme: BasisExpansionScheme = "auto",
        weight_cache: WeightCacheMode = "cached",
        init_scheme: InitScheme | None = "xavier_uniform",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_num_heads(in_rep.size, num_heads, in_rep)
        self._init_core(in_rep.size, num_heads, dropout, bias, device, dtype)
        self.in_rep = self.out_rep = in_rep
        self.init_scheme = init_scheme
        options = dict(bias=bias, init_scheme=None, basis_expansion_scheme=basis_expansion_scheme, **self._factory)
        stacked = directsum([in_rep] * 3, name=f"3x{in_rep.name}")
        self.in_proj = eLinear(in_rep, stacked, weight_cache=weight_cache, **options)
        self.out_proj = eLinear(in_rep, in_rep, weight_cache=weight_cache, **options)
        if init_scheme is not None:
            self.reset_parameters(init_scheme)

    @torch.no_grad()
    def reset_parameters(self, scheme: InitScheme | None = None) -> None:
        """Projection weights by ``scheme`` (default: the constructor's), zero biases, fresh positional tables."""
        for proj in (self.in_proj, self.out_proj):
            proj.reset_parameters(scheme or self.init_scheme or "xavier_uniform")
            if proj.bias_module is not None and proj.bias_module.has_bias:
                proj.bias_module.reset_parameters("zeros")
        self.positional.reset_parameters()

    def _check_features(self, x: torch.Tensor, what: str) -> None:
        if x.shape[-1] != self.embed_dim:
            self.check_features(x, what=what)

    def _plain_twin(self, **factory) -> MultiheadAttention:
        return MultiheadAttention(self.embed_dim, self.num_heads, self.dropout, self.has_bias, **factory)

    def export(self) -> MultiheadAttention:
        """The plain twin (:class:`MultiheadAttention` or its positional subclass) computing the same outputs."""
        dof = self.out_proj.weight_dof
        plain = self._plain_twin(device=dof.device, dtype=dof.dtype)
        plain.in_proj, plain.out_proj = self.in_proj.export(), self.out_proj.export()
        plain.positional = self.positional.export()
        return plain.train(self.training)

    def extra_repr(self) -> str:
        return f"in_rep={self.in_rep.name}[{self.embed_dim}], num_heads={self.num_heads}, dropout={self.dropout}"


class eAbsolutePositionalAttention(eMultiheadAttention):
    r""":class:`eMultiheadAttention` adding learned *invariant* position embeddings to its query and key inputs.

    .. math::
        Q_t \mapsto Q_t + E(p^q_t), \quad K_t \mapsto K_t + E(p^k_t), \qquad E(p) = \textstyle\sum_i \theta_{p,i} u_i

    :math:`u_i` is an orthonormal basis of ``in_rep``'s invariant vectors (its trivial irrep copies), so
    :math:`\rho(g) E(p) = E(p)` and the shift commutes with the group action. The table :math:`\theta` is
    ``(max_positions, number of trivial copies)``. Other arguments as :class:`eMultiheadAttention`.

    Raises:
        ValueError: if ``in_rep`` has no trivial irrep, or a position is outside ``[0, max_positions)``.
    """

    def __init__(self, in_rep: Representation, num_heads: int, max_positions: int, *args, **kwargs) -> None:
        super().__init__(in_rep, num_heads, *args, **kwargs)
        subspace = InvariantSubspace(in_rep, **self._factory)
        if subspace.dim == 0:
            raise ValueError(
                f"in_rep '{in_rep.name}' has no trivial irrep, so no position embedding is invariant; add a trivial "
                "irrep or a regular representation to in_rep, or use eRelativePositionalAttention"
            )
        self.positional = AbsolutePositions(max_positions, subspace, in_rep.size, **self._factory)

    def _plain_twin(self, **factory) -> AbsolutePositionalAttention:
        args = (self.embed_dim, self.num_heads, self.positional.max_positions, self.dropout, self.has_bias)
        return AbsolutePositionalAttention(*args, **factory)


class eRelativePositionalAttention(eMultiheadAttention):
    r""":class:`eMultiheadAttention` adding a learned per-head bias over clipped relative distance to its logits.

    .. math::
        \text{logit}_{h,i,j} \mathrel{+}= b_h\big[\operatorname{clip}(p^k_j - p^q_i, -M, M)\big],
        \qquad M = \texttt{max\_distance}

    The bias ignores the features, so the logits stay invariant. Other arguments as :class:`eMultiheadAttention`.
    """

    def __init__(self, in_rep: Representation, num_heads: int, max_distance: int, *args, **kwargs) -> None:
        super().__init__(in_rep, num_heads, *args, **kwargs)
        self.positional = RelativePositions(num_heads, max_distance, **self._factory)

    def _plain_twin(self, **factory) -> RelativePositionalAttention:
        args = (self.embed_dim, self.num_heads, self.positional.max_distance, self.dropout, self.has_bias)
        return RelativePositionalAttention(*args, **factory)
