"""Multilayer perceptrons: eMLP and its plain twin MLP, both built by :class:`_PerceptronStack`.

The stack receives the feature spaces and a :class:`LinearFamily` (eLinear/InvariantBias over representations, or
nn.Linear/_Bias over sizes) and owns the wiring, the activations and the gradient normalisation.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from escnn.group import Representation
from torch import nn

from ._types import BasisExpansionScheme, InitScheme, Layout, WeightCacheMode
from .activations import (
    ACTIVATIONS,
    Activation,
    check_activation,
    check_pointwise_activation,
    make_activation,
    regular_copies,
)
from .basis import INIT_SCHEMES
from .layout import check_layout
from .linear import InvariantBias, eLinear
from .module import EquivariantModule
from .reps import check_representations, check_same_group

__all__ = ["ACTIVATIONS", "GradientNormalization", "MLP", "eMLP"]

GradientNormalization = Literal["element", "path"]

GRADIENT_NORMALIZATIONS: tuple[str, ...] = ("element", "path")


class LinearFamily(NamedTuple):
    """How to build one layer between two feature spaces (representations or sizes)."""

    linear: Callable[[Any, Any], nn.Module]  # (in_space, out_space) -> bias-free linear map
    bias: Callable[[Any], nn.Module]  # out_space -> module computing y + b, with reset_parameters(scheme)
    init_linear: Callable[[nn.Module, str], None]  # (linear, init_scheme) -> draws its weights in place


class _Bias(nn.Module):
    """``y + b`` with an unconstrained ``b``, initialised like :class:`InvariantBias` (``U(+-1/sqrt(size))``)."""

    def __init__(self, size: int, *, device=None, dtype=None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.empty(size, device=device, dtype=dtype))

    @torch.no_grad()
    def reset_parameters(self, scheme: str = "uniform") -> None:
        bound = 1.0 / math.sqrt(self.bias.numel())
        self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias

    def extra_repr(self) -> str:
        return f"size={self.bias.numel()}"


class _Dense(nn.Module):
    """``scale * linear(x) + bias``: one layer of the stack; ``scale`` is a Python constant (1 for "element")."""

    def __init__(self, linear: nn.Module, bias: nn.Module | None, fan_in: int, gradient_normalization: str):
        super().__init__()
        self.linear, self.bias = linear, bias
        self.fan_in = fan_in
        self.scale = 1.0 / math.sqrt(fan_in) if gradient_normalization == "path" else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.scale != 1.0:
            out = out * self.scale
        return out if self.bias is None else self.bias(out)

    def extra_repr(self) -> str:
        return f"fan_in={self.fan_in}, scale={self.scale:.4g}"


def _resolve_activation(activation: Activation) -> Callable[[], nn.Module]:
    check_activation(activation)
    return lambda: make_activation(activation)


@dataclass(frozen=True)
class PerceptronOptions:
    """The options eMLP and MLP share (validated here once); ``export`` hands them to the plain twin."""

    activation: Activation
    output_activation: bool
    bias: bool
    gradient_normalization: GradientNormalization
    dropout: float

    def __post_init__(self) -> None:
        _resolve_activation(self.activation)
        if self.gradient_normalization not in GRADIENT_NORMALIZATIONS:
            raise ValueError(
                f"unknown gradient_normalization {self.gradient_normalization!r}; choose 'element' (weights drawn "
                "with variance ~1/fan_in) or 'path' (unit-scale weights, forward scaled by 1/sqrt(fan_in))"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class _PerceptronStack(nn.Module):
    """``features[0] -> ... -> features[-1]`` through dense layers, activations after every hidden layer."""

    def __init__(
        self, features: Sequence[Any], family: LinearFamily, options: PerceptronOptions, init_scheme: str | None
    ) -> None:
        super().__init__()
        self.options = options
        self._init_linear = family.init_linear
        make_activation = _resolve_activation(options.activation)
        layers: list[nn.Module] = []
        num_hidden = len(features) - 2
        for i, (f_in, f_out) in enumerate(zip(features[:-1], features[1:], strict=True)):
            bias = family.bias(f_out) if options.bias else None
            layers.append(_Dense(family.linear(f_in, f_out), bias, _size(f_in), options.gradient_normalization))
            if i < num_hidden or options.output_activation:
                layers.append(make_activation())
            if i < num_hidden and options.dropout > 0:
                layers.append(nn.Dropout(options.dropout))
        self.layers = nn.Sequential(*layers)
        if init_scheme is not None:
            self.reset_parameters(init_scheme)

    def dense_layers(self) -> list[_Dense]:
        return [m for m in self.layers if isinstance(m, _Dense)]

    @torch.no_grad()
    def reset_parameters(self, scheme: InitScheme = "xavier_normal") -> None:
        for dense in self.dense_layers():
            self._init_linear(dense.linear, scheme)
            if dense.scale != 1.0:  # "path": unit-scale weights, the 1/sqrt(fan_in) moves into the forward
                for p in dense.linear.parameters():
                    p.mul_(1.0 / dense.scale)
            if dense.bias is not None:
                dense.bias.reset_parameters("uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _init_plain(linear: nn.Linear, scheme: str) -> None:
    """torch's own ``nn.init.<scheme>_`` (eLinear matches its variance per isotypic block)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init_scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    getattr(nn.init, f"{scheme}_")(linear.weight)


