"""Multi-head attention, equivariant and plain, with optional positional encodings.

One forward (:class:`_AttentionCore`) serves every class; what differs is injected in ``__init__``: the input
projection ``in_proj`` (``D -> 3D``, query/key/value stacked as in ``torch.nn.MultiheadAttention``), the output
projection ``out_proj`` and a ``positional`` strategy that may shift the query/key inputs or bias the logits.
The equivariant classes inject :class:`~symm_layers.linear.eLinear` maps and invariant positional terms; their
``export()`` returns the plain twin with the same parameters and outputs.
"""

from __future__ import annotations

import copy
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

#: Standard deviation of the initial positional tables.
POSITIONAL_INIT_STD = 0.02


# ----------------------------------------------------------------------------------------------------- heads
def _mixing_groups(rep: Representation) -> np.ndarray:
    """Label each coordinate by the smallest coordinate set closed under every ``rho(g)``.

    Coordinates are coupled when one block of the change of basis touches both, or when their blocks touch the
    same irrep copy; each group therefore spans whole irrep copies.
    """
    decomposition = decompose(rep)
    size, src, dst = decomposition.size, [], []
    for block in decomposition.blocks:
        for rows, cols in zip(block.rows, block.cols, strict=True):
            targets = rows.tolist() + (size + np.unique(decomposition.copy_index[cols])).tolist()
            src.extend([rows[0]] * len(targets))
            dst.extend(targets)
    nodes = size + decomposition.num_copies
    return connected_components(coo_matrix((np.ones(len(src)), (src, dst)), shape=(nodes, nodes)))[1][:size]


def _split_heads(labels: np.ndarray, num_heads: int) -> tuple[int, int] | None:
    """``(first, last)`` head of the first coordinate group that straddles a head boundary, else ``None``."""
    head = np.arange(labels.size) // (labels.size // num_heads)
    for label in np.unique(labels):
        heads = head[labels == label]
        if heads.min() != heads.max():
            return int(heads.min()), int(heads.max())
    return None


def valid_num_heads(rep: Representation) -> list[int]:
    """Head counts whose contiguous feature slices are all subrepresentations of ``rep``.

    For a direct sum of ``n`` regular representations: the divisors of ``n``.
    """
    labels = _mixing_groups(rep)
    return [h for h in range(1, rep.size + 1) if rep.size % h == 0 and _split_heads(labels, h) is None]


def _check_num_heads(embed_dim: int, num_heads: int, rep: Representation | None = None) -> None:
    valid = [h for h in range(1, embed_dim + 1) if embed_dim % h == 0] if rep is None else valid_num_heads(rep)
    if num_heads <= 0 or embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; choose among {valid}")
    if num_heads not in valid:
        first, last = _split_heads(_mixing_groups(rep), num_heads)
        raise ValueError(
            f"num_heads={num_heads} splits a component of in_rep '{rep.name}' (coordinates mixed by rho(g) fall in "
            f"heads {first} and {last}, so per-head logits are not invariant); choose num_heads among {valid}"
        )


# ----------------------------------------------------------------------------------------------------- positions
def _positions(positions: torch.Tensor | None, x: torch.Tensor, what: str) -> torch.Tensor:
    """``(B', T)`` integer positions of the tokens of ``x``, ``B'`` in ``{1, B}``; ``arange(T)`` when omitted."""
    batch, length = x.shape[0], x.shape[1]
    if positions is None:
        return torch.arange(length, device=x.device)[None]
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(f"{what} must hold integers, got {positions.dtype}; convert with .long()")
    positions = positions[None] if positions.dim() == 1 else positions
    if positions.dim() != 2 or positions.shape[1] != length or positions.shape[0] not in (1, batch):
        raise ValueError(f"{what} of shape {tuple(positions.shape)} must be ({length},) or ({batch}, {length})")
    return positions


class _NoPositions(nn.Module):
    """No positional encoding; refuses positions rather than ignoring them."""

    def forward(self, query, key, query_positions, key_positions, position_mask):
        if query_positions is not None or key_positions is not None:
            raise ValueError(
                "this attention has no positional encoding: to use query_positions/key_positions build "
                "eAbsolutePositionalAttention or eRelativePositionalAttention (plain: AbsolutePositionalAttention, "
                "RelativePositionalAttention)"
            )
        return query, key, None

    def reset_parameters(self) -> None:
        pass

    def export(self) -> nn.Module:
        return copy.deepcopy(self)


