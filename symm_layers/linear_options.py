"""eLinear's e3nn-style options that change its call: a channel axis before the representation axis.

``eLinear(..., channel_in=C_in, channel_out=C_out)`` maps ``(..., C_in, D_in) -> (..., C_out, D_out)`` with DoFs
``(C_out, C_in, dim)``: each pair of channels gets its own map in Hom_G(in, out), i.e. the layer is a map in
Hom_G(C_in x rho_in, C_out x rho_out) (e3nn's ``channel_out``). ``weights_per_channel=True`` keeps the ``C``
channels apart, one map each (DoFs ``(C, dim)``). The bias is invariant per output channel. These paths are kept
out of :meth:`eLinear.forward`'s default branch: it hands them to :func:`channel_forward`.
"""

from __future__ import annotations

import math

import torch
from escnn.group import Representation
from torch import nn

from .invariant import InvariantSubspace
from .module import EquivariantModule

PATH_NORMALIZATIONS: tuple[str, ...] = ("element", "path")


def check_path_normalization(value) -> None:
    """``None``, ``"element"``, ``"path"`` or a float in ``[0, 1]`` (e3nn's exponent between the two)."""
    if value is None or value in PATH_NORMALIZATIONS:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return
    raise ValueError(
        f"unknown path_normalization {value!r}; choose None (torch-style init per isotypic block), 'element', "
        "'path' or a float in [0, 1] (e3nn's normalisation of each path's contribution to the forward)"
    )


def check_channels(channel_in, channel_out, weights_per_channel, num_indexed_weights, external_weights) -> None:
    """Validate the channel options together, naming the fix."""
    if channel_in is None:
        if channel_out is not None or weights_per_channel:
            raise ValueError(
                "channel_out / weights_per_channel need channel_in= (the size of the input's channel axis, "
                "x of shape (..., channel_in, in_rep.size)): parameters are created when the layer is built"
            )
        return
    if channel_out is not None and weights_per_channel:
        raise ValueError("choose channel_out (mix channels) or weights_per_channel=True (one map per channel)")
    if not weights_per_channel and channel_out is None:
        raise ValueError("channel_in needs channel_out= (mixing channels) or weights_per_channel=True")
    for name, count in (("channel_in", channel_in), ("channel_out", channel_out)):
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"{name} must be a positive int, got {count!r}")
    if num_indexed_weights is not None or external_weights:
        raise ValueError("channel options cannot be combined with num_indexed_weights or external_weights")


class ChannelInvariantBias(EquivariantModule):
    r"""One invariant bias per channel: ``y[..., c, :] = x[..., c, :] + b_c`` with :math:`\rho(g) b_c = b_c`.

    Args:
        in_rep: representation of each channel's features.
        channels: number of channels.

    Shape:
        ``(..., channels, in_rep.size)`` -> same.
    """

    def __init__(self, in_rep: Representation, channels: int, *, device=None, dtype=None) -> None:
        super().__init__()

        self.in_rep = self.out_rep = in_rep
        self.channels = channels
        self.subspace = InvariantSubspace(in_rep, device=device, dtype=dtype)
        self.has_bias = self.subspace.dim > 0
        shape = (channels, self.subspace.dim)
        self.bias_dof = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype)) if self.has_bias else None

    @torch.no_grad()
    def reset_parameters(self, scheme: str = "uniform") -> None:
        if self.has_bias:
            bound = 1.0 / math.sqrt(self.in_rep.size) if scheme == "uniform" else 0.0
            self.bias_dof.uniform_(-bound, bound)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.subspace.expand(self.bias_dof) if self.has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_features(x)
        return x + self.bias if self.has_bias else x

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module):
        return call, self.in_rep, self.out_rep, (batch_size, self.channels)

    def extra_repr(self) -> str:
        return f"in_rep={self.in_rep.name}, channels={self.channels}, bias_dofs={self.subspace.dim}"


def channel_forward(layer, x: torch.Tensor, weight_index=None, weight_dof=None) -> torch.Tensor:
    """``eLinear.forward`` with a channel axis: ``(..., C_in, D_in) -> (..., C_out, D_out)``."""
    if weight_index is not None or weight_dof is not None:
        raise ValueError("weight_index/weight_dof are not available with channel options")
    layer.check_features(x)
    if x.dim() < 2 or x.shape[-2] != layer.channel_in:
        raise ValueError(
            f"eLinear(channel_in={layer.channel_in}): input of shape {tuple(x.shape)} needs the channel axis "
            f"before the features, (..., {layer.channel_in}, {layer.in_features})"
        )
    weight = layer.basis(layer._effective(layer.weight_dof))  # (C_out, C_in, D_out, D_in) or (C, D_out, D_in)
    if layer.weights_per_channel:
        y = torch.einsum("...ci,coi->...co", x, weight)
    else:
        y = torch.einsum("...ci,acoi->...ao", x, weight)
    bias = layer.bias
    return y if bias is None else y + bias
