"""``TransformerStack``: copies of an encoder or decoder layer, with one change of layout on entry and exit."""

from __future__ import annotations

import copy

import torch
from escnn.group import Representation
from torch import nn

from ._types import Layout
from .layout import SpectralCoordinates, check_layout, spectral_representation
from .module import EquivariantModule, check_module_equivariance
from .transformer import TransformerDecoderLayerBase, _exported, check_part


class TransformerStack(nn.Module):
    """``num_layers`` deep copies of an encoder or decoder layer, then an optional final norm.

    Every copy after the first is re-initialised (torch's stacks start with identical copies). Equivariant when the
    layer and the norm are; ``export()`` exports every part.

    Args:
        layer: the layer to copy.
        num_layers: how many copies.
        norm: final norm, in the layer's layout.
        io_layout: layout of the stack's inputs and outputs (``"spatial"``: ``in_rep``'s own basis). When the
            layers work in the spectral layout, the stack converts once on entry (``src``/``tgt`` and ``memory``)
            and once on exit, so every layer inside skips the change of basis.
    """

    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module | None = None, *,
                 io_layout: Layout = "spatial") -> None:  # fmt: skip
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layout = getattr(layer, "layout", "spatial")
        self.layout, self.io_layout = layout, check_layout(io_layout)
        if norm is not None and isinstance(getattr(layer, "in_rep", None), Representation):
            check_part(layer.in_rep, norm, "norm", "eLayerNorm(layer.in_rep)")
            if getattr(norm, "layout", "spatial") != layout:
                raise ValueError(f"the final norm must work in the layers' layout {layout!r}; build it with layout=")
        self.convert = None
        if layout != io_layout:
            ref = next(layer.parameters())
            self.convert = SpectralCoordinates(layer.in_rep, device=ref.device, dtype=ref.dtype)
            self.in_rep = self.out_rep = layer.in_rep
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        for copied in list(self.layers)[1:]:  # unlike torch, copies do not start identical
            for module in copied.modules():
                if module is not copied and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.norm = norm

    def check_equivariance(
        self, atol: float | None = None, rtol: float | None = None, *, batch_size: int = 4, seq_len: int = 5,
        samples: int = 20, seed: int = 0,
    ):  # fmt: skip
        """:meth:`EquivariantModule.check_equivariance` of the whole stack (equivariant layers only)."""
        first = self.layers[0]
        if not isinstance(first, EquivariantModule):
            raise TypeError(f"a stack of {type(first).__name__} (plain layers) has no group action to check")
        fn, in_action, out_action, shape = first._equivariance_probe(batch_size, seq_len, self)
        if self.convert is not None:  # the stack's own inputs and outputs are in io_layout
            reps = (first.in_rep, first.out_rep)
            if self.io_layout == "spectral":
                reps = tuple(spectral_representation(r) for r in reps)
            in_action, out_action = reps
        return check_module_equivariance(self, (fn, in_action, out_action, shape), atol, rtol, seed, samples)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.convert is not None:
            x = self._enter(x)
            if args and isinstance(self.layers[0], TransformerDecoderLayerBase):
                args = (self._enter(args[0]), *args[1:])  # memory
            elif "memory" in kwargs:
                kwargs["memory"] = self._enter(kwargs["memory"])
        for layer in self.layers:
            x = layer(x, *args, **kwargs)
        x = x if self.norm is None else self.norm(x)
        return x if self.convert is None else self._leave(x)

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        return self.convert.to_spectral(x) if self.io_layout == "spatial" else self.convert.from_spectral(x)

    def _leave(self, x: torch.Tensor) -> torch.Tensor:
        return self.convert.from_spectral(x) if self.io_layout == "spatial" else self.convert.to_spectral(x)

    def export(self) -> TransformerStack:
        stack = TransformerStack.__new__(TransformerStack)
        nn.Module.__init__(stack)
        stack.layers = nn.ModuleList(_exported(layer) for layer in self.layers)
        stack.norm = None if self.norm is None else _exported(self.norm)
        stack.layout = stack.io_layout = "spatial"
        ref = next(self.parameters())
        stack.convert = None if self.convert is None else _PlainConversion(self.convert, self.io_layout, ref)
        return stack.train(self.training)


class _PlainConversion(nn.Module):
    """The exported entry/exit change of basis of a :class:`TransformerStack`: two plain bias-free linear maps."""

    def __init__(self, coords: SpectralCoordinates, io_layout: str, ref: torch.Tensor) -> None:
        super().__init__()
        eye = torch.eye(coords.size, device=ref.device, dtype=ref.dtype)
        q_t = coords.to_spectral(eye)  # row i is Q^T e_i: the matrix Q
        self.enter = nn.Linear(coords.size, coords.size, bias=False, dtype=q_t.dtype, device=q_t.device)
        self.leave = nn.Linear(coords.size, coords.size, bias=False, dtype=q_t.dtype, device=q_t.device)
        with torch.no_grad():
            to_spectral, from_spectral = q_t.mT, q_t  # x -> Q^T x and z -> Q z as nn.Linear weights
            spatial_io = io_layout == "spatial"
            self.enter.weight.copy_(to_spectral if spatial_io else from_spectral)
            self.leave.weight.copy_(from_spectral if spatial_io else to_spectral)

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        return self.enter(x)

    def from_spectral(self, x: torch.Tensor) -> torch.Tensor:
        return self.leave(x)
