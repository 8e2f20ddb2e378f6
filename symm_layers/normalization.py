"""Equivariant normalisation: eRMSNorm, eLayerNorm, eBatchNorm, and the ``norm_module`` registry.

All three divide by invariant quantities (norms under an orthogonal representation), and the only things they
subtract are invariant vectors, so they commute with the group action. Affine parts are :class:`eAffine`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from escnn.group import Representation
from torch import nn

from ._types import AffineInitScheme, Layout
from .affine import eAffine, eDiagonalAffine
from .layout import check_layout
from .linear import InvariantSubspace
from .module import EquivariantModule
from .reps import check_representations, decompose
from .rms import rms_norm

NormModule = str  # "rmsnorm" | "layernorm" | "batchnorm"


AFFINE_SCHEMES = ("isotypic", "diagonal")


def _affine_or_none(in_rep, equiv_affine, bias, init_scheme, affine, device, dtype, layout) -> nn.Module | None:
    """The affine strategy: ``"isotypic"`` (:class:`eAffine`) or ``"diagonal"`` (:class:`eDiagonalAffine`)."""
    if affine not in AFFINE_SCHEMES:
        raise ValueError(f"unknown affine {affine!r}; choose one of {', '.join(AFFINE_SCHEMES)}")
    if check_layout(layout) == "spectral" and affine == "diagonal":
        raise ValueError(
            "affine='diagonal' is constant on coordinate orbits of the spatial basis and is not elementwise in the "
            "spectral layout; use affine='isotypic' (one scale per irrep copy, elementwise there) with "
            "layout='spectral', or layout='spatial' with affine='diagonal'"
        )
    if not equiv_affine:
        return None
    cls = eAffine if affine == "isotypic" else eDiagonalAffine
    return cls(in_rep, bias=bias, init_scheme=init_scheme, device=device, dtype=dtype)


def _export_tail(affine: eAffine | None, layout: str = "spatial") -> list[nn.Module]:
    if affine is None:
        return []
    if layout == "spatial":
        return [affine.export()]
    weight, bias = affine.spectral_weight_and_bias()
    lin = nn.Linear(weight.numel(), weight.numel(), bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.diag(weight))
        if bias is not None:
            lin.bias.copy_(bias)
    return [lin]


class eRMSNorm(EquivariantModule):
    r"""Divide by the root mean square of the features, then an optional :class:`eAffine`.

    .. math::
        y = \operatorname{eAffine}\Big(x \big/ \sqrt{\tfrac{1}{D}\lVert x\rVert^2 + \varepsilon}\Big)

    The norm of an orthogonal representation is invariant, so the division commutes with :math:`\rho(g)`.

    Args:
        in_rep: representation of the features.
        eps: added to the mean square.
        equiv_affine: follow with a learnable :class:`eAffine` (per-irrep-copy scale, invariant bias).
        init_scheme: of the affine part (``"identity"`` or ``"random"``); ``None`` skips it.
        affine: ``"isotypic"`` (:class:`eAffine`: one scale per irrep copy, any orthogonal representation) or
            ``"diagonal"`` (:class:`eDiagonalAffine`: scale and bias constant on coordinate orbits, permutation
            representations only; fused into torch's norm kernel, like ``nn.RMSNorm``'s elementwise weight).
        layout: ``"spatial"`` (features in ``in_rep``'s basis) or ``"spectral"`` (features ``Q^T x``, see
            :mod:`symm_layers.layout`): there the per-irrep-copy affine is an elementwise weight fused into
            ``F.rms_norm`` plus a bias on the trivial coordinates; needs ``affine="isotypic"``.

    Shape:
        ``(..., D)`` -> same.
    """

    def __init__(
        self,
        in_rep: Representation,
        eps: float = 1e-6,
        equiv_affine: bool = True,
        device=None,
        dtype=None,
        init_scheme: AffineInitScheme | None = "identity",
        *,
        affine: str = "isotypic",
        layout: Layout = "spatial",
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep)
        self.in_rep = self.out_rep = in_rep
        self.eps = eps
        self.affine = _affine_or_none(in_rep, equiv_affine, True, init_scheme, affine, device, dtype, layout)
        self.layout = layout
        self.fused_affine = isinstance(self.affine, eDiagonalAffine)
        self.spectral_affine = layout == "spectral" and self.affine is not None

    def reset_parameters(self, scheme: AffineInitScheme = "identity") -> None:
        if self.affine is not None:
            self.affine.reset_parameters(scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_features(x)
        if self.spectral_affine:
            return self.affine.spectral_call(self._rms_norm, x)
        if self.fused_affine:
            weight, bias = self.affine.weight_and_bias()
            if bias is None:
                return F.rms_norm(x, (self.in_rep.size,), weight, self.eps)
            return torch.addcmul(bias, rms_norm(x, self.eps), weight)
        out = rms_norm(x, self.eps)
        return out if self.affine is None else self.affine(out)

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        if weight is None and x.requires_grad:
            return rms_norm(x, self.eps)  # the eager node with the lean backward
        return F.rms_norm(x, (self.in_rep.size,), weight, self.eps)

    def export(self) -> nn.Module:
        ref = next(self.buffers())
        norm = nn.RMSNorm(self.in_rep.size, eps=self.eps, elementwise_affine=False, device=ref.device)
        return nn.Sequential(norm, *_export_tail(self.affine, self.layout))

    def extra_repr(self) -> str:
        return f"in_rep={self.in_rep.name}[{self.in_rep.size}], eps={self.eps}, layout={self.layout}"


class eLayerNorm(EquivariantModule):
    r"""Centre along the invariant part of the all-ones direction, divide by the RMS, then :class:`eAffine`.

    .. math::
        c = P_{\mathrm{Fix}}\,\mathbf{1}, \quad \tilde x = x - \frac{\langle x, c\rangle}{\langle c, c\rangle} c, \quad
        y = \operatorname{eAffine}\Big(\tilde x \big/ \sqrt{\tfrac{1}{D}\lVert \tilde x\rVert^2 + \varepsilon}\Big)

    :math:`c` is invariant, so :math:`\langle \rho(g)x, c\rangle = \langle x, c\rangle` and the centring commutes with
    the action. For permutation representations (regular, quotient, all-trivial) :math:`c = \mathbf 1` and this is
    exactly :func:`torch.nn.functional.layer_norm`'s mean subtraction; for an all-trivial representation the layer
    *is* ``nn.LayerNorm``. Without trivial irreps :math:`c = 0`: nothing is subtracted and the layer is an RMS norm.
    The variance is computed from the centred vector (two-pass), as torch does.

    Args:
        in_rep: representation of the features.
        eps: added to the variance.
        equiv_affine: follow with a learnable :class:`eAffine`.
        bias: give the affine part an invariant bias.
        init_scheme: of the affine part.
        affine: ``"isotypic"`` or ``"diagonal"``, as in :class:`eRMSNorm`; with ``"diagonal"`` (permutation
            representations, where the centring is the mean) the layer is one ``F.layer_norm`` call.
        layout: ``"spatial"`` or ``"spectral"``, as in :class:`eRMSNorm`; in the spectral layout the centring
            direction lives on the trivial coordinates and the affine is fused into ``F.rms_norm``.
    """

    def __init__(
        self,
        in_rep: Representation,
        eps: float = 1e-5,
        equiv_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
        init_scheme: AffineInitScheme | None = "identity",
        *,
        affine: str = "isotypic",
        layout: Layout = "spatial",
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep)
        self.in_rep = self.out_rep = in_rep
        self.eps = eps
        decomposition = decompose(in_rep)
        trivial = decomposition.trivial_type()
        if trivial is None:
            direction = np.zeros(in_rep.size)
        else:
            basis = decomposition.change_of_basis[:, trivial.columns[:, 0]]
            direction = basis @ (basis.T @ np.ones(in_rep.size))
        norm = np.linalg.norm(direction)
        self.centring = "none" if norm < 1e-8 else ("mean" if np.allclose(direction, 1.0, atol=1e-8) else "projection")
        unit = direction / norm if norm >= 1e-8 else direction
        self.affine = _affine_or_none(in_rep, equiv_affine, bias, init_scheme, affine, device, dtype, layout)
        self.layout = layout
        if layout == "spectral":  # the centring direction in spectral coordinates lives on the trivial ones
            unit = decomposition.change_of_basis.T @ unit
            self.centring = "none" if self.centring == "none" else "projection"
        self.register_constant("direction", unit, device=device, dtype=dtype)
        self.fused_affine = isinstance(self.affine, eDiagonalAffine) and self.centring == "mean"
        self.spectral_affine = layout == "spectral" and self.affine is not None

    def reset_parameters(self, scheme: AffineInitScheme = "identity") -> None:
        if self.affine is not None:
            self.affine.reset_parameters(scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_features(x)
        if self.fused_affine:
            return F.layer_norm(x, (self.in_rep.size,), *self.affine.weight_and_bias(), self.eps)
        if self.spectral_affine:
            return self.affine.spectral_call(self._normalise, x)
        out = self._normalise(x, None)
        return out if self.affine is None else self.affine(out)

    def _normalise(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Centre, divide by the RMS and multiply by the elementwise ``weight`` (or none)."""
        shape = (self.in_rep.size,)
        if self.centring == "mean":
            return F.layer_norm(x, shape, weight, None, self.eps)
        out = rms_norm(x, self.eps, self.direction if self.centring == "projection" else None)
        return out if weight is None else out * weight

    def export(self) -> nn.Module:
        size, device, dtype = self.in_rep.size, self.direction.device, self.direction.dtype
        if self.centring == "mean":
            head = [nn.LayerNorm(size, eps=self.eps, elementwise_affine=False, device=device, dtype=dtype)]
        else:
            head = [nn.RMSNorm(size, eps=self.eps, elementwise_affine=False, device=device, dtype=dtype)]
            if self.centring == "projection":
                centre = nn.Linear(size, size, bias=False, device=device, dtype=dtype)
                with torch.no_grad():
                    eye = torch.eye(size, device=device, dtype=dtype)
                    centre.weight.copy_(eye - torch.outer(self.direction, self.direction))
                head.insert(0, centre)
        return nn.Sequential(*head, *_export_tail(self.affine, self.layout))

    def extra_repr(self) -> str:
        return (
            f"in_rep={self.in_rep.name}[{self.in_rep.size}], eps={self.eps}, centring={self.centring}, "
            f"layout={self.layout}"
        )


