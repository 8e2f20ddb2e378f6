"""The zero map, for ``dim Hom_G = 0`` when a layer is asked to keep its output anyway (e3nn's force_irreps_out)."""

from __future__ import annotations

import torch

from .base import HomBasisStrategy
from .space import HomSpace


class ZeroMap(HomBasisStrategy):
    """Hom_G = {0}: expands an empty DoF vector to the zero matrix. Not a user-selectable strategy."""

    name = "zero_map"

    def __init__(self, space: HomSpace, *, device=None, dtype=None, **unused) -> None:
        super().__init__(space)
        if space.dim != 0:
            raise ValueError(f"ZeroMap is only for dim Hom_G = 0, got dim {space.dim}")

    def expand(self, dof: torch.Tensor) -> torch.Tensor:
        return dof.new_zeros(self.out_size, self.in_size)

    def adjoint(self, matrix: torch.Tensor) -> torch.Tensor:
        return matrix.new_zeros(0)

    def expand_batch(self, dof: torch.Tensor) -> torch.Tensor:
        return dof.new_zeros(dof.shape[0], self.out_size, self.in_size)

    def adjoint_batch(self, matrix: torch.Tensor) -> torch.Tensor:
        return matrix.new_zeros(matrix.shape[0], 0)

    def expand_macs(self) -> int:
        return 0
