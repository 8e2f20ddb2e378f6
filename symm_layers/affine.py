"""eAffine: per-irrep-copy scales and an invariant bias."""

from __future__ import annotations

import numpy as np
import torch
from escnn.group import Representation
from torch import nn

from ._types import AffineInitScheme
from .cache import DerivedTensorCache
from .linear import InvariantSubspace
from .module import EquivariantModule
from .permutation import permutation_action
from .reps import check_representations, decompose


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
        check_representations(type(self).__name__, in_rep=in_rep)
        self.in_rep = self.out_rep = in_rep
        self.learnable = learnable
        decomposition = decompose(in_rep)
        self.subspace = InvariantSubspace(in_rep, device=device, dtype=dtype)
        # A plain reference, not a second registration: torch.func.functional_call restores a submodule
        # registered under two names wrongly (a vmapped buffer would stay behind).
        self.__dict__["change"] = self.subspace.change
        spectral_of_local = np.argsort(self.change.local_position)
        self.register_constant("copy_of_local", decomposition.copy_index[spectral_of_local], device=device)
        self.register_constant("copy_of_spectral", decomposition.copy_index, device=device)
        self.num_scale_dof = decomposition.num_copies
        self._spectral_cache = DerivedTensorCache()
        self._tile_cache = DerivedTensorCache()
        self._largest_block = max((b.rows.shape[1] for b in decomposition.blocks if not b.is_identity), default=0)
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
            out = self._conjugate(input)
            return out + self.subspace.expand(self.bias_dof) if self.has_bias else out
        else:
            self._check_dof(scale_dof, self.num_scale_dof, "scale_dof")
            if self.has_bias:
                self._check_dof(bias_dof, self.num_bias_dof, "bias_dof")
        scaled = self.change.to_spectral(input) * scale_dof.index_select(-1, self.copy_of_local)
        out = self.change.from_spectral(scaled)
        return out + self.subspace.expand(bias_dof) if self.has_bias else out

    def _conjugate(self, x: torch.Tensor) -> torch.Tensor:
        """``Q diag(scales) Q^T x``: per-copy matrices (cached while no graph is recorded), or two structured GEMMs.

        Building the matrices costs ``s^3`` per copy against ``2 s^2`` per row for the two change-of-basis GEMMs,
        so a recording call with fewer rows than the largest block size ``s`` takes the GEMMs.
        """
        if not (torch.is_grad_enabled() and self.scale_dof.requires_grad):
            return self.change.apply_tiles(x, self._tile_cache.get((self.scale_dof,), self._tiles))
        if x.numel() >= self._largest_block * self.in_rep.size:
            return self.change.apply_tiles(x, self._tiles())
        return self.change.conjugate_scale(x, self.scale_dof.index_select(0, self.copy_of_local))

    def _tiles(self) -> list[torch.Tensor]:
        return self.change.conjugation_tiles(self.scale_dof.index_select(0, self.copy_of_local))

    def spectral_call(self, normalise, x: torch.Tensor) -> torch.Tensor:
        """``normalise(x, weight)`` (a torch norm with an elementwise weight) then the bias, in spectral coordinates.

        With a bias: ``addcmul(bias, normalise(x, None), weight)``, one pass for scale and shift (torch's norms
        apply their weight in a pass of their own, so this is as fast as the norm with a weight alone).
        """
        weight, bias = self.spectral_weight_and_bias()
        if bias is None:
            return normalise(x, weight)
        return torch.addcmul(bias, normalise(x, None), weight)

    def spectral_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The map in spectral coordinates (:mod:`symm_layers.layout`): elementwise weight ``(D,)`` and bias.

        A scale per irrep copy is diagonal there, and the invariant bias lives on the trivial coordinates.
        """
        scale, bias = self.scale_dof, self.bias_dof
        if torch.is_grad_enabled() and (scale.requires_grad or (bias is not None and bias.requires_grad)):
            return self._spectral_parts()
        sources = (scale,) if bias is None else (scale, bias)
        return self._spectral_cache.get(sources, self._spectral_parts)  # eval: rebuilt only when a DoF changes

    def _spectral_parts(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight = self.scale_dof.index_select(0, self.copy_of_spectral)
        if not self.has_bias:
            return weight, None
        bias = self.bias_dof.new_zeros(self.in_rep.size).index_copy(0, self.subspace.trivial_columns, self.bias_dof)
        return weight, bias

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module):
        """With ``learnable=False``, one fixed random draw of ``scale_dof``/``bias_dof`` (shared by all rows)."""
        if self.learnable:
            return super()._equivariance_probe(batch_size, seq_len, call)
        gen = torch.Generator().manual_seed(0)
        ref = self.copy_of_local
        dtype = next((b.dtype for b in self.buffers() if b.is_floating_point()), torch.get_default_dtype())
        scale = torch.rand(self.num_scale_dof, generator=gen, dtype=dtype).to(ref.device) * 2 - 1
        bias = torch.rand(self.num_bias_dof, generator=gen, dtype=dtype).to(ref.device) * 2 - 1
        return (lambda x: call(x, scale, bias if self.has_bias else None)), self.in_rep, self.out_rep, (batch_size,)

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
        check_representations(type(self).__name__, in_rep=in_rep)
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