class _TablePositions(_NoPositions):
    """A learned table read at token positions; keys outside ``position_mask`` read row 0."""

    def __init__(self, rows: int, cols: int, *, device, dtype) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.empty(rows, cols, device=device, dtype=dtype))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.table, std=POSITIONAL_INIT_STD)

    def resolve(self, query, key, query_positions, key_positions, position_mask):
        query_positions = _positions(query_positions, query, "query_positions")
        key_positions = _positions(key_positions, key, "key_positions")
        if position_mask is not None:
            key_positions = torch.where(position_mask, key_positions, 0)
        return query_positions, key_positions


class _AbsolutePositions(_TablePositions):
    """Adds ``embed(table[p])`` to the query and key inputs (not to the values).

    With ``subspace`` the table holds coefficients on the trivial irrep copies and ``embed`` is
    :meth:`InvariantSubspace.expand`, so each added vector is invariant; without it rows are added as they are.
    """

    def __init__(self, max_positions: int, subspace: InvariantSubspace | None, size: int, *, device, dtype):
        super().__init__(max_positions, size if subspace is None else subspace.dim, device=device, dtype=dtype)
        self.max_positions, self.size, self.subspace = max_positions, size, subspace

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(positions, self.table)
        return rows if self.subspace is None else self.subspace.expand(rows)

    def forward(self, query, key, query_positions, key_positions, position_mask):
        query_positions, key_positions = self.resolve(query, key, query_positions, key_positions, position_mask)
        if not torch.compiler.is_compiling():  # a data-dependent check: skipped inside compiled graphs
            for positions, what in ((query_positions, "query_positions"), (key_positions, "key_positions")):
                if positions.numel() and (positions.min() < 0 or positions.max() >= self.max_positions):
                    raise ValueError(
                        f"{what} must lie in [0, max_positions={self.max_positions}), got values in "
                        f"[{int(positions.min())}, {int(positions.max())}]; increase max_positions, mark padded "
                        "keys invalid in position_mask, and give padded queries any in-range position"
                    )
        return query + self.embed(query_positions), key + self.embed(key_positions), None

    def export(self) -> nn.Module:
        factory = dict(device=self.table.device, dtype=self.table.dtype)
        plain = _AbsolutePositions(self.max_positions, None, self.size, **factory)
        with torch.no_grad():
            plain.table.copy_(self.embed(torch.arange(self.max_positions, device=self.table.device)))
        return plain

    def extra_repr(self) -> str:
        return f"max_positions={self.max_positions}, dofs_per_position={self.table.shape[1]}"


