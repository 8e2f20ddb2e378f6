"""symm_layers: G-equivariant neural-network layers with swappable implementation strategies."""

from . import _pickling
from .activations import ACTIVATIONS
from .affine import eAffine
from .attention import (
    AbsolutePositionalAttention,
    MultiheadAttention,
    RelativePositionalAttention,
    eAbsolutePositionalAttention,
    eMultiheadAttention,
    eRelativePositionalAttention,
)
from .basis import BASIS_STRATEGIES, GroupHomomorphismBasis
from .cache import WEIGHT_CACHE_MODES, DerivedTensorCache
from .linear import InvariantBias, eLinear, impose_linear_equivariance
from .mlp import MLP, eMLP
from .models import CondTransformerRegressor, eCondTransformerRegressor
from .normalization import NORM_MODULES, BatchNormLastDim, eBatchNorm, eLayerNorm, eRMSNorm
from .reps import decompose
from .stack import TransformerStack
from .transformer import (
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    eTransformerDecoderLayer,
    eTransformerEncoderLayer,
)

_pickling.install()  # escnn groups and representations pickle (torch.save of whole modules)

__all__ = [
    "ACTIVATIONS",
    "BASIS_STRATEGIES",
    "NORM_MODULES",
    "WEIGHT_CACHE_MODES",
    "AbsolutePositionalAttention",
    "BatchNormLastDim",
    "CondTransformerRegressor",
    "DerivedTensorCache",
    "GroupHomomorphismBasis",
    "InvariantBias",
    "MLP",
    "MultiheadAttention",
    "RelativePositionalAttention",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "TransformerStack",
    "decompose",
    "eAbsolutePositionalAttention",
    "eAffine",
    "eBatchNorm",
    "eCondTransformerRegressor",
    "eLayerNorm",
    "eLinear",
    "eMLP",
    "eMultiheadAttention",
    "eRMSNorm",
    "eRelativePositionalAttention",
    "eTransformerDecoderLayer",
    "eTransformerEncoderLayer",
    "impose_linear_equivariance",
]
