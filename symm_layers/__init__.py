"""symm_layers: G-equivariant neural-network layers with swappable implementation strategies."""

from .affine import eAffine
from .basis import BASIS_STRATEGIES, GroupHomomorphismBasis
from .cache import WEIGHT_CACHE_MODES, DerivedTensorCache
from .linear import InvariantBias, eLinear, impose_linear_equivariance
from .reps import decompose

__all__ = [
    "BASIS_STRATEGIES",
    "WEIGHT_CACHE_MODES",
    "DerivedTensorCache",
    "GroupHomomorphismBasis",
    "InvariantBias",
    "decompose",
    "eAffine",
    "eLinear",
    "impose_linear_equivariance",
]
