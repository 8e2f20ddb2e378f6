"""eLinear, the equivariant linear map (InvariantBias and impose_linear_equivariance are re-exported here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from escnn.group import Representation
from torch import nn

from ._types import (
    BasisExpansionScheme,
    GradientNormalization,
    InitScheme,
    Layout,
    PathNormalization,
    WeightCacheMode,
)
from .basis import GroupHomomorphismBasis
from .basis.spectral import FoldedGather, SpectralGather
from .cache import resolve_weight_cache
from .impose import impose_linear_equivariance
from .invariant import InvariantBias, InvariantSubspace
from .layout import check_layout
from .linear_options import ChannelInvariantBias, channel_forward, check_channels, check_path_normalization
from .module import EquivariantModule
from .reps import check_representations, check_same_group

__all__ = ["InvariantBias", "InvariantSubspace", "eLinear", "impose_linear_equivariance"]


class eLinear(EquivariantModule):
    r"""Linear layer constrained to :math:`\operatorname{Hom}_G(\rho_\text{in}, \rho_\text{out})`, invariant bias.

    .. math::
        \rho_\text{out}(g) W = W \rho_\text{in}(g), \qquad \rho_\text{out}(g) b = b \qquad \forall g \in G

    :math:`W = \sum_b \theta_b B_b` over an orthonormal basis of Hom_G and :math:`b` lives on the trivial irrep
    copies of ``out_rep``, so both constraints hold for every value of the DoFs.

    Args:
        in_rep: input representation.
        out_rep: output representation (same group).
        bias: add an invariant bias (only possible if ``out_rep`` contains the trivial irrep).
        init_scheme: one of ``xavier_normal``, ``xavier_uniform``, ``kaiming_normal``, ``kaiming_uniform``, with
            the variance of torch's init matched per isotypic block; ``None`` skips initialisation.
        basis_expansion_scheme: how the weight is materialised (see :mod:`symm_layers.basis`); ``"auto"`` (default)
            applies :func:`symm_layers.basis.auto_strategy`: ``orbit_gather`` for permutation representations at
            sizes where forming the weight pays, ``isotypic_expansion`` otherwise. ``extra_repr()`` and
            ``basis.cost().strategy`` show the choice.
        weight_cache: ``"cached"`` reuses the dense weight while the DoFs are unchanged (exact gradients through
            the expansion's adjoint); ``"uncached"`` expands on every call.
        max_basis_bytes: size limit for strategies that store a dense basis stack.
        gradient_normalization: ``"element"`` draws DoFs with the init scheme's variance (torch's convention);
            ``"path"`` draws unit-variance DoFs and multiplies them in the forward by that same per-block standard
            deviation (a constant), so the function at init is distributed identically while every isotypic block
            (path) learns at the same rate whatever its width (e3nn's meaning).
        num_indexed_weights: keep this many DoF vectors, ``weight_dof`` of shape ``(n, dim)``; ``forward(x,
            weight_index=i)`` uses row ``i[r]`` for row ``r`` of ``x`` (e.g. one map per species or per task).
        external_weights: own no weight DoFs; ``forward(x, weight_dof=w)`` takes per-row DoFs ``(..., dim)``
            (e.g. produced by a hypernetwork). The bias stays a parameter.
        layout: ``"spatial"`` (default: features in the representations' own bases) or ``"spectral"`` (features
            ``Q^T x`` in spectral coordinates, see :mod:`symm_layers.layout`): the weight is then
            ``W_spec = Q_out^T W Q_in``, formed by one gather for any representation; the same DoFs give the same
            map in both layouts. ``weight`` and ``export()`` act in the layer's layout. A pair ``(in_layout,
            out_layout)`` mixes them, with the change of basis folded into the weight (e.g. spectral features into
            a regular hidden representation before a pointwise activation).
        path_normalization: ``None`` (default): each isotypic block (path) gets the variance of torch's
            ``init_scheme``. ``"element"``, ``"path"`` or a float in ``[0, 1]``: e3nn's normalisation, block ``k``
            gets variance ``alpha_k = d_k / (m_in,k e_k)`` so every output component has unit variance for
            unit-variance inputs (the DoFs are drawn with unit variance times ``sqrt(alpha_k)``; with
            ``gradient_normalization="path"`` the ``sqrt(alpha_k)`` is a forward constant instead). Each output
            irrep type receives exactly one isotypic path, so e3nn's "element" and "path" weightings coincide.
        channel_in, channel_out: a channel axis before the representation axis: ``(..., channel_in, D_in) ->
            (..., channel_out, D_out)`` with one Hom_G map per channel pair (DoFs ``(channel_out, channel_in,
            dim)``, e3nn's ``channel_out``); the bias is invariant per output channel.
        weights_per_channel: with ``channel_in``: one map per channel, channels not mixed (DoFs ``(channel_in,
            dim)``).
        force_irreps_out: when ``dim Hom_G = 0`` (no shared irrep, or ``instructions`` selecting none), build the
            zero map (plus bias) instead of raising. Output irreps that no path reaches are always kept (as zeros).
        instructions: the isotypic paths that carry weights, as escnn irrep ids (or irreps) shared by ``in_rep``
            and ``out_rep``; ``None`` keeps all. The other blocks of Hom_G are zero and own no DoFs.
        device, dtype: factory kwargs for parameters and constants.

    Shape:
        ``(..., in_rep.size)`` -> ``(..., out_rep.size)``.

    Note:
        The DoFs mean the same map under every expansion strategy and cache mode, so state dicts load across them.
        See :mod:`symm_layers.cache` for the cache contract.

    Raises:
        ValueError: for reps of different groups, ``dim Hom_G = 0``, unknown strategy names, a dense basis over the
            memory limit, or input of the wrong feature size.

    Example:
        >>> from escnn.group import dihedral_group, directsum
        >>> G = dihedral_group(4)
        >>> layer = eLinear(directsum([G.regular_representation] * 2), G.regular_representation)
        >>> layer(torch.randn(5, 16)).shape
        torch.Size([5, 8])
    """

    def __init__(
        self,
        in_rep: Representation,
        out_rep: Representation,
        bias: bool = True,
        init_scheme: InitScheme | None = "xavier_normal",
        basis_expansion_scheme: BasisExpansionScheme = "auto",
        *,
        weight_cache: WeightCacheMode = "cached",
        max_basis_bytes: int | None = None,
        gradient_normalization: GradientNormalization = "element",
        num_indexed_weights: int | None = None,
        external_weights: bool = False,
        layout: Layout = "spatial",
        path_normalization: PathNormalization | float | None = None,
        channel_in: int | None = None,
        channel_out: int | None = None,
        weights_per_channel: bool = False,
        force_irreps_out: bool = False,
        instructions: Sequence | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_representations(type(self).__name__, in_rep=in_rep, out_rep=out_rep)
        check_same_group(in_rep, out_rep)
        self.in_layout, self.out_layout = (layout, layout) if isinstance(layout, str) else tuple(layout)
        check_layout(self.in_layout), check_layout(self.out_layout)
        self.layout = layout if isinstance(layout, str) else (self.in_layout, self.out_layout)
        check_path_normalization(path_normalization)
        check_channels(channel_in, channel_out, weights_per_channel, num_indexed_weights, external_weights)
        self.in_rep, self.out_rep = in_rep, out_rep
        self.in_features, self.out_features = in_rep.size, out_rep.size
        self.path_normalization, self.instructions = path_normalization, instructions
        self.channel_in, self.channel_out, self.weights_per_channel = channel_in, channel_out, weights_per_channel
        self.force_irreps_out = force_irreps_out
        self.basis = GroupHomomorphismBasis(
            in_rep, out_rep, basis_expansion_scheme, max_basis_bytes=max_basis_bytes, paths=instructions,
            allow_empty=force_irreps_out, device=device, dtype=dtype,
        )  # fmt: skip
        self.weight_cache = resolve_weight_cache(weight_cache)
        if gradient_normalization not in ("element", "path"):
            raise ValueError(f"unknown gradient_normalization {gradient_normalization!r}; choose 'element' or 'path'")
        if external_weights and num_indexed_weights is not None:
            raise ValueError("choose one of external_weights=True and num_indexed_weights, not both")
        if num_indexed_weights is not None and num_indexed_weights < 1:
            raise ValueError(f"num_indexed_weights must be a positive count, got {num_indexed_weights}")
        self.init_scheme = init_scheme or "xavier_normal"
        self.gradient_normalization = gradient_normalization
        self.num_indexed_weights, self.external_weights = num_indexed_weights, external_weights
        if gradient_normalization == "path":
            self.register_constant("dof_scale", self._dof_std(self.init_scheme), device=device, dtype=dtype)
        shape = (self.basis.dim,) if num_indexed_weights is None else (num_indexed_weights, self.basis.dim)
        if channel_in is not None:
            shape = (channel_in, self.basis.dim) if weights_per_channel else (channel_out, channel_in, self.basis.dim)
        if external_weights:
            self.register_parameter("weight_dof", None)
        else:
            self.weight_dof = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias_module = (
            InvariantBias(
                out_rep, weight_cache=weight_cache, init_scheme=None, layout=self.out_layout, device=device, dtype=dtype
            )
            if bias
            else None
        )
        if bias and channel_in is not None:
            channels = channel_in if weights_per_channel else channel_out
            self.bias_module = ChannelInvariantBias(out_rep, channels, device=device, dtype=dtype)
        # Options that change the call's shapes run outside forward's default branch.
        self.__dict__["_options_forward"] = None if channel_in is None else channel_forward
        bias_parts = None
        if self.bias_module is not None and self.bias_module.has_bias:
            bias_parts = (self.bias_module.subspace, self.bias_module)
        # Direct references for the per-call path (each nn.Module attribute lookup costs ~1 us, which is most of
        # an inference call at D=64). They are the registered submodules themselves, so .to(), deepcopy and
        # state_dict see the same objects. Parameters are read at call time from the modules' current _parameters
        # dicts (torch.export and torch.func swap those dicts, so a stored reference to one would go stale).
        # The map applied to features: the basis strategy's W (spatial), or W_spec = Q_out^T W Q_in (spectral).
        if self.in_layout == self.out_layout == "spatial":
            self.__dict__["feature_map"] = self.basis.strategy  # the same module: not registered a second time
        elif self.in_layout == self.out_layout:
            self.feature_map = SpectralGather(self.basis.space, device=device, dtype=dtype)
        else:
            layouts = (self.in_layout, self.out_layout)
            self.feature_map = FoldedGather(self.basis.space, *layouts, device=device, dtype=dtype)
        self.__dict__["_call_parts"] = (self.feature_map, self.weight_cache, bias_parts)
        special = channel_in is not None or external_weights or num_indexed_weights is not None
        self.__dict__["_plain_call"] = not special and gradient_normalization != "path"
        if init_scheme is not None:
            self.reset_parameters(init_scheme)

    @torch.no_grad()
    def reset_parameters(self, scheme: InitScheme | None = None) -> None:
        """Draw DoFs with the variance of torch's ``scheme`` (default: the constructor's); the bias uniformly."""
        scheme = scheme or self.init_scheme
        if self.weight_dof is not None and self.basis.dim > 0:
            rows = self.weight_dof.view(-1, self.basis.dim)
            std = torch.as_tensor(self._dof_std(scheme), dtype=rows.dtype)  # drawn on the CPU, then copied
            for row in rows:
                row.copy_(self.basis.space.sample_unit(scheme, dtype=rows.dtype) * std)
            if self.gradient_normalization == "path":
                rows.div_(std.to(rows.device))
        if self.bias_module is not None and self.bias_module.has_bias:
            self.bias_module.reset_parameters("uniform")

    def _dof_std(self, scheme: InitScheme) -> np.ndarray:
        """Per-DoF standard deviation: torch's ``scheme`` per block, or e3nn's ``sqrt(alpha_k)``."""
        mixed = self.channel_in is not None and not self.weights_per_channel
        in_copies, out_copies = (self.channel_in, self.channel_out) if mixed else (1, 1)
        if self.path_normalization is not None:
            return self.basis.space.path_std(in_copies=in_copies)
        return self.basis.space.init_std(scheme, in_copies=in_copies, out_copies=out_copies)

    def _effective(self, dof: torch.Tensor) -> torch.Tensor:
        return dof * self.dof_scale if self.gradient_normalization == "path" else dof

    def _check_shared_weight(self) -> None:
        if self.external_weights or self.num_indexed_weights is not None:
            raise ValueError("this eLinear has per-row weights (external or indexed): there is no single dense weight")
        if self.channel_in is not None:
            raise ValueError(
                "this eLinear maps a channel axis: its weights are basis(weight_dof) of shape "
                f"{(*self.weight_dof.shape[:-1], self.out_features, self.in_features)}, not one dense matrix"
            )

    @property
    def weight(self) -> torch.Tensor:
        """The dense equivariant weight ``(out_features, in_features)``."""
        self._check_shared_weight()
        if self.gradient_normalization == "path":
            return self.feature_map.expand(self._effective(self.weight_dof))
        return self.weight_cache.weight(self.feature_map, self.weight_dof)

    @property
    def bias(self) -> torch.Tensor | None:
        return None if self.bias_module is None else self.bias_module.bias

    def forward(
        self, input: torch.Tensor, weight_index: torch.Tensor | None = None, weight_dof: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self._plain_call and weight_index is None and weight_dof is None and input.shape[-1] == self.in_features:
            strategy, cache_mode, bias_parts = self._call_parts  # the per-call hot path: no option to look at
            dof = self._parameters.get("weight_dof")
            if dof is None:  # re-routed by torch.nn.utils.parametrize / prune: read it the ordinary way
                dof = self.weight_dof
            if bias_parts is None:
                return cache_mode.linear(strategy, dof, input)
            bias_dof = bias_parts[1]._parameters.get("bias_dof")
            return cache_mode.linear(
                strategy, dof, input, (bias_parts[0], bias_parts[1].bias_dof if bias_dof is None else bias_dof)
            )
        if self._options_forward is not None:
            return self._options_forward(self, input, weight_index, weight_dof)
        if input.shape[-1] != self.in_features:
            self.check_features(input)
        if self.external_weights or self.num_indexed_weights is not None:
            return self._forward_per_row(input, weight_index, weight_dof)
        if weight_index is not None or weight_dof is not None:
            raise ValueError("weight_index/weight_dof need eLinear(num_indexed_weights=n) or external_weights=True")
        dof = self.weight_dof
        return self.feature_map.apply(self._effective(dof), input, self.bias)  # gradient_normalization="path"

    def _forward_per_row(self, input, weight_index, weight_dof) -> torch.Tensor:
        lead = input.shape[:-1]
        if self.external_weights:
            self._check_external_dof(weight_dof, weight_index, lead)
            dof = weight_dof.expand(*lead, self.basis.dim)
        else:
            self._check_weight_index(weight_index, weight_dof, lead)
            dof = self.weight_dof[weight_index.expand(lead)]
        out = self.feature_map.apply_per_row(self._effective(dof), input)
        return out if self.bias is None else out + self.bias

    def _check_external_dof(self, weight_dof, weight_index, lead) -> None:
        dim, got = self.basis.dim, None if weight_dof is None else tuple(weight_dof.shape)
        fits = got is not None and len(got) >= 1 and got[-1] == dim and _broadcasts(got[:-1], lead)
        if weight_index is not None or not fits:
            raise ValueError(
                f"external_weights=True needs weight_dof of shape (..., {dim}) whose leading dims broadcast to the "
                f"input's {tuple(lead)} (e.g. {(*lead, dim)} or ({dim},)), and no weight_index; got weight_dof "
                f"{got}{', weight_index' if weight_index is not None else ''}"
            )

    def _check_weight_index(self, weight_index, weight_dof, lead) -> None:
        n = self.num_indexed_weights
        if weight_index is None or weight_dof is not None:
            raise ValueError(f"num_indexed_weights={n} needs weight_index (ints, per row) and no weight_dof")
        if weight_index.is_floating_point() or weight_index.is_complex() or weight_index.dtype == torch.bool:
            raise ValueError(
                f"weight_index must hold integers in [0, {n}), got dtype {weight_index.dtype}; use .long()"
            )
        if not _broadcasts(tuple(weight_index.shape), lead):
            raise ValueError(
                f"weight_index of shape {tuple(weight_index.shape)} does not broadcast to the input's leading "
                f"shape {tuple(lead)}; pass one index per row, e.g. of shape {tuple(lead)}"
            )
        if not torch.compiler.is_compiling() and weight_index.numel():  # data-dependent: skipped when compiled
            low, high = int(weight_index.min()), int(weight_index.max())
            if low < 0 or high >= n:
                raise ValueError(
                    f"weight_index values must lie in [0, num_indexed_weights={n}), got values in [{low}, {high}]; "
                    "build the layer with a larger num_indexed_weights"
                )

    def export(self) -> nn.Linear:
        self._check_shared_weight()
        bias = self.bias
        lin = nn.Linear(
            self.in_features,
            self.out_features,
            bias=bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if bias is not None:
                lin.bias.copy_(bias)
        return lin

    def extra_repr(self) -> str:
        return (
            f"in_rep={self.in_rep.name}[{self.in_features}], out_rep={self.out_rep.name}[{self.out_features}], "
            f"dim_hom={self.basis.dim}, {self.basis.extra_repr()}, "
            f"weight_cache={self.weight_cache.name}, gradient_normalization={self.gradient_normalization}"
            + (f", layout={self.layout}" if self.layout != "spatial" else "")
            + (f", num_indexed_weights={self.num_indexed_weights}" if self.num_indexed_weights else "")
            + (", external_weights=True" if self.external_weights else "")
            + self._options_repr()
        )

    def _options_repr(self) -> str:
        options = {
            "path_normalization": self.path_normalization,
            "channel_in": self.channel_in,
            "channel_out": self.channel_out,
            "weights_per_channel": self.weights_per_channel or None,
            "force_irreps_out": self.force_irreps_out or None,
            "instructions": self.instructions,
        }
        return "".join(f", {name}={value}" for name, value in options.items() if value is not None)

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module):
        if self.channel_in is None:
            return super()._equivariance_probe(batch_size, seq_len, call)
        return call, self.in_rep, self.out_rep, (batch_size, seq_len, self.channel_in)


def _broadcasts(shape: tuple, target: tuple) -> bool:
    """True when ``shape`` broadcasts to exactly ``target``."""
    try:
        return tuple(torch.broadcast_shapes(tuple(shape), tuple(target))) == tuple(target)
    except RuntimeError:
        return False