class _RelativePositions(_TablePositions):
    """Adds ``table[h, clip(p_key - p_query, -max_distance, max_distance)]`` to the logits of head ``h``."""

    def __init__(self, num_heads: int, max_distance: int, *, device, dtype) -> None:
        super().__init__(num_heads, 2 * max_distance + 1, device=device, dtype=dtype)
        self.max_distance = max_distance

    def forward(self, query, key, query_positions, key_positions, position_mask):
        query_positions, key_positions = self.resolve(query, key, query_positions, key_positions, position_mask)
        distance = key_positions[:, None, :] - query_positions[:, :, None]  # (B', T_q, T_k)
        index = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return query, key, F.embedding(index, self.table.mT).permute(0, 3, 1, 2)  # (B', H, T_q, T_k)

    def extra_repr(self) -> str:
        return f"num_heads={self.table.shape[0]}, max_distance={self.max_distance}"


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
    merged additive masks and :math:`P_h` the positional logit bias, if any. ``in_proj`` maps ``D -> 3D`` and
    exposes ``.weight``/``.bias``.
    """

    batch_first = True

    def _init_core(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, float(dropout)
        self.head_dim = embed_dim // num_heads

    def _check_features(self, x: torch.Tensor, what: str) -> None:
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"{what} of shape {tuple(x.shape)}: last dimension must be embed_dim={self.embed_dim}")

    def _check_inputs(self, query, key, value, key_padding_mask, position_mask) -> None:
        for x, what in ((query, "query"), (key, "key"), (value, "value")):
            if x.dim() != 3:
                raise ValueError(
                    f"{type(self).__name__}: {what} of shape {tuple(x.shape)} is not batch-first (B, T, D); "
                    "unbatched inputs are not supported: add a batch axis with .unsqueeze(0)"
                )
            self._check_features(x, what)
        batch, t_k = key.shape[:2]
        if query.shape[0] != batch or value.shape[:2] != key.shape[:2]:
            raise ValueError(
                f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}: all need one batch "
                "size, and key and value one sequence length"
            )
        for mask, what in ((key_padding_mask, "key_padding_mask"), (position_mask, "position_mask")):
            if mask is not None and (mask.shape != (batch, t_k) or what == "position_mask" and mask.dtype != torch.bool):
                raise ValueError(
                    f"{what} of shape {tuple(mask.shape)} and dtype {mask.dtype}: expected shape ({batch}, {t_k})"
                    + (", dtype bool, True where the key position is valid" if what == "position_mask" else "")
                )

    def _project_inputs(self, query, key, value):
        if query is key and key is value:  # self-attention: one fused projection
            return self.in_proj(query).split(self.embed_dim, dim=-1)
        weights, bias = self.in_proj.weight.split(self.embed_dim), self.in_proj.bias
        biases = (None,) * 3 if bias is None else bias.split(self.embed_dim)
        return [F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases, strict=True)]

    def _merged_mask(self, q, t_k, attn_mask, key_padding_mask, position_mask, logit_bias, causal: bool):
        """The sum of all additive masks, broadcastable to ``(B, H, T_q, T_k)`` in ``q``'s dtype, or ``None``."""
        batch, heads, t_q, dtype = q.shape[0], self.num_heads, q.shape[2], q.dtype
        parts = [] if logit_bias is None else [logit_bias.to(dtype)]
        if attn_mask is not None:
            if attn_mask.shape not in ((t_q, t_k), (batch * heads, t_q, t_k)):
                raise ValueError(
                    f"attn_mask of shape {tuple(attn_mask.shape)}: expected ({t_q}, {t_k}) or (batch * num_heads, "
                    f"T_q, T_k) = ({batch * heads}, {t_q}, {t_k})"
                )
            parts.append(_additive(attn_mask, dtype).view(-1, heads if attn_mask.dim() == 3 else 1, t_q, t_k))
        if key_padding_mask is not None:
            parts.append(_additive(key_padding_mask, dtype)[:, None, None, :])
        if position_mask is not None:
            parts.append(_additive(position_mask, dtype, blocked_value=False)[:, None, None, :])
        if causal:
            allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
            parts.append(_additive(allowed, dtype, blocked_value=False))
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query, key, value: ``(B, T_q, D)``, ``(B, T_k, D)``, ``(B, T_k, D)``; one tensor passed as all three
                takes the fused self-attention projection.
            key_padding_mask: ``(B, T_k)``, bool ``True`` masks the key out, float is added to the logits.
            need_weights: also return attention weights (computed by an explicit softmax rather than by
                ``F.scaled_dot_product_attention``).
            attn_mask: ``(T_q, T_k)`` or batch-major ``(B * num_heads, T_q, T_k)``, bool ``True`` masks out, float
                is added, as in ``torch.nn.MultiheadAttention``.
            average_attn_weights: average the returned weights over heads.
            is_causal: query ``i`` sees keys ``j <= i`` only (top-left aligned when ``T_q != T_k``); combined with
                ``attn_mask`` when both are given (torch takes ``is_causal`` as a hint about ``attn_mask``).
            query_positions, key_positions: integer ``(T,)`` or ``(B, T)``, default ``arange(T)``; positional
                classes only, the others raise ``ValueError``.
            position_mask: bool ``(B, T_k)``, ``True`` where the key's position is valid. A ``False`` key is masked
                out for every query (as ``key_padding_mask=~position_mask``) and its position is not read (it may
                hold padding such as ``-1``). Queries are not masked: padded query rows still need in-range
                positions for the absolute variant, and their outputs are meaningless.

        Returns:
            ``(output (B, T_q, D), weights)``. ``weights`` is ``None`` unless ``need_weights``, else
            ``(B, T_q, T_k)`` (averaged) or ``(B, num_heads, T_q, T_k)``: softmax probabilities before dropout
            (torch returns them after dropout), rows summing to 1.

        Note:
            Dropout acts in training mode only. A query whose keys are all masked gets zero weights and a zero
            attention output with ``need_weights``; otherwise what ``F.scaled_dot_product_attention`` gives
            (zeros on torch 2.13's CPU kernels).
        """
        self._check_inputs(query, key, value, key_padding_mask, position_mask)
        batch, t_q = query.shape[:2]
        query_in, key_in, logit_bias = self.positional(query, key, query_positions, key_positions, position_mask)
        q, k, v = (
            x.view(batch, x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
            for x in self._project_inputs(query_in, key_in, value)
        )
        dropout_p = self.dropout if self.training else 0.0
        masks = (attn_mask, key_padding_mask, position_mask, logit_bias)
        if need_weights:
            mask = self._merged_mask(q, k.shape[2], *masks, causal=is_causal)
            logits = (q @ k.mT) * (1.0 / math.sqrt(self.head_dim))
            logits = logits if mask is None else logits + mask
            weights = torch.softmax(logits, dim=-1)
            if mask is not None:  # a fully masked row attends to nothing instead of producing NaN
                weights = weights.masked_fill(torch.isneginf(logits).all(dim=-1, keepdim=True), 0.0)
            heads = F.dropout(weights, dropout_p) @ v
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            mask = self._merged_mask(q, k.shape[2], *masks, causal=False)
            if is_causal and mask is not None:  # a lone causal mask goes to SDPA's is_causal instead
                mask = mask + self._merged_mask(q, k.shape[2], None, None, None, None, causal=True)
            causal = is_causal and mask is None
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
            weights = None
        return self.out_proj(heads.transpose(1, 2).reshape(batch, t_q, self.embed_dim)), weights


# ----------------------------------------------------------------------------------------------------- plain
class MultiheadAttention(_AttentionCore):
    """Plain batch-first multi-head attention, the twin of ``torch.nn.MultiheadAttention(batch_first=True)``.

    Torch's parameters (``in_proj.weight``/``.bias`` are its ``in_proj_weight``/``in_proj_bias``), its
    initialisation, and the forward of :meth:`_AttentionCore.forward`. Head ``h`` uses features
    ``h * D / H : (h + 1) * D / H``.

    Raises:
        ValueError: if ``num_heads`` does not divide ``embed_dim``, or for badly shaped inputs or masks.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, *, device=None, dtype=None):  # fmt: skip
        super().__init__()
        _check_num_heads(embed_dim, num_heads)
        self._init_core(embed_dim, num_heads, dropout)
        self.has_bias = bias
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias, device=device, dtype=dtype)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.positional: nn.Module = _NoPositions()
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
    """:class:`MultiheadAttention` adding learned embeddings ``table[p]`` (``max_positions x D``) to query and key."""

    def __init__(self, embed_dim: int, num_heads: int, max_positions: int, dropout: float = 0.0, bias: bool = True, *, device=None, dtype=None):  # fmt: skip
        super().__init__(embed_dim, num_heads, dropout, bias, device=device, dtype=dtype)
        self.positional = _AbsolutePositions(max_positions, None, embed_dim, device=device, dtype=dtype)


