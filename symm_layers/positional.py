"""Positional strategies for attention: none, absolute (added to query/key inputs), relative (logit bias).

Each strategy is chosen once by the attention class and called as
``strategy(query, key, query_positions, key_positions, position_mask) -> (query, key, logit_bias | None)``.
Equivariant attention gives the absolute strategy an :class:`~symm_layers.linear.InvariantSubspace`, so what it
adds is invariant; relative biases are scalars per head and never touch the features.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .linear import InvariantSubspace

#: Standard deviation of the initial positional tables.
POSITIONAL_INIT_STD = 0.02


def _positions(positions: torch.Tensor | None, x: torch.Tensor, what: str) -> torch.Tensor:
    """``(B', T)`` integer positions of the tokens of ``x``, ``B'`` in ``{1, B}``; ``arange(T)`` when omitted."""
    batch, length = x.shape[:2]
    if positions is None:
        return torch.arange(length, device=x.device)[None]
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(f"{what} must hold integers, got {positions.dtype}; convert with .long()")
    positions = positions[None] if positions.dim() == 1 else positions
    if positions.dim() != 2 or positions.shape[1] != length or positions.shape[0] not in (1, batch):
        raise ValueError(f"{what} of shape {tuple(positions.shape)} must be ({length},) or ({batch}, {length})")
    return positions


class NoPositions(nn.Module):
    """No positional encoding; refuses positions rather than ignoring them."""

    def forward(self, query, key, query_positions, key_positions, position_mask):
        if query_positions is not None or key_positions is not None:
            raise ValueError(
                "this attention has no positional encoding: for query_positions/key_positions use "
                "eAbsolutePositionalAttention or eRelativePositionalAttention (plain twins: "
                "AbsolutePositionalAttention, RelativePositionalAttention)"
            )
        return query, key, None

    def reset_parameters(self) -> None:
        pass

    def export(self) -> nn.Module:
        return copy.deepcopy(self)


class TablePositions(NoPositions):
    """A learned table read at token positions; keys outside ``position_mask`` read position 0."""

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


class AbsolutePositions(TablePositions):
    """Adds ``embed(table[p])`` to query and key inputs; ``embed`` is ``subspace.expand`` (invariant) or identity."""

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
        plain = AbsolutePositions(self.max_positions, None, self.size, device=self.table.device, dtype=self.table.dtype)
        with torch.no_grad():
            plain.table.copy_(self.embed(torch.arange(self.max_positions, device=self.table.device)))
        return plain

    def extra_repr(self) -> str:
        return f"max_positions={self.max_positions}, dofs_per_position={self.table.shape[1]}"


class RelativePositions(TablePositions):
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
