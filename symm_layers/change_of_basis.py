"""Structured application of a representation's orthogonal change of basis.

For ``rho(g) = Q (+)_c rho_c(g) Q^T`` this module maps coordinates between the original basis and a *local
spectral* order in which the components of ``Q`` are contiguous and grouped by block type. In that order ``Q`` is
block-diagonal with repeated blocks, so ``x -> Q^T x`` costs ``D * s`` multiply-adds (``s`` the block size) and an
identity block costs nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from ._constants import ConstantsModule
from .reps import IsotypicDecomposition

#: Smallest tile of :meth:`StructuredChangeOfBasis.conjugation_tiles`: blocks smaller than this are merged
#: block-diagonally (a batched GEMM over 8x8 tiles measured 2.2x slower than over 16x16 ones on CPU).
MIN_TILE = 16
#: Largest tile built from its scales by one GEMM against the flattened outer products of the basis columns
#: (``width^3`` constants); larger tiles are built as ``Q_b diag(scale) Q_b^T``.
MAX_OUTER_TILE = 64


def _merge_factor(count: int, s: int) -> int:
    """Smallest divisor ``k`` of ``count`` with ``k * s >= MIN_TILE`` (``count`` if none)."""
    for k in range(1, count + 1):
        if count % k == 0 and k * s >= MIN_TILE:
            return k
    return count


class StructuredChangeOfBasis(ConstantsModule):
    """Apply ``Q`` or ``Q^T`` of one representation along the last dimension of a tensor.

    Attributes:
        local_position: numpy array ``(D,)``; ``local_position[c]`` is where spectral coordinate ``c`` sits in
            the local spectral order.
    """

    def __init__(self, decomposition: IsotypicDecomposition, *, device=None, dtype=None) -> None:
        super().__init__()
        self.size = decomposition.size
        rows = np.concatenate([b.rows.reshape(-1) for b in decomposition.blocks]) if self.size else np.zeros(0)
        cols = np.concatenate([b.cols.reshape(-1) for b in decomposition.blocks]) if self.size else np.zeros(0)
        self.local_position = np.empty(self.size, dtype=np.int64)
        self.local_position[cols.astype(np.int64)] = np.arange(self.size)
        self._segments: list[tuple[int, int, int, str | None]] = []  # (start, count, size, buffer name)
        start = 0
        for i, block in enumerate(decomposition.blocks):
            count, s = block.rows.shape
            name = None
            if not block.is_identity:
                name = f"block_{i}"
                self.register_constant(name, block.basis, device=device, dtype=dtype)
                tiled = np.kron(np.eye(_merge_factor(count, block.basis.shape[0])), block.basis)
                self.register_constant(f"merged_{i}", tiled, device=device, dtype=dtype)
                if tiled.shape[0] <= MAX_OUTER_TILE:  # outer[j] = q_j q_j^T, flattened: tiles = scales @ outer
                    outer = np.einsum("ij,kj->jik", tiled, tiled).reshape(tiled.shape[0], -1)
                    self.register_constant(f"tile_{i}", outer, device=device, dtype=dtype)
                else:
                    self.register_constant(f"tile_{i}", tiled, device=device, dtype=dtype)
            self._segments.append((start, count, s, name))
            start += count * s
        self.rows_are_ordered = bool(np.array_equal(rows, np.arange(self.size)))
        if not self.rows_are_ordered:
            self.register_constant("to_local_rows", rows, device=device)
            self.register_constant("from_local_rows", np.argsort(rows), device=device)
        self.is_identity = self.rows_are_ordered and all(name is None for *_, name in self._segments)

    def multiply_adds_per_vector(self) -> int:
        return sum(count * s * s for _, count, s, name in self._segments if name is not None)

    def _blockwise(self, x: torch.Tensor, transpose: bool, dim: int) -> torch.Tensor:
        pieces = []
        for start, count, s, name in self._segments:
            piece = x.narrow(dim, start, count * s)
            if name is not None:
                block = getattr(self, name)
                if dim == 0:  # rows of a matrix: (count, s, rest) with the block on the left
                    piece = ((block if transpose else block.mT) @ piece.reshape(count, s, -1)).reshape(count * s, -1)
                else:  # blocks merged to >= MIN_TILE columns: rows @ blockdiag(Q_b, ...) (2.5x faster than 8 wide)
                    merged = self._buffers["merged_" + name[len("block_") :]]
                    flat = piece.reshape(-1, merged.shape[0])
                    piece = (flat @ (merged.mT if transpose else merged)).view(piece.shape)
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=dim)

    def to_spectral(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Original -> local spectral coordinates (``Q^T x`` along ``dim``, which is -1 or 0)."""
        if not self.rows_are_ordered:
            x = x.index_select(dim, self.to_local_rows)
        return self._blockwise(x, transpose=False, dim=dim)

    def from_spectral(self, z: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Local spectral -> original coordinates (``Q z`` along ``dim``, which is -1 or 0)."""
        y = self._blockwise(z, transpose=True, dim=dim)
        if not self.rows_are_ordered:
            y = y.index_select(dim, self.from_local_rows)
        return y

    def conjugate_scale(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``Q diag(scale) Q^T x`` along the last dim, for ``scale`` of shape ``(D,)`` in local spectral order.

        Equal to ``from_spectral(to_spectral(x) * scale)``, but each block's product stays in the transposed
        ``(s, rows)`` layout between its two GEMMs, saving two re-layouts of the activations.
        """
        if not self.rows_are_ordered:
            x = x.index_select(-1, self.to_local_rows)
        pieces = []
        for start, count, s, name in self._segments:
            piece = x[..., start : start + count * s]
            local = scale[start : start + count * s]
            if name is None:
                pieces.append(piece * local)
                continue
            block = getattr(self, name)
            z = block.mT @ piece.reshape(-1, s).mT  # (s, rows * count), spectral
            z = (z.view(s, -1, count) * local.view(count, s).mT.unsqueeze(1)).view(s, -1)
            pieces.append((block @ z).mT.reshape(piece.shape))
        y = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        if not self.rows_are_ordered:
            y = y.index_select(-1, self.from_local_rows)
        return y

    def conjugation_tiles(self, scale: torch.Tensor) -> list[torch.Tensor]:
        """``Q diag(scale) Q^T`` as it is applied by :meth:`apply_tiles`, for ``scale`` in local spectral order.

        Per segment: the ``(count * s,)`` scales of an identity block, else the symmetric matrices
        ``Q_b diag(scale_c) Q_b^T`` of its ``count`` copies, ``k`` at a time merged block-diagonally into
        ``(count / k, k * s, k * s)`` tiles (``k`` from :data:`MIN_TILE`). Building costs ``count * s^3``
        multiply-adds, applying ``count * s^2`` per row.
        """
        tiles = []
        for start, count, s, name in self._segments:
            local = scale[start : start + count * s]
            if name is None:
                tiles.append(local)
                continue
            basis = getattr(self, "tile_" + name[len("block_") :])
            width = basis.shape[0]
            if basis.dim() == 2 and basis.shape[1] == width * width:  # one GEMM from the scales
                tiles.append((local.view(-1, width) @ basis).view(-1, width, width))
            else:  # blockdiag(Q_b, ..., Q_b) itself
                tiles.append((basis * local.view(-1, 1, width)) @ basis.mT)
        return tiles

    def apply_tiles(self, x: torch.Tensor, tiles: list[torch.Tensor]) -> torch.Tensor:
        """``Q diag(scale) Q^T x`` along the last dim from :meth:`conjugation_tiles`: one batched GEMM per segment."""
        if not self.rows_are_ordered:
            x = x.index_select(-1, self.to_local_rows)
        rows = x.reshape(-1, self.size)
        pieces = []
        for (start, count, s, _), tile in zip(self._segments, tiles, strict=True):
            piece = rows[:, start : start + count * s]
            if tile.dim() == 1:
                pieces.append(piece * tile)
                continue
            groups, width = tile.shape[0], tile.shape[1]
            out = torch.bmm(piece.reshape(-1, groups, width).transpose(0, 1), tile)  # tiles are symmetric
            pieces.append(out.transpose(0, 1).reshape(-1, count * s))
        y = (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)).view(x.shape)
        if not self.rows_are_ordered:
            y = y.index_select(-1, self.from_local_rows)
        return y