class eBatchNorm(EquivariantModule):
    r"""Batch normalisation by irrep-copy norms (after e3nn's ``BatchNorm``).

    .. math::
        \bar x_t = x_t - \mathbb E[x_t] \;(t \text{ trivial}), \qquad
        y_c = w_c\, \bar x_c \big/ \sqrt{r(n_c)} + b_c, \qquad
        n_c = \operatorname{reduce}\big(\lVert \bar x_c\rVert^2 / d_c^{[\text{component}]}\big), \qquad
        r(n) = n + \varepsilon \;\text{or}\; (1 - \varepsilon) n + \varepsilon

    Statistics are taken in spectral coordinates per irrep copy ``c``: only trivial copies are centred (a mean of a
    non-trivial irrep is not invariant), and each copy is divided by a function of its invariant norm, so the layer
    is equivariant in any orthogonal basis, rotated ones included.

    Args:
        in_rep: representation of the features.
        eps: regularises the norm statistic before the inverse square root, as ``eps_mode`` says.
        momentum: of the running statistics (torch convention: ``new = (1 - m) old + m batch``).
        affine: learnable per-copy scale and trivial-copy bias.
        reduce: ``"mean"`` or ``"max"`` of the per-sample norms over the batch.
        instance: normalise each sample over its token axes instead (no running statistics).
        normalization: ``"component"`` (norm divided by the irrep dimension) or ``"norm"``.
        use_running_average: ``None`` follows the module's mode (batch statistics in ``train()``, running ones in
            ``eval()``); ``True``/``False`` force one.
        eps_mode: ``"add"`` (torch's ``n + eps``, default with ``eps=1e-5``) or ``"interpolate"`` (e3nn's
            ``(1 - eps) n + eps``, ``eps`` in ``[0, 1]``, e3nn's default ``eps=1e-4``), which pulls the statistic
            towards 1 rather than shifting it.

    Shape:
        ``(B, ..., D)``; statistics over every axis but the last (``instance``: over the middle axes only).
    """

    def __init__(
        self,
        in_rep: Representation,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        reduce: str = "mean",
        instance: bool = False,
        normalization: str = "component",
        use_running_average: bool | None = None,
        *,
        eps_mode: str = "add",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep)
        if eps_mode not in ("add", "interpolate"):
            raise ValueError(f"unknown eps_mode {eps_mode!r}; choose 'add' (n + eps) or 'interpolate' (e3nn)")
        if eps_mode == "interpolate" and not 0.0 <= eps <= 1.0:
            raise ValueError(f"eps_mode='interpolate' uses (1 - eps) * n + eps and needs eps in [0, 1], got {eps}")
        self.eps_mode = eps_mode
        if reduce not in ("mean", "max"):
            raise ValueError(f"unknown reduce {reduce!r}; choose 'mean' or 'max'")
        if normalization not in ("component", "norm"):
            raise ValueError(f"unknown normalization {normalization!r}; choose 'component' or 'norm'")
        self.in_rep = self.out_rep = in_rep
        self.eps, self.momentum, self.reduce = eps, momentum, reduce
        self.instance, self.normalization, self.use_running_average = instance, normalization, use_running_average
        decomposition = decompose(in_rep)
        self.subspace = InvariantSubspace(in_rep, device=device, dtype=dtype)
        # A plain reference, not a second registration: torch.func.functional_call restores a submodule
        # registered under two names wrongly (a vmapped buffer would stay behind).
        self.__dict__["change"] = self.subspace.change
        spectral_of_local = np.argsort(self.change.local_position)
        copy_of_local = decomposition.copy_index[spectral_of_local]
        self.num_copies = decomposition.num_copies
        copy_dims = np.bincount(copy_of_local, minlength=self.num_copies)
        self.register_constant("copy_of_local", copy_of_local, device=device)
        divisor = copy_dims if normalization == "component" else np.ones_like(copy_dims)
        self.register_constant("norm_divisor", divisor.astype(np.float64), device=device, dtype=dtype)
        self.num_trivial = self.subspace.dim
        factory = {"device": device, "dtype": dtype}
        if not instance:
            self.register_buffer("running_mean", torch.zeros(self.num_trivial, **factory))
            self.register_buffer("running_var", torch.ones(self.num_copies, **factory))
        self.weight = nn.Parameter(torch.ones(self.num_copies, **factory)) if affine else None
        self.bias = nn.Parameter(torch.zeros(self.num_trivial, **factory)) if affine and self.num_trivial else None

    def _uses_running_stats(self) -> bool:
        if self.instance:
            return False
        return (not self.training) if self.use_running_average is None else self.use_running_average

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_features(x)
        if x.dim() < 2 or (self.instance and x.dim() < 3):
            size = self.in_rep.size
            expected = (
                f"(B, T, ..., {size}) (instance=True normalises over the token axes T, ...)"
                if self.instance
                else f"(B, ..., {size}) (statistics over every axis but the last)"
            )
            raise ValueError(
                f"eBatchNorm: x of shape {tuple(x.shape)}, expected {expected}; add the missing batch axis with "
                "x.unsqueeze(0) (a batch of one has no batch statistics in train(): use eval() or a larger batch)"
            )
        z = self.change.to_spectral(x)
        axes = tuple(range(1, z.dim() - 1)) if self.instance else tuple(range(z.dim() - 1))
        positions = self.subspace.positions
        running = self._uses_running_stats()
        if self.num_trivial:
            mean = self.running_mean if running else z.index_select(-1, positions).mean(dim=axes, keepdim=True)
            z = z.index_add(-1, positions, -mean.expand(*z.shape[:-1], self.num_trivial))
        if running:
            norms = self.running_var
        else:
            squares = z.new_zeros(*z.shape[:-1], self.num_copies).index_add(-1, self.copy_of_local, z * z)
            squares = squares / self.norm_divisor
            reduce = torch.mean if self.reduce == "mean" else torch.amax
            norms = reduce(squares, dim=axes, keepdim=True)
            if self.training and not self.instance:
                self._update_running(mean if self.num_trivial else None, norms)
        if self.eps_mode == "add":
            scale = (norms + self.eps).rsqrt()
        else:
            scale = ((1.0 - self.eps) * norms + self.eps).rsqrt()
        if self.weight is not None:
            scale = scale * self.weight
        z = z * scale.index_select(-1, self.copy_of_local)
        if self.bias is not None:
            z = z.index_add(-1, positions, self.bias.expand(*z.shape[:-1], self.num_trivial))
        return self.change.from_spectral(z)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor | None, norms: torch.Tensor) -> None:
        m = self.momentum
        if mean is not None:
            self.running_mean.lerp_(mean.reshape(-1, self.num_trivial).mean(0), m)
        self.running_var.lerp_(norms.reshape(-1, self.num_copies).mean(0), m)

    def export(self) -> nn.Module:
        """The map with the running statistics (``eval()`` behaviour) as an ``nn.Linear``."""
        if self.instance:
            raise ValueError("eBatchNorm(instance=True) depends on each sample; there is no fixed map to export")
        size = self.in_rep.size
        ref = self.running_var
        lin = nn.Linear(size, size, device=ref.device, dtype=ref.dtype)
        mode = self.training
        self.eval()
        with torch.no_grad():
            zero = torch.zeros(1, size, device=ref.device, dtype=ref.dtype)
            shift = self.forward(zero)[0]
            lin.weight.copy_((self.forward(torch.eye(size, device=ref.device, dtype=ref.dtype)) - shift).mT)
            lin.bias.copy_(shift)
        self.train(mode)
        return lin

    def extra_repr(self) -> str:
        return (
            f"in_rep={self.in_rep.name}[{self.in_rep.size}], eps={self.eps}, momentum={self.momentum}, "
            f"reduce={self.reduce}, instance={self.instance}, normalization={self.normalization}, "
            f"eps_mode={self.eps_mode}"
        )


