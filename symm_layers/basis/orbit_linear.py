"""One autograd node for ``x @ W(dof)^T + b`` under the orbit-gather strategy when few rows meet a large weight.

The composite path forms ``W = c[gather]`` (``D_out * D_in`` entries) and differentiates through ``F.linear``; the
adjoint of the gather is an ``index_add``, 2.5-3x slower than a gather on the CPU. For a single type of orbit pair
whose pair orbits are regular (for each output position ``g``, ``h -> orbit of (g, h)`` is a bijection, as for
regular representations), ``W`` need not be formed at all. With output coordinate ``(i, g)`` (orbit ``i``,
position ``g``) and input orbit ``j``, ``W[(i, g), h] = C[i, (j, o)]`` for exactly one ``h`` per ``(g, j, o)``, so

    y[:, (i, g)] = (X_g C^T)[:, i],    X_g[r, (j, o)] = x[r, h(g, j, o)]

one gather of ``rows * s_out * D_in`` entries and one GEMM. The weight gradient is ``(m_out, D_in)`` instead of
``(D_out, D_in)``, and the input gradient is a gather followed by a sum over contiguous runs (each input coordinate
appears ``s_out`` times in ``X``), never an ``index_add``. An invariant bias is constant on every output orbit, so
it is added per orbit inside the GEMM.

This reads ``s_out * rows / D_out`` of what the composite path reads, at the price of a Python autograd node
(about 15 us per call on the CPU), so :func:`lifted_applies` takes it only for ``rows <= m_out / 2`` and weights of
at least 128 x 128 (measured on the CPU: C8, D=128, 8 rows: 2.38x nn.Linear against 2.57x composite; D=256:
1.97x against 2.86x; at D=64 the node's overhead outweighs the saving). It runs only for eager calls that record
autograd; traced or transformed calls and calls that record nothing use the composite path. When the backward
itself records (``create_graph=True``) the lifted input and the coefficients are recomputed from the saved inputs
with differentiable operations, so higher derivatives are exact. ``tests/test_orbit_linear.py`` compares the node
with the composite path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd import forward_ad

from ..cache import cacheable

#: Smallest ``D_out * D_in`` for which the lifted node pays for its per-call overhead (measured on the CPU).
MIN_LIFTED_ENTRIES = 128 * 128


@dataclass(frozen=True)
class LiftPlan:
    """Index maps of :class:`_LiftedLinear` (numpy, int64), computed once per Hom space."""

    lift: np.ndarray  # (s_out * D_in,) input coordinate feeding X_g[:, (j, o)], g-major
    lift_order: np.ndarray  # lift positions sorted by input coordinate (each appears s_out times)
    out_order: np.ndarray  # (D_out,) position of output coordinate (i, g) in the (g, i)-ordered GEMM output
    out_inverse: np.ndarray
    heads: np.ndarray  # (m_out,) first coordinate of each output orbit (the bias is constant on orbits)
    dof_order: np.ndarray  # inverse of the pair type's DoF permutation


def lift_plan(plan, in_size: int) -> LiftPlan | None:
    """The lifted node's index maps for an orbit plan, or ``None`` when its structure does not allow the node."""
    if plan.needs_zero or len(plan.pair_types) != 1:
        return None
    (pair,) = plan.pair_types
    s_out, s_in = pair.pair_orbit.shape
    if pair.values.shape[0] != s_in or (np.sort(pair.pair_orbit, axis=1) != np.arange(s_in)).any():
        return None  # some output position meets a pair orbit twice (or never): no bijection h <-> o
    heads, i_of = np.unique(pair.rows[:, 0], return_inverse=True)
    tails, j_of = np.unique(pair.cols[:, 0], return_inverse=True)
    m_out, m_in = heads.size, tails.size
    if i_of.size != m_out * m_in or m_in * s_in != in_size:
        return None
    grid = np.stack([i_of.reshape(-1), j_of.reshape(-1)])
    if (grid != np.stack(np.meshgrid(np.arange(m_out), np.arange(m_in), indexing="ij")).reshape(2, -1)).any():
        return None  # the pairs are not ordered (output orbit, input orbit), output-major
    rows = pair.rows.reshape(m_out, m_in, s_out)
    cols = pair.cols.reshape(m_out, m_in, s_in)
    if (rows != rows[:, :1]).any() or (cols != cols[:1]).any():
        return None
    rows, cols = rows[:, 0], cols[0]  # coordinates of output orbit i by position g; of input orbit j by position h
    h_of = np.argsort(pair.pair_orbit, axis=1)  # h_of[g, o]: the position h with (g, h) in pair orbit o
    lift = cols[:, h_of].transpose(1, 0, 2).reshape(-1)  # (g, j, o) -> input coordinate
    out_order = np.empty(m_out * s_out, dtype=np.int64)
    out_order[rows.reshape(-1)] = (np.arange(s_out)[None, :] * m_out + np.arange(m_out)[:, None]).reshape(-1)
    return LiftPlan(
        lift=lift,
        lift_order=np.argsort(lift, kind="stable"),
        out_order=out_order,
        out_inverse=np.argsort(out_order, kind="stable"),
        heads=rows[:, 0].copy(),
        dof_order=np.argsort(pair.perm.reshape(-1), kind="stable"),
    )


