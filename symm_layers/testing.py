"""Equivariance checks for users, tests and benchmarks.

``equivariance_error`` measures, ``assert_equivariant`` asserts; both act on any callable from ``(..., D_in)``
features to ``(..., D_out)`` features and on the group elements of :func:`group_elements`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from escnn.group import Group, GroupElement, Representation

#: (atol, rtol) of equivariance checks per dtype: relative to the largest output entry.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-12, 1e-12),
}

MAX_EXHAUSTIVE_ORDER = 120


def group_elements(group: Group, *, num_samples: int = 8, seed: int = 0) -> list[GroupElement]:
    """Every element of a finite group up to order 120; else its generators plus seeded samples."""
    if not group.continuous and group.order() <= MAX_EXHAUSTIVE_ORDER:
        return list(group.elements)
    elements = []
    try:
        elements.extend(group.generators)
    except (ValueError, NotImplementedError):  # continuous groups expose no finite generators in escnn
        pass
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        elements.extend(group.sample() for _ in range(num_samples))
    finally:
        np.random.set_state(state)
    return elements


@dataclass(frozen=True)
class EquivarianceError:
    """Largest deviation of ``f(rho_in(g) x)`` from ``rho_out(g) f(x)`` over the checked elements."""

    max_abs: float
    max_rel: float
    worst_element: str


def equivariance_error(
    fn: Callable[[torch.Tensor], torch.Tensor],
    in_rep: Representation,
    out_rep: Representation,
    x: torch.Tensor | None = None,
    *,
    elements: Sequence[GroupElement] | None = None,
    batch_shape: tuple[int, ...] = (4,),
    dtype: torch.dtype | None = None,
    device=None,
    seed: int = 0,
) -> EquivarianceError:
    """Measure how far ``fn`` is from equivariance on ``x`` (random if omitted) for each group element.

    ``max_rel`` divides by the largest absolute output entry, so it is scale free.
    """
    if x is None:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(*batch_shape, in_rep.size, generator=gen, dtype=dtype or torch.get_default_dtype())
        x = x.to(device)
    elements = group_elements(in_rep.group, seed=seed) if elements is None else elements
    with torch.no_grad():
        fx = fn(x)
        scale = max(fx.abs().max().item(), 1e-30)
        worst, worst_g = 0.0, None
        for g in elements:
            r_in = torch.as_tensor(np.asarray(in_rep(g)), dtype=x.dtype, device=x.device)
            r_out = torch.as_tensor(np.asarray(out_rep(g)), dtype=fx.dtype, device=fx.device)
            err = (fn(x @ r_in.mT) - fx @ r_out.mT).abs().max().item()
            if err >= worst:
                worst, worst_g = err, g
    return EquivarianceError(max_abs=worst, max_rel=worst / scale, worst_element=str(worst_g))


def assert_equivariant(
    fn: Callable[[torch.Tensor], torch.Tensor],
    in_rep: Representation,
    out_rep: Representation,
    x: torch.Tensor | None = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    **kwargs,
) -> EquivarianceError:
    """Raise ``AssertionError`` unless ``max_abs <= atol + rtol * max|f(x)|`` (tolerances from the dtype)."""
    err = equivariance_error(fn, in_rep, out_rep, x, **kwargs)
    dtype = x.dtype if x is not None else kwargs.get("dtype") or torch.get_default_dtype()
    default_atol, default_rtol = TOLERANCES[dtype]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    scale = err.max_abs / err.max_rel if err.max_rel > 0 else 0.0
    if err.max_abs > atol + rtol * scale:
        raise AssertionError(
            f"not equivariant: max abs error {err.max_abs:.3e} (relative {err.max_rel:.3e}) at element "
            f"{err.worst_element}, tolerance atol={atol:.1e} rtol={rtol:.1e} for {dtype}"
        )
    return err
