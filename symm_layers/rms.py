"""RMS normalisation, optionally after removing the component along one unit direction, with a lean backward.

``rms_norm(x, eps, direction)`` computes

    x~ = x - <x, u> u   (when a unit ``direction`` u is given),   y = x~ / sqrt(mean(x~^2) + eps)

On the CPU, ``F.rms_norm``'s backward is a chain of generic kernels (about 2.4x ``F.layer_norm``'s fused backward
at 256 x 256), so a training call that records autograd runs :class:`_CentredRMSNorm`, whose backward is
``gx~ = r (g - y <g, y> / D)`` then the same projection, five passes over the rows. Calls that record nothing use
``F.rms_norm`` (its fused forward), and traced or transformed calls (``torch.compile``, ``torch.export``,
``torch.func``) use the composite :func:`reference`, so no custom autograd node meets a tracer. Both paths compute
the same function (``tests/test_rms.py`` compares values and first and second derivatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cache import cacheable


def _centre(rows: torch.Tensor, direction: torch.Tensor | None) -> torch.Tensor:
    """``rows - <rows, u> u`` for ``rows`` of shape ``(n, D)`` (one GEMV and one rank-1 update)."""
    if direction is None:
        return rows
    return torch.addr(rows, torch.mv(rows, direction), direction, alpha=-1)


def reference(x: torch.Tensor, eps: float, direction: torch.Tensor | None = None) -> torch.Tensor:
    """The composite form: centring by broadcasting, then ``F.rms_norm`` (any leading shape, any transform)."""
    if direction is not None:
        x = x - (x @ direction).unsqueeze(-1) * direction
    return F.rms_norm(x, (x.shape[-1],), None, eps)


class _CentredRMSNorm(torch.autograd.Function):
    """Eager autograd node of :func:`rms_norm`: saves the input and the per-row ``1/rms``, nothing the caller holds.

    Not saving the output keeps in-place edits of it (``out += residual``) legal, as for ``F.rms_norm``. When the
    backward itself records a graph (``create_graph=True``) the gradient is rebuilt from differentiable operations
    on the saved input, so higher derivatives are exact.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, direction: torch.Tensor | None, eps: float) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        centred = _centre(rows, direction)
        inv_rms = torch.rsqrt(torch.linalg.vecdot(centred, centred).div_(rows.shape[-1]).add_(eps)).unsqueeze(-1)
        ctx.save_for_backward(x, inv_rms, direction)
        ctx.eps = eps
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # the output is no view (in-place edits allowed)
        torch.mul(centred, inv_rms, out=out.view(rows.shape))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, inv_rms, direction = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable recomputation from the input
            return _grad_reference(x, grad, direction, ctx.eps), None, None
        size = x.shape[-1]
        y = _centre(x.reshape(-1, size), direction) * inv_rms
        g = grad.reshape(-1, size)
        along = torch.linalg.vecdot(g, y).div_(-size).unsqueeze(-1)
        grad_centred = torch.addcmul(g, y, along).mul_(inv_rms)
        return _centre(grad_centred, direction).view(x.shape), None, None


def _grad_reference(x, grad, direction, eps) -> torch.Tensor:
    """The input gradient of :func:`reference` built from differentiable operations (for higher derivatives)."""
    centred = x if direction is None else x - (x @ direction).unsqueeze(-1) * direction
    inv_rms = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    y = centred * inv_rms
    grad_centred = inv_rms * (grad - y * (grad * y).mean(-1, keepdim=True))
    if direction is None:
        return grad_centred
    return grad_centred - (grad_centred @ direction).unsqueeze(-1) * direction


def rms_norm(x: torch.Tensor, eps: float, direction: torch.Tensor | None = None) -> torch.Tensor:
    """``x~ / sqrt(mean(x~^2) + eps)`` over the last dimension, ``x~`` = ``x`` without its component along
    ``direction`` (a unit vector; ``None``: no centring). See the module docstring for the three execution paths.
    """
    records = torch.is_grad_enabled() and x.requires_grad
    sources = (x,) if direction is None else (x, direction)
    if records and cacheable(sources):
        return _CentredRMSNorm.apply(x, direction, eps)
    if not records and direction is not None and cacheable(sources) and x.is_contiguous():
        rows = _centre(x.reshape(-1, x.shape[-1]), direction).view(x.shape)
        return F.rms_norm(rows, (x.shape[-1],), None, eps)
    return reference(x, eps, direction)
