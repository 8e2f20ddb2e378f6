"""Models assembled from symm_layers parts."""

from .regressor import CondTransformerRegressor, eCondTransformerRegressor

__all__ = ["CondTransformerRegressor", "eCondTransformerRegressor"]