class RelativePositionalAttention(MultiheadAttention):
    r""":class:`MultiheadAttention` adding a learned per-head bias over clipped relative distance to the logits.

    .. math::
        \text{logit}_{h,i,j} \mathrel{+}= b_h\big[\operatorname{clip}(p^k_j - p^q_i, -M, M)\big], \quad M = \text{max\_distance}
    """

    def __init__(self, embed_dim: int, num_heads: int, max_distance: int, dropout: float = 0.0, bias: bool = True, *, device=None, dtype=None):  # fmt: skip
        super().__init__(embed_dim, num_heads, dropout, bias, device=device, dtype=dtype)
        self.positional = _RelativePositions(num_heads, max_distance, device=device, dtype=dtype)


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
        init_scheme: of the projection weights; ``None`` skips initialisation (checkpoint loading).

    Shape:
        ``(B, T_q, D), (B, T_k, D), (B, T_k, D) -> (B, T_q, D)``; see :meth:`_AttentionCore.forward`.

    Note:
        Self-attention (``query is key is value``) runs one fused ``eLinear(in_rep, 3 * in_rep)`` that forms no
        dense weight while training; other calls slice its dense weight (cached under ``no_grad``).

    Raises:
        ValueError: for a ``num_heads`` that splits a component (naming the valid ones), features of the wrong
            size, bad masks, or positions given to this non-positional class.

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
        basis_expansion_scheme: BasisExpansionScheme = "isotypic_expansion",
        weight_cache: WeightCacheMode = "cached",
        init_scheme: InitScheme | None = "xavier_uniform",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_num_heads(in_rep.size, num_heads, in_rep)
        self._init_core(in_rep.size, num_heads, dropout)
        self.in_rep = self.out_rep = in_rep
        self.has_bias, self.init_scheme = bias, init_scheme
        self._factory = dict(device=device, dtype=dtype)
        options = dict(bias=bias, init_scheme=None, basis_expansion_scheme=basis_expansion_scheme, **self._factory)
        stacked = directsum([in_rep] * 3, name=f"3x{in_rep.name}")
        self.in_proj = eLinear(in_rep, stacked, weight_cache=weight_cache, **options)
        self.out_proj = eLinear(in_rep, in_rep, weight_cache=weight_cache, **options)
        self.positional: nn.Module = _NoPositions()
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
        return (
            f"in_rep={self.in_rep.name}[{self.embed_dim}], num_heads={self.num_heads}, dropout={self.dropout}, "
            f"bias={self.has_bias}"
        )


