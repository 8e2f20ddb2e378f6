"""Name -> strategy class for Hom_G bases, and the rule behind ``"auto"``."""

from __future__ import annotations

from .base import HomBasisStrategy
from .dense import MemoryHeavyExpansion, ReferenceExpansion
from .isotypic import IsotypicExpansion
from .orbit import OrbitGather, orbit_plan
from .space import HomSpace

BASIS_STRATEGIES: dict[str, type[HomBasisStrategy]] = {
    cls.name: cls for cls in (IsotypicExpansion, OrbitGather, MemoryHeavyExpansion, ReferenceExpansion)
}

#: Rows per training call at which ``"auto"`` compares the two exact fast strategies (a typical batch of tokens).
AUTO_REFERENCE_ROWS = 256


def auto_strategy(space: HomSpace) -> str:
    """The strategy ``"auto"`` resolves to for ``space`` (the documented default rule).

    ``orbit_gather`` when both representations permute their coordinates (its weight is one gather, the fewest
    operations per call), unless the isotypic cost model predicts that its spectral path, which never forms the
    weight, trains a call of :data:`AUTO_REFERENCE_ROWS` rows more cheaply than a dense product (large ``D``,
    where the product dominates); ``isotypic_expansion`` otherwise (every orthogonal representation).
    """
    _, spectral = IsotypicExpansion(space, device="meta").path_macs(AUTO_REFERENCE_ROWS)
    if spectral < AUTO_REFERENCE_ROWS * space.shape[0] * space.shape[1]:
        return IsotypicExpansion.name
    try:
        orbit_plan(space)
    except ValueError:
        return IsotypicExpansion.name
    return OrbitGather.name


def resolve_basis(name: str, space: HomSpace | None = None) -> type[HomBasisStrategy]:
    """Return the strategy class registered as ``name`` (``"auto"`` needs the ``space``).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name == "auto" and space is not None:
        name = auto_strategy(space)
    if name not in BASIS_STRATEGIES:
        known = ", ".join(["auto", *BASIS_STRATEGIES])
        raise ValueError(f"unknown basis_expansion_scheme {name!r}; choose one of {known}")
    return BASIS_STRATEGIES[name]