def lifted_applies(strategy, dof: torch.Tensor, x: torch.Tensor, bias_dof: torch.Tensor | None) -> bool:
    """True when ``strategy`` has a lift plan, the call is worth it, and it is an eager call recording autograd."""
    if strategy.lift is None or dof.dim() != 1 or x.dim() == 0 or x.shape[-1] != strategy.in_size:
        return False
    if 2 * (x.numel() // strategy.in_size) > strategy.lift.heads.size:
        return False
    if strategy.out_size * strategy.in_size < MIN_LIFTED_ENTRIES:
        return False
    if not torch.is_grad_enabled() or forward_ad._current_level >= 0:
        return False
    sources = (dof, x) if bias_dof is None else (dof, x, bias_dof)
    return any(t.requires_grad for t in sources) and cacheable(sources)


def _coefficients(strategy, dof: torch.Tensor) -> torch.Tensor:
    """Orbit coefficients as ``C`` of shape ``(m_out, D_in)``, columns ``(input orbit j, pair orbit o)``."""
    buffers = strategy._buffers  # read from the dict: this runs on every training call
    pairs, _, n_dof = strategy._types[0]
    theta = dof.index_select(0, buffers["perm_0"]).view(pairs, n_dof)
    return torch.mm(theta, buffers["orbit_values_t_0"]).view(strategy.lift.heads.size, -1)


class _LiftedLinear(torch.autograd.Function):
    """``(dof, x, bias_dof) -> x W(dof)^T + Q_fix bias_dof`` for ``x`` of shape ``(rows, D_in)`` (see module doc)."""

    @staticmethod
    def forward(ctx, dof, x, bias_dof, fix, strategy):
        buffers = strategy._buffers
        coefficients = _coefficients(strategy, dof)
        lift_x = x.index_select(1, buffers["lift_index"]).view(-1, x.shape[1])  # (rows * s_out, D_in)
        if bias_dof is None:
            out = torch.mm(lift_x, coefficients.t())
        else:
            fix = fix.index_select(0, buffers["lift_heads"])  # the rows of Q_fix at the orbit heads
            out = torch.addmm(torch.mv(fix, bias_dof), lift_x, coefficients.t())
        ctx.save_for_backward(dof, x, bias_dof, fix, lift_x, coefficients)
        ctx.strategy = strategy
        return out.view(x.shape[0], -1).index_select(1, buffers["lift_out_order"])

    @staticmethod
    def backward(ctx, grad):
        strategy = ctx.strategy
        buffers = strategy._buffers
        dof, x, bias_dof, fix, lift_x, coefficients = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: rebuild what was saved from the inputs, differentiably
            coefficients = _coefficients(strategy, dof)
            lift_x = x.index_select(1, buffers["lift_index"]).view(-1, x.shape[1])
        need_dof, need_x, need_bias = ctx.needs_input_grad[:3]
        g = grad.index_select(1, buffers["lift_out_inverse"]).view(-1, coefficients.shape[0])  # (rows*s_out, m_out)
        grad_dof = grad_x = grad_bias = None
        if need_dof:
            pairs, n_orbits, _ = strategy._types[0]
            grad_c = torch.mm(g.t(), lift_x).view(pairs, n_orbits)
            grad_theta = torch.mm(grad_c, buffers["orbit_values_0"]).view(-1)
            grad_dof = grad_theta.index_select(0, buffers["lift_dof_order"])
        if need_x:
            grad_lift = torch.mm(g, coefficients).view(x.shape[0], -1)
            grad_x = grad_lift.index_select(1, buffers["lift_input_order"]).view(*x.shape, -1).sum(-1)
        if need_bias:
            grad_bias = torch.mv(fix.t(), g.sum(0))
        return grad_dof, grad_x, grad_bias, None, None


def lifted_linear(strategy, dof: torch.Tensor, x: torch.Tensor, bias_dof, fix) -> torch.Tensor:
    """``x @ W(dof)^T (+ fix @ bias_dof)`` through :class:`_LiftedLinear` (callers check :func:`lifted_applies`)."""
    rows = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # no view node for the common 2-D input
    y = _LiftedLinear.apply(dof, rows, bias_dof, fix, strategy)
    return y if x.dim() == 2 else y.view(*x.shape[:-1], strategy.out_size)