class eAbsolutePositionalAttention(eMultiheadAttention):
    r""":class:`eMultiheadAttention` adding learned *invariant* position embeddings to its query and key inputs.

    .. math::
        Q_t \mapsto Q_t + E(p^q_t), \quad K_t \mapsto K_t + E(p^k_t), \qquad E(p) = \textstyle\sum_i \theta_{p,i} u_i

    :math:`u_i` is an orthonormal basis of the invariant vectors of ``in_rep`` (its trivial irrep copies), so
    :math:`\rho(g) E(p) = E(p)` and the shift commutes with the group action. The table is
    ``(max_positions, number of trivial copies)``; positions must lie in ``[0, max_positions)``.

    Raises:
        ValueError: if ``in_rep`` has no trivial irrep or a position is out of range.
    """

    def __init__(self, in_rep: Representation, num_heads: int, max_positions: int, dropout: float = 0.0, bias: bool = True, **kwargs):  # fmt: skip
        super().__init__(in_rep, num_heads, dropout, bias, **kwargs)
        subspace = InvariantSubspace(in_rep, **self._factory)
        if subspace.dim == 0:
            raise ValueError(
                f"in_rep '{in_rep.name}' has no trivial irrep, so no position embedding is invariant; add a trivial "
                "irrep or a regular representation to in_rep, or use eRelativePositionalAttention"
            )
        self.positional = _AbsolutePositions(max_positions, subspace, in_rep.size, **self._factory)

    def _plain_twin(self, **factory) -> AbsolutePositionalAttention:
        args = (self.embed_dim, self.num_heads, self.positional.max_positions, self.dropout, self.has_bias)
        return AbsolutePositionalAttention(*args, **factory)


class eRelativePositionalAttention(eMultiheadAttention):
    r""":class:`eMultiheadAttention` adding a learned per-head bias over clipped relative distance to its logits.

    .. math::
        \text{logit}_{h,i,j} \mathrel{+}= b_h\big[\operatorname{clip}(p^k_j - p^q_i, -M, M)\big], \quad M = \text{max\_distance}

    The bias does not depend on the features, so the logits stay invariant.
    """

    def __init__(self, in_rep: Representation, num_heads: int, max_distance: int, dropout: float = 0.0, bias: bool = True, **kwargs):  # fmt: skip
        super().__init__(in_rep, num_heads, dropout, bias, **kwargs)
        self.positional = _RelativePositions(num_heads, max_distance, **self._factory)

    def _plain_twin(self, **factory) -> RelativePositionalAttention:
        args = (self.embed_dim, self.num_heads, self.positional.max_distance, self.dropout, self.has_bias)
        return RelativePositionalAttention(*args, **factory)
