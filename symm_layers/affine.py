"""eAffine: per-irrep-copy scales and an invariant bias."""

from __future__ import annotations

import numpy as np
import torch
from escnn.group import Representation
from torch import nn

from ._types import AffineInitScheme
from .linear import InvariantSubspace
from .module import EquivariantModule
from .permutation import permutation_action
from .reps import decompose


class eAffine(EquivariantModule):
    r"""Scale every irrep copy by its own scalar and add an invariant bias.

    .. math::
        y = Q\, \operatorname{diag}(\alpha_{c(1)}, \dots, \alpha_{c(D)})\, Q^\top x + b, \qquad \rho(g) b = b

    A scalar multiple of the identity on each irrep copy commutes with that irrep, so the map is equivariant.

    Args:
        in_rep: representation of the features.
        bias: add an invariant bias when ``in_rep`` has trivial irreps.
        learnable: ``True`` registers ``scale_dof`` and ``bias_dof`` as parameters; ``False`` expects them in
            ``forward`` with leading dimensions broadcastable to the input's (FiLM-style conditioning).
        init_scheme: ``"identity"`` (scales 1, bias 0) or ``"random"`` (both ``U(-1, 1)``); ``None`` skips it.

    Shape:
        - input: ``(..., D)``; ``scale_dof``: ``(..., num_scale_dof)``; ``bias_dof``: ``(..., num_bias_dof)``
        - output: ``(..., D)``

    Note:
        ``scale_dof`` follows the order of ``in_rep.irreps`` (one scale per irrep copy). The map is applied in
        spectral coordinates with the structured change of basis (``O(D * s)`` per row, ``s`` its block size).
    """

    def __init__(
        self,
        in_rep: Representation,
        bias: bool = True,
        learnable: bool = True,
        init_scheme: AffineInitScheme | None = "identity",
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.in_rep = self.out_rep = in_rep
        self.learnable = learnable
        decomposition = decompose(in_rep)
        self.subspace = InvariantSubspace(in_rep, device=device, dtype=dtype)
        self.change = self.subspace.change
        spectral_of_local = np.argsort(self.change.local_position)
        self.register_constant("copy_of_local", decomposition.copy_index[spectral_of_local], device=device)
        self.num_scale_dof = decomposition.num_copies
        self.has_bias = bias and self.subspace.dim > 0
        self.num_bias_dof = self.subspace.dim if self.has_bias else 0
        if learnable:
            self.scale_dof = nn.Parameter(torch.empty(self.num_scale_dof, device=device, dtype=dtype))
            self.bias_dof = (
                nn.Parameter(torch.empty(self.num_bias_dof, device=device, dtype=dtype)) if self.has_bias else None
            )
            if init_scheme is not None:
                self.reset_parameters(init_scheme)

    @torch.no_grad()
    def reset_parameters(self, scheme: AffineInitScheme = "identity") -> None:
        if not self.learnable:
            return
        if scheme == "identity":
            self.scale_dof.fill_(1.0)
            if self.bias_dof is not None:
                self.bias_dof.zero_()
        elif scheme == "random":
            self.scale_dof.uniform_(-1.0, 1.0)
            if self.bias_dof is not None:
                self.bias_dof.uniform_(-1.0, 1.0)
        else:
            raise ValueError(f"unknown init_scheme {scheme!r}; choose 'identity' or 'random'")

    def forward(
        self, input: torch.Tensor, scale_dof: torch.Tensor | None = None, bias_dof: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_features(input)
        if self.learnable:
            if scale_dof is not None or bias_dof is not None:
                raise ValueError("eAffine(learnable=True) owns its DoFs; build it with learnable=False to pass them")
            out = self.change.conjugate_scale(input, self.scale_dof.index_select(0, self.copy_of_local))
            return out + self.subspace.expand(self.bias_dof) if self.has_bias else out
        else:
            self._check_dof(scale_dof, self.num_scale_dof, "scale_dof")
            if self.has_bias:
                self._check_dof(bias_dof, self.num_bias_dof, "bias_dof")
        scaled = self.change.to_spectral(input) * scale_dof.index_select(-1, self.copy_of_local)
        out = self.change.from_spectral(scaled)
        return out + self.subspace.expand(bias_dof) if self.has_bias else out

    def _check_dof(self, dof: torch.Tensor | None, count: int, what: str) -> None:
        if dof is None or dof.shape[-1] != count:
            got = None if dof is None else tuple(dof.shape)
            raise ValueError(
                f"eAffine(learnable=False) needs {what} of shape (..., {count}), got {got}; "
                f"pass one {what[:-4]} per {'irrep copy' if what == 'scale_dof' else 'trivial irrep copy'}"
            )

    def export(self) -> nn.Linear:
        if not self.learnable:
            raise ValueError("eAffine(learnable=False) takes its DoFs at call time; there is no fixed map to export")
        size = self.in_rep.size
        lin = nn.Linear(size, size, bias=self.has_bias, device=self.scale_dof.device, dtype=self.scale_dof.dtype)
        with torch.no_grad():
            eye = torch.eye(size, device=self.scale_dof.device, dtype=self.scale_dof.dtype)
            bias = self.subspace.expand(self.bias_dof) if self.has_bias else torch.zeros_like(eye[0])
            lin.weight.copy_((self.forward(eye) - bias).mT)
            if self.has_bias:
                lin.bias.copy_(bias)
        return lin

    def extra_repr(self) -> str:
        return (
            f"in_rep={self.in_rep.name}[{self.in_rep.size}], learnable={self.learnable}, "
            f"scale_dofs={self.num_scale_dof}, bias_dofs={self.num_bias_dof}"
        )


def coordinate_orbits(rep: Representation) -> np.ndarray:
    """Orbit label of every coordinate under a permutation representation (labels 0..n_orbits-1).

    Raises:
        ValueError: if ``rep`` does not act by permutation matrices.
    """
    action = permutation_action(rep)
    if action is None:
        raise ValueError(
            f"a diagonal equivariant affine needs a permutation representation, and '{rep.name}' is not one; "
            "use affine='isotypic' (per-irrep-copy scales), which works for every orthogonal representation"
        )
    return action.orbit_of


class eDiagonalAffine(EquivariantModule):
    r"""Elementwise scale and bias that are constant on the orbits of G on coordinates (permutation reps only).

    .. math::
        y_i = w_{o(i)}\, x_i + b_{o(i)}, \qquad o(i) = \text{orbit of coordinate } i

    A diagonal matrix commutes with every permutation ``rho(g)`` exactly when it is constant on orbits, and a vector
    is invariant exactly when it is, so this is the most general *diagonal* equivariant affine map. For the
    trivial group it is torch's elementwise affine; the norms use it to run as one fused kernel.

    Args:
        in_rep: a permutation representation (regular, quotient, trivial).
        bias: add the orbit-constant bias.
        init_scheme: ``"identity"`` or ``"random"``; ``None`` skips it.
    """

    def __init__(self, in_rep: Representation, bias: bool = True, init_scheme: AffineInitScheme | None = "identity",
                 *, device=None, dtype=None) -> None:  # fmt: skip
        super().__init__()
        self.in_rep = self.out_rep = in_rep
        orbits = coordinate_orbits(in_rep)
        self.num_orbits = int(orbits.max()) + 1 if orbits.size else 0
        self.register_constant("orbit_of", orbits, device=device)
        self.scale_dof = nn.Parameter(torch.empty(self.num_orbits, device=device, dtype=dtype))
        self.bias_dof = nn.Parameter(torch.empty(self.num_orbits, device=device, dtype=dtype)) if bias else None
        if init_scheme is not None:
            self.reset_parameters(init_scheme)

    @torch.no_grad()
    def reset_parameters(self, scheme: AffineInitScheme = "identity") -> None:
        if scheme not in ("identity", "random"):
            raise ValueError(f"unknown init_scheme {scheme!r}; choose 'identity' or 'random'")
        for p, value in ((self.scale_dof, 1.0), (self.bias_dof, 0.0)):
            if p is not None:
                p.fill_(value) if scheme == "identity" else p.uniform_(-1.0, 1.0)

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-coordinate scale and bias vectors ``(D,)``."""
        bias = None if self.bias_dof is None else self.bias_dof.index_select(0, self.orbit_of)
        return self.scale_dof.index_select(0, self.orbit_of), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_features(x)
        weight, bias = self.weight_and_bias()
        return x * weight if bias is None else torch.addcmul(bias, x, weight)

    def export(self) -> nn.Linear:
        weight, bias = self.weight_and_bias()
        lin = nn.Linear(self.in_rep.size, self.in_rep.size, bias=bias is not None, device=weight.device,
                        dtype=weight.dtype)  # fmt: skip
        with torch.no_grad():
            lin.weight.copy_(torch.diag(weight))
            if bias is not None:
                lin.bias.copy_(bias)
        return lin

    def extra_repr(self) -> str:
        has_bias = self.bias_dof is not None
        return f"in_rep={self.in_rep.name}[{self.in_rep.size}], orbits={self.num_orbits}, bias={has_bias}"