def _regular_hidden(group, width: int, layer: int) -> Representation:
    """``ceil(width / |G|)`` regular copies; warns (naming the width used) when ``width`` is not a multiple of ``|G|``.

    Raises:
        ValueError: for a non-positive width or a continuous group (no regular representation).
    """
    width = int(width)
    if width <= 0 or group.continuous:
        regular_copies(group, width, f"hidden layer {layer}")  # raises the error that names the fix
    order = group.order()
    rounded = -(-width // order) * order
    if rounded != width:
        warnings.warn(
            f"eMLP hidden layer {layer}: width {width} is not a multiple of |{group.name}| = {order}; using "
            f"{rounded} ({rounded // order} regular copies); pass a multiple of {order} to silence this warning",
            UserWarning,
            stacklevel=3,
        )
    return regular_copies(group, rounded, f"hidden layer {layer}")


def _size(space: Any) -> int:
    return space.size if isinstance(space, Representation) else int(space)


class eMLP(EquivariantModule):
    r"""Multilayer perceptron of eLinear layers and pointwise activations on permutation representations.

    .. math::
        f = L_n \circ \sigma \circ L_{n-1} \circ \cdots \circ \sigma \circ L_1, \qquad
        f(\rho_\text{in}(g) x) = \rho_\text{out}(g) f(x)

    Each :math:`L_k` is G-equivariant, and a pointwise :math:`\sigma` commutes with :math:`\rho(g)` whenever
    :math:`\rho(g)` is a permutation matrix, which is checked for every hidden representation.

    Args:
        in_rep: input representation.
        out_rep: output representation (same group).
        hidden_units: per hidden layer, a width ``w`` (``ceil(w / |G|)`` copies of the regular representation: a
            width that is not a multiple of ``|G|`` is rounded up, as the reference library does, with a
            ``UserWarning`` naming the width used) or a Representation acting by permutation matrices.
        activation: a name from :data:`ACTIVATIONS`, a zero-argument factory, or a module (deep-copied per layer).
        output_activation: also apply the activation after the last layer (``out_rep`` must then be a
            permutation representation).
        bias: add an invariant bias to every layer.
        gradient_normalization: ``"element"``: weights drawn by ``init_scheme`` (variance ~1/fan_in), forward
            unscaled. ``"path"``: the same draw multiplied by ``sqrt(fan_in)`` and each layer's output
            multiplied by the constant ``1/sqrt(fan_in)`` before its bias (``fan_in`` = the layer's input size).
            The weights then have ``fan_in`` times the scheme's variance (1 for square xavier layers, 2 for
            kaiming), the same draw gives the same function under both, and the "path" weight gradients are
            ``sqrt(fan_in)`` times smaller (e3nn's meaning: each layer learns at a rate independent of width).
        basis_expansion_scheme, weight_cache: passed to every :class:`eLinear`.
        init_scheme: weight init of every layer (see :class:`eLinear`); biases are drawn ``U(+-1/sqrt(size))``
            on the invariant subspace. ``None`` skips initialisation.
        dropout: probability of the dropout after each hidden activation (equivariant in distribution, since
            hidden representations permute coordinates).
        layout: ``"spatial"`` or ``"spectral"``: the layout of the input and output features
            (:mod:`symm_layers.layout`). Hidden features always stay in their permutation basis, where the pointwise
            activation acts; in the spectral layout the first and last weights fold in the change of basis, so no
            activation is ever converted.
        device, dtype: factory kwargs.

    Shape:
        ``(..., in_rep.size)`` -> ``(..., out_rep.size)``.

    Raises:
        ValueError: for a non-positive width or an integer width on a continuous group, a hidden (or activated
            output) representation that is not a permutation representation, representations of different
            groups, an unknown activation or gradient normalisation, or input of the wrong feature size.

    Example:
        >>> from escnn.group import cyclic_group
        >>> G = cyclic_group(4)
        >>> mlp = eMLP(G.regular_representation, G.trivial_representation, [16, 8])
        >>> mlp(torch.randn(3, 4)).shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        in_rep: Representation,
        out_rep: Representation,
        hidden_units: Sequence[int] | Sequence[Representation],
        activation: Activation = "gelu",
        output_activation: bool = False,
        bias: bool = True,
        gradient_normalization: GradientNormalization = "element",
        *,
        basis_expansion_scheme: BasisExpansionScheme = "auto",
        weight_cache: WeightCacheMode = "cached",
        init_scheme: InitScheme | None = "xavier_normal",
        dropout: float = 0.0,
        layout: Layout = "spatial",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep, out_rep=out_rep)
        self.layout = check_layout(layout)
        if layout == "spectral" and output_activation:
            raise ValueError("a pointwise output_activation needs out_rep's own basis; use layout='spatial' for it")
        options = PerceptronOptions(activation, output_activation, bias, gradient_normalization, dropout)
        check_same_group(in_rep, out_rep)
        hidden = [
            h if isinstance(h, Representation) else _regular_hidden(in_rep.group, h, i)
            for i, h in enumerate(hidden_units)
        ]
        check_same_group(in_rep, out_rep, *hidden)
        for i, rep in enumerate(hidden):
            check_pointwise_activation(rep, f"hidden representation {i}")
        if output_activation:
            check_pointwise_activation(out_rep, "out_rep (output_activation=True)")
        self.in_rep, self.out_rep, self.hidden_reps = in_rep, out_rep, tuple(hidden)
        shared = dict(weight_cache=weight_cache, init_scheme=None, device=device, dtype=dtype)
        features = [in_rep, *hidden, out_rep]
        # Hidden features stay in their permutation basis (the activation acts there); only the first map's input
        # and the last map's output follow ``layout``, with the change of basis folded into those two weights.
        last = len(features) - 2
        linear_layouts = iter(
            [(layout if i == 0 else "spatial", layout if i == last else "spatial") for i in range(last + 1)]
        )
        bias_layouts = iter([layout if i == last else "spatial" for i in range(last + 1)])
        family = LinearFamily(
            linear=lambda f_in, f_out: eLinear(
                f_in,
                f_out,
                bias=False,
                basis_expansion_scheme=basis_expansion_scheme,
                layout=next(linear_layouts),
                **shared,
            ),
            bias=lambda f_out: InvariantBias(f_out, layout=next(bias_layouts), **shared),
            init_linear=eLinear.reset_parameters,
        )
        self.stack = _PerceptronStack(features, family, options, init_scheme)

    def reset_parameters(self, scheme: InitScheme = "xavier_normal") -> None:
        self.stack.reset_parameters(scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_rep.size:
            self.check_features(x)
        return self.stack(x)

    @torch.no_grad()
    def export(self) -> MLP:
        """The plain :class:`MLP` with the same sizes, options and current parameters (same outputs)."""
        stack = self.stack
        reference = stack.dense_layers()[0].linear.weight_dof
        sizes = [rep.size for rep in self.hidden_reps]
        factory = dict(init_scheme=None, device=reference.device, dtype=reference.dtype)
        plain = MLP(self.in_rep.size, self.out_rep.size, sizes, **vars(stack.options), **factory)
        for source, target in zip(stack.layers, plain.stack.layers, strict=True):
            if isinstance(source, _Dense):
                target.linear.weight.copy_(source.linear.weight)
                if source.bias is not None:  # an InvariantBias owns no bias when out_rep has no trivial irrep
                    target.bias.bias.zero_()
                    if source.bias.has_bias:
                        target.bias.bias.copy_(source.bias.bias)
            else:
                target.load_state_dict(source.state_dict())
        return plain

    def extra_repr(self) -> str:
        widths = " -> ".join(str(rep.size) for rep in (self.in_rep, *self.hidden_reps, self.out_rep))
        normalization = self.stack.options.gradient_normalization
        return f"group={self.in_rep.group.name}, features={widths}, gradient_normalization={normalization}"


class MLP(nn.Module):
    r"""The plain twin of :class:`eMLP` (same stack, unconstrained ``nn.Linear`` layers); what ``export`` returns.

    .. math::
        L_k(x) = s_k W_k x + b_k, \qquad s_k = 1 \text{ (element) or } 1/\sqrt{\text{fan\_in}_k} \text{ (path)}

    The options mean what they mean for :class:`eMLP`, so with the trivial group both compute the same functions.

    Args:
        in_dim, out_dim: feature sizes; ``hidden_units``: any positive widths. Weights are drawn by
            ``torch.nn.init.<init_scheme>_``, biases ``U(+-1/sqrt(size))``.

    Shape:
        ``(..., in_dim)`` -> ``(..., out_dim)``.

    Raises:
        ValueError: for a non-positive width, an unknown option, or input of the wrong feature size.

    Example:
        >>> MLP(4, 1, [16, 8])(torch.randn(3, 4)).shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_units: Sequence[int],
        activation: Activation = "gelu",
        output_activation: bool = False,
        bias: bool = True,
        gradient_normalization: GradientNormalization = "element",
        *,
        init_scheme: InitScheme | None = "xavier_normal",
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        options = PerceptronOptions(activation, output_activation, bias, gradient_normalization, dropout)
        features = [int(in_dim), *(int(w) for w in hidden_units), int(out_dim)]
        if min(features) <= 0:
            raise ValueError(f"every width must be a positive integer, got {features}")
        self.features = tuple(features)
        self.in_features, self.out_features = features[0], features[-1]
        family = LinearFamily(
            linear=functools.partial(nn.Linear, bias=False, device=device, dtype=dtype),
            bias=functools.partial(_Bias, device=device, dtype=dtype),
            init_linear=_init_plain,
        )
        self.stack = _PerceptronStack(features, family, options, init_scheme)

    def reset_parameters(self, scheme: InitScheme = "xavier_normal") -> None:
        self.stack.reset_parameters(scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            got = tuple(x.shape)
            raise ValueError(
                f"MLP: x of shape {got} has last dimension {got[-1] if got else None}, expected "
                f"{self.in_features}; reshape features to (..., {self.in_features})"
            )
        return self.stack(x)

    def extra_repr(self) -> str:
        widths = " -> ".join(map(str, self.features))
        return f"features={widths}, gradient_normalization={self.stack.options.gradient_normalization}"
