"""Name -> strategy class for Hom_G bases."""

from __future__ import annotations

from .base import HomBasisStrategy
from .dense import MemoryHeavyExpansion, ReferenceExpansion
from .isotypic import IsotypicExpansion
from .orbit import OrbitGather

BASIS_STRATEGIES: dict[str, type[HomBasisStrategy]] = {
    cls.name: cls for cls in (IsotypicExpansion, OrbitGather, MemoryHeavyExpansion, ReferenceExpansion)
}


def resolve_basis(name: str) -> type[HomBasisStrategy]:
    """Return the strategy class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in BASIS_STRATEGIES:
        raise ValueError(f"unknown basis_expansion_scheme {name!r}; choose one of {', '.join(BASIS_STRATEGIES)}")
    return BASIS_STRATEGIES[name]