class BatchNormLastDim(nn.Module):
    """Plain twin of :class:`eBatchNorm`: ``nn.BatchNorm1d`` over the last axis of ``(B, ..., D)`` inputs."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True, **factory):
        super().__init__()
        self.norm = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=affine, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.reshape(-1, x.shape[-1])).view_as(x)


NORM_MODULES: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "rmsnorm": (eRMSNorm, nn.RMSNorm),
    "layernorm": (eLayerNorm, nn.LayerNorm),
    "batchnorm": (eBatchNorm, BatchNormLastDim),
}


def _norm_classes(name: str) -> tuple[type[nn.Module], type[nn.Module]]:
    if name not in NORM_MODULES:
        raise ValueError(f"unknown norm_module {name!r}; choose one of {', '.join(NORM_MODULES)}")
    return NORM_MODULES[name]


def build_norm(
    name: NormModule, in_rep: Representation, eps: float, *, affine: str = "isotypic", layout: str = "spatial",
    device=None, dtype=None,
) -> nn.Module:  # fmt: skip
    """The equivariant normalisation called ``name`` for features of ``in_rep`` (``affine``, ``layout``: eRMSNorm)."""
    cls = _norm_classes(name)[0]
    if cls is eBatchNorm:  # batch norm's affine is per irrep copy already
        if layout != "spatial":
            raise ValueError("norm_module='batchnorm' supports layout='spatial' only; use 'rmsnorm' or 'layernorm'")
        return cls(in_rep, eps=eps, device=device, dtype=dtype)
    return cls(in_rep, eps=eps, affine=affine, layout=layout, device=device, dtype=dtype)


def build_plain_norm(name: NormModule, size: int, eps: float, *, device=None, dtype=None) -> nn.Module:
    """The plain-torch twin of :func:`build_norm`."""
    return _norm_classes(name)[1](size, eps=eps, device=device, dtype=dtype)
