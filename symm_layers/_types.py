"""Literal aliases for every strategy family."""

from typing import Literal

BasisExpansionScheme = Literal["auto", "isotypic_expansion", "orbit_gather", "memory_heavy", "reference"]
WeightCacheMode = Literal["cached", "uncached"]
InitScheme = Literal["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"]
AffineInitScheme = Literal["identity", "random"]
GradientNormalization = Literal["element", "path"]
