"""Non-persistent constant buffers that keep a float64 master copy.

Derived constants (change-of-basis blocks, endomorphism bases, basis stacks) are registered as non-persistent
buffers so they follow ``.to()`` but never enter the ``state_dict``. Casting a float32 buffer up to float64 would
carry float32 rounding into a float64 model, so after every ``_apply`` floating buffers are rebuilt from their
float64 numpy master at the new dtype and device. Integer constants (index maps) keep their int64 master too and
are rebuilt on every ``_apply``, so ``to_empty`` (e.g. after construction on ``device="meta"``) restores them
instead of leaving uninitialised memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ConstantsModule(nn.Module):
    """Module whose floating constants are rebuilt from float64 masters when their dtype changes."""

    def __init__(self) -> None:
        super().__init__()
        self._masters: dict[str, np.ndarray] = {}

    def register_constant(self, name: str, value: np.ndarray, *, device=None, dtype=None) -> None:
        """Register ``value`` as a non-persistent buffer with a numpy master (float64 or int64).

        Integer constants stay int64: ``index_select`` with int32 indices measured 1.5x slower on CPU.
        """
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            self._masters[name] = np.ascontiguousarray(value, dtype=np.float64)
            tensor = torch.as_tensor(self._masters[name], dtype=dtype or torch.get_default_dtype(), device=device)
        else:
            self._masters[name] = np.ascontiguousarray(value, dtype=np.int64)
            tensor = torch.as_tensor(self._masters[name], device=device)
        self.register_buffer(name, tensor, persistent=False)

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        for name, master in self._masters.items():
            current = self._buffers.get(name)
            if current is not None:
                dtype = current.dtype if current.is_floating_point() else None  # ints keep the master's width
                self._buffers[name] = torch.as_tensor(master, dtype=dtype, device=current.device)
        return module
