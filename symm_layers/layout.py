"""Feature layouts: the representation's own (spatial) basis, or its spectral basis.

For ``rho(g) = Q (+)_c rho_c(g) Q^T`` the *spectral* coordinates of a feature ``x`` are ``z = Q^T x``, in the order
of ``rep.irreps`` (escnn's spectral basis). There every map of Hom_G is block-sparse with a fixed pattern (Schur),
every per-irrep-copy scale is elementwise, and every invariant vector lives on the trivial coordinates, so norms
with the per-irrep affine fuse into one torch kernel and linear maps form their weight by one gather, for any
orthogonal representation. Attention logits ``<q, k>`` do not change under the orthogonal ``Q``.
"""

from __future__ import annotations

import numpy as np
import torch
from escnn.group import Representation

from ._constants import ConstantsModule
from .change_of_basis import StructuredChangeOfBasis
from .reps import IsotypicDecomposition, decompose

LAYOUTS = ("spatial", "spectral")

__all__ = ["LAYOUTS", "SpectralCoordinates", "check_layout", "spectral_representation"]


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return layout


def spectral_representation(rep: Representation) -> Representation:
    """The representation ``rep`` acts through in spectral coordinates: its irreps, identity change of basis."""
    return Representation(rep.group, f"{rep.name}_spectral", list(rep.irreps), np.eye(rep.size))


class SpectralCoordinates(ConstantsModule):
    """Map features of ``rep`` between the spatial and the spectral layout (``O(D * s)`` per vector)."""

    def __init__(self, rep: Representation | IsotypicDecomposition, *, device=None, dtype=None) -> None:
        super().__init__()
        decomposition = rep if isinstance(rep, IsotypicDecomposition) else decompose(rep)
        self.size = decomposition.size
        self.change = StructuredChangeOfBasis(decomposition, device=device, dtype=dtype)
        self.block_size = max((b.basis.shape[0] for b in decomposition.blocks if not b.is_identity), default=0)
        position = self.change.local_position
        self.is_ordered = bool(np.array_equal(position, np.arange(self.size)))
        if not self.is_ordered:
            self.register_constant("spectral_of_local", position, device=device)
            self.register_constant("local_of_spectral", np.argsort(position), device=device)

    @classmethod
    def from_decomposition(cls, decomposition: IsotypicDecomposition, **factory) -> SpectralCoordinates:
        return cls(decomposition, **factory)

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """``Q^T x`` along the last dimension."""
        local = self.change.to_spectral(x)
        return local if self.is_ordered else local.index_select(-1, self.spectral_of_local)

    def from_spectral(self, z: torch.Tensor) -> torch.Tensor:
        """``Q z`` along the last dimension."""
        local = z if self.is_ordered else z.index_select(-1, self.local_of_spectral)
        return self.change.from_spectral(local)
