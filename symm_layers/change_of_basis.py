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
                else:
                    # (block^T @ rows^T)^T: MKL runs this (M = s, N = rows) shape ~3x faster than rows @ block.
                    flat = piece.reshape(-1, s)
                    flat = ((block if transpose else block.mT) @ flat.mT).mT
                    piece = flat.reshape(*piece.shape)
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
