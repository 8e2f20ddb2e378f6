"""The space Hom_G(rho_in, rho_out) in isotypic coordinates and its canonical degrees of freedom.

Every strategy in :mod:`symm_layers.basis` parameterises the *same* orthonormal basis, so a DoF vector means the
same map whichever strategy expands it. For each irrep type ``k`` shared by input and output, with multiplicities
``m_out``, ``m_in``, dimension ``d`` and Frobenius-orthonormal endomorphism basis ``E_k,b`` (``b < e``, ``e`` in
{1, 2, 4} for real, complex, quaternionic types), the basis element of index ``(k, i, j, b)`` is

    Q_out[:, copy i of k] E_k,b Q_in[:, copy j of k]^T,

and the DoFs are laid out type by type, each as a row-major ``(m_out, m_in, e)`` array. The elements are mutually
orthogonal with unit Frobenius norm, so the adjoint of the expansion returns projection coefficients.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from escnn.group import Representation

from .._types import InitScheme
from ..reps import IrrepType, IsotypicDecomposition, _ContentKey, check_same_group, decompose

INIT_SCHEMES: tuple[str, ...] = ("xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform")


@dataclass(frozen=True, eq=False)
class SharedIrrep:
    """An irrep type present in both representations, with the slice of the DoF vector it owns."""

    out: IrrepType
    inp: IrrepType
    offset: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.out.multiplicity, self.inp.multiplicity, self.out.endomorphism_dim)

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def dof_slice(self) -> slice:
        return slice(self.offset, self.offset + self.count)


@dataclass(frozen=True, eq=False)
class HomSpace:
    """Content-derived description of Hom_G(rho_in, rho_out)."""

    domain: IsotypicDecomposition
    codomain: IsotypicDecomposition
    shared: tuple[SharedIrrep, ...]

    @property
    def dim(self) -> int:
        return sum(s.count for s in self.shared)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.codomain.size, self.domain.size)

    def init_std(self, scheme: InitScheme, *, in_copies: int = 1, out_copies: int = 1) -> np.ndarray:
        """Per-DoF standard deviation that gives each spectral block the variance of the named torch init.

        ``in_copies``/``out_copies`` scale the fans for a map between channel copies of the representations
        (eLinear's ``channel_out``), whose blocks see ``in_copies`` times the input multiplicity.
        """
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init_scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
        std = np.empty(self.dim)
        for s in self.shared:
            m_out, m_in, e = s.shape
            d = s.out.dim
            # A spectral output row of type k has m_in * d entries; their variances sum to m_in * var(theta) * e / d
            # (each E_b has unit Frobenius norm spread evenly over d rows). torch's init gives the row a sum of
            # fan_in * target, so var(theta) = target * d**2 / e with the block's own fans.
            fan_in, fan_out = in_copies * m_in * d, out_copies * m_out * d
            if scheme.startswith("xavier"):
                target = 2.0 / (fan_in + fan_out)
            else:
                target = 2.0 / fan_in  # kaiming with gain sqrt(2) (ReLU), fan_in mode
            std[s.dof_slice] = math.sqrt(target * d * d / e)
        return std

    def path_std(self, *, in_copies: int = 1) -> np.ndarray:
        """Per-DoF standard deviation ``sqrt(alpha_k)`` of e3nn's path normalisation (one path per irrep type).

        With unit-variance inputs, a block of type ``k`` whose DoFs have variance ``alpha_k = d / (m_in e)``
        gives unit-variance outputs (e3nn's "component" normalisation). Each output irrep type receives exactly
        one isotypic path, so e3nn's "element" and "path" weightings of the paths into one output coincide.
        """
        std = np.empty(self.dim)
        for s in self.shared:
            _, m_in, e = s.shape
            std[s.dof_slice] = math.sqrt(s.out.dim / (in_copies * m_in * e))
        return std

    def sample_unit(self, scheme: InitScheme, shape=(), *, generator=None, device=None, dtype=None) -> torch.Tensor:
        """Unit-variance noise of shape ``(*shape, dim)``: normal, or uniform for the ``*_uniform`` schemes."""
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init_scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
        size = (*tuple(shape), self.dim)
        dtype = dtype or torch.get_default_dtype()
        if scheme.endswith("normal"):
            return torch.randn(size, generator=generator, dtype=dtype, device=device)
        return (torch.rand(size, generator=generator, dtype=dtype, device=device) * 2 - 1) * math.sqrt(3)

    def sample_dof(self, scheme: InitScheme, shape=(), *, generator=None, device=None, dtype=None) -> torch.Tensor:
        """Draw initial DoFs ``(*shape, dim)`` for ``scheme`` (normal or uniform with the same variance)."""
        noise = self.sample_unit(scheme, shape, generator=generator, device=device, dtype=dtype)
        return noise * torch.as_tensor(self.init_std(scheme), dtype=noise.dtype, device=device)

    def restrict(self, irrep_ids) -> HomSpace:
        """The subspace spanned by the isotypic paths of the irrep types ``irrep_ids`` (escnn irrep ids).

        Raises:
            ValueError: for an id that is not an irrep type shared by both representations, naming the shared ones.
        """
        wanted = [_irrep_id(i) for i in irrep_ids]
        available = [s.out.id for s in self.shared]
        unknown = [i for i in wanted if i not in available]
        if unknown:
            raise ValueError(
                f"instructions name irreps {unknown} that carry no equivariant path; the paths of this map are the "
                f"irrep types shared by in_rep and out_rep: {available}"
            )
        shared, offset = [], 0
        for s in self.shared:
            if s.out.id in wanted:
                shared.append(SharedIrrep(out=s.out, inp=s.inp, offset=offset))
                offset += s.count
        return HomSpace(domain=self.domain, codomain=self.codomain, shared=tuple(shared))


def _irrep_id(irrep):
    """An escnn irrep id from an id or an irrep object (its ``.id``)."""
    irrep = getattr(irrep, "id", irrep)
    return tuple(irrep) if isinstance(irrep, list) else irrep


def hom_space(in_rep: Representation, out_rep: Representation) -> HomSpace:
    """Return the (memoised) description of Hom_G(in_rep, out_rep).

    Raises:
        ValueError: if the representations belong to different groups or are not orthogonal.
    """
    check_same_group(in_rep, out_rep)
    return _hom_space(_ContentKey(in_rep), _ContentKey(out_rep))


@functools.lru_cache(maxsize=256)
def _hom_space(in_key: _ContentKey, out_key: _ContentKey) -> HomSpace:
    domain, codomain = decompose(in_key.rep), decompose(out_key.rep)
    inputs = {t.id: t for t in domain.irreps}
    shared, offset = [], 0
    for out_type in codomain.irreps:
        if out_type.id in inputs:
            item = SharedIrrep(out=out_type, inp=inputs[out_type.id], offset=offset)
            shared.append(item)
            offset += item.count
    return HomSpace(domain=domain, codomain=codomain, shared=tuple(shared))


def no_map_message(space: HomSpace, in_rep: Representation, out_rep: Representation) -> str:
    return (
        f"no equivariant map: dim Hom_G({in_rep.name}, {out_rep.name}) = 0 because the representations share "
        f"no irrep (input irreps {sorted(space.domain.irrep_ids)}, output irreps {sorted(space.codomain.irrep_ids)}); "
        "add a common irrep (e.g. the trivial one, or use a regular representation) to one of them"
    )
