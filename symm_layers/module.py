"""Base class of the equivariant layers."""

from __future__ import annotations

import torch
from escnn.group import Representation
from torch import nn

from ._constants import ConstantsModule
from .cache import clear_caches


class EquivariantModule(ConstantsModule):
    """A layer mapping features of ``in_rep`` to features of ``out_rep``.

    Subclasses implement ``forward`` and :meth:`export`; this base checks feature sizes with an error that names
    the fix, clears caches held directly by the module whenever ``.to()``/``.double()`` rebuild its tensors, and
    (through :class:`ConstantsModule`) rebuilds floating constants from float64 masters on a dtype change.
    """

    in_rep: Representation
    out_rep: Representation

    def export(self) -> nn.Module:
        """Plain torch modules computing the same function with the current parameters."""
        raise NotImplementedError

    def check_features(self, x: torch.Tensor, rep: Representation | None = None, what: str = "input") -> None:
        rep = self.in_rep if rep is None else rep
        if x.dim() == 0 or x.shape[-1] != rep.size:
            got = tuple(x.shape)
            raise ValueError(
                f"{type(self).__name__}: {what} of shape {got} has last dimension "
                f"{got[-1] if got else None}, expected {rep.size} (= size of representation '{rep.name}'); "
                f"reshape features to (..., {rep.size})"
            )

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        clear_caches(self)
        return module
