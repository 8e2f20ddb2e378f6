"""``check_equivariance()`` on every equivariant module and model: a thin call of symm_layers.testing."""

import pytest
import torch
from conftest import rep_pair, rotated
from escnn import group as eg
from escnn.group import directsum
from torch import nn

import symm_layers
from symm_layers import (
    InvariantBias,
    TransformerStack,
    eAbsolutePositionalAttention,
    eAffine,
    eBatchNorm,
    eCondTransformerRegressor,
    eLayerNorm,
    eLinear,
    eMLP,
    eMultiheadAttention,
    eRelativePositionalAttention,
    eRMSNorm,
    eTransformerDecoderLayer,
    eTransformerEncoderLayer,
)
from symm_layers.affine import eDiagonalAffine
from symm_layers.linear_options import ChannelInvariantBias
from symm_layers.models.regressor import InvariantEmbedding
from symm_layers.module import EquivariantModule

G = eg.cyclic_group(4)
REG = directsum([G.regular_representation] * 2)  # regular, 8 features
MIXED = directsum([G.irrep(1), G.trivial_representation, G.irrep(2)])  # non-regular
ROT = rotated(REG, 3)  # rotated basis


def _attn(rep, dtype):
    return eMultiheadAttention(rep, 1, dtype=dtype)


def _channel_bias(dtype):
    bias = ChannelInvariantBias(MIXED, 3, dtype=dtype)
    bias.reset_parameters("uniform")
    return bias


BUILDERS = {
    "InvariantBias": lambda d: InvariantBias(MIXED, init_scheme="uniform", dtype=d),
    "eLinear": lambda d: eLinear(ROT, MIXED, dtype=d),
    "eAffine": lambda d: eAffine(ROT, init_scheme="random", dtype=d),
    "eAffine-film": lambda d: eAffine(MIXED, learnable=False, dtype=d),
    "eDiagonalAffine": lambda d: eDiagonalAffine(REG, init_scheme="random", dtype=d),
    "eRMSNorm": lambda d: eRMSNorm(ROT, init_scheme="random", dtype=d),
    "eLayerNorm": lambda d: eLayerNorm(MIXED, init_scheme="random", dtype=d),
    "eBatchNorm": lambda d: eBatchNorm(ROT, dtype=d),
    "eMultiheadAttention": lambda d: eMultiheadAttention(ROT, 1, dtype=d),
    "eAbsolutePositionalAttention": lambda d: eAbsolutePositionalAttention(REG, 1, max_positions=8, dtype=d),
    "eRelativePositionalAttention": lambda d: eRelativePositionalAttention(REG, 1, max_distance=4, dtype=d),
    "eMLP": lambda d: eMLP(ROT, MIXED, [8], dtype=d),
    "eTransformerEncoderLayer": lambda d: eTransformerEncoderLayer(ROT, _attn(ROT, d), 8, dtype=d),
    "eTransformerDecoderLayer": lambda d: eTransformerDecoderLayer(REG, _attn(REG, d), _attn(REG, d), 8, dtype=d),
    "TransformerStack": lambda d: TransformerStack(eTransformerEncoderLayer(REG, _attn(REG, d), 8, dtype=d), 2),
    "InvariantEmbedding": lambda d: InvariantEmbedding(MIXED, dtype=d),
    "ChannelInvariantBias": lambda d: _channel_bias(d),
    "eCondTransformerRegressor": lambda d: eCondTransformerRegressor(
        ROT, MIXED, G.regular_representation, 3, 2, 1, 1, 8, dtype=d
    ),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_check_equivariance_passes(name, dtype):
    module = BUILDERS[name](dtype)
    err = module.check_equivariance()
    assert err.max_rel < (1e-5 if dtype == torch.float32 else 1e-12)


def test_every_equivariant_module_class_has_a_check_case():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    covered = {type(BUILDERS[name](None)) for name in BUILDERS}
    public = {cls for cls in subclasses(EquivariantModule) if cls.__module__.startswith("symm_layers")}
    assert public <= covered, sorted(c.__name__ for c in public - covered)


def test_check_equivariance_restores_training_mode():
    layer = eTransformerEncoderLayer(REG, _attn(REG, None), 8, dropout=0.5)
    layer.check_equivariance()
    assert layer.training
    layer.eval().check_equivariance()
    assert not layer.training


def test_check_equivariance_takes_atol_and_rtol():
    layer = eLinear(ROT, ROT)  # float32 rounding in a dense rotated basis leaves a nonzero error
    with pytest.raises(AssertionError, match="atol=0.0e\\+00 rtol=0.0e\\+00"):
        layer.check_equivariance(atol=0.0, rtol=0.0)
    layer.check_equivariance(atol=1e-4, rtol=1e-4)


class _Broken(EquivariantModule):
    def __init__(self) -> None:
        super().__init__()
        self.in_rep = self.out_rep = REG
        self.register_buffer("ramp", torch.arange(REG.size, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ramp


def test_check_equivariance_raises_for_a_non_equivariant_module():
    with pytest.raises(AssertionError, match="not equivariant"):
        _Broken().check_equivariance()


def test_plain_stack_has_nothing_to_check():
    stack = TransformerStack(symm_layers.TransformerEncoderLayer(8, 1, 16), 1)
    with pytest.raises(TypeError, match="no group action"):
        stack.check_equivariance()


def test_check_equivariance_runs_in_float64_for_a_double_module():
    err = nn.Module.double(eLinear(ROT, REG)).check_equivariance()
    assert err.max_rel < 1e-12


def test_check_equivariance_samples_elements_of_a_continuous_group():
    in_rep, out_rep = rep_pair("SO2-bandlimited")
    err = eLinear(in_rep, out_rep).check_equivariance(samples=3)
    assert err.max_rel < 1e-5
