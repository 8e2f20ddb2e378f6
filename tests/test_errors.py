"""Errors that name the fix where torch's bare errors used to leak."""

from __future__ import annotations

import functools

import pytest
import torch
from escnn import group as eg
from escnn.group import directsum
from torch import nn

import symm_layers as sl


@functools.cache
def rep():
    G = eg.cyclic_group(4)
    return directsum([G.regular_representation] * 2)


def _attn():
    return sl.eMultiheadAttention(rep(), 1)


#: Every public constructor taking representations, called with the int 24 in the place of one.
CONSTRUCTORS = {
    "eLinear-in": lambda r: sl.eLinear(r, rep()),
    "eLinear-out": lambda r: sl.eLinear(rep(), r),
    "InvariantBias": lambda r: sl.InvariantBias(r),
    "eAffine": lambda r: sl.eAffine(r),
    "eRMSNorm": lambda r: sl.eRMSNorm(r),
    "eLayerNorm": lambda r: sl.eLayerNorm(r),
    "eBatchNorm": lambda r: sl.eBatchNorm(r),
    "eMultiheadAttention": lambda r: sl.eMultiheadAttention(r, 2),
    "eAbsolutePositionalAttention": lambda r: sl.eAbsolutePositionalAttention(r, 2, 8),
    "eRelativePositionalAttention": lambda r: sl.eRelativePositionalAttention(r, 2, 4),
    "eTransformerEncoderLayer": lambda r: sl.eTransformerEncoderLayer(r, _attn()),
    "eTransformerDecoderLayer": lambda r: sl.eTransformerDecoderLayer(r, _attn(), _attn()),
    "eMLP": lambda r: sl.eMLP(r, rep(), [8]),
    "eCondTransformerRegressor": lambda r: sl.eCondTransformerRegressor(r, rep(), None, 4, 2, 1, 1, 8),
    "GroupHomomorphismBasis": lambda r: sl.GroupHomomorphismBasis(rep(), r),
    "impose_linear_equivariance": lambda r: sl.impose_linear_equivariance(nn.Linear(8, 24), rep(), r),
    "decompose": lambda r: sl.decompose(r),
}


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_int_instead_of_a_representation_says_how_to_build_one(name):
    with pytest.raises(TypeError, match="must be an escnn Representation.*got int 24.*directsum"):
        CONSTRUCTORS[name](24)


def test_elinear_of_ints_shows_a_representation_of_that_size():
    with pytest.raises(TypeError) as info:
        sl.eLinear(24, 16)
    message = str(info.value)
    assert "in_rep" in message and "cyclic_group(8)" in message
    assert "directsum([G.regular_representation] * 3)" in message


@pytest.mark.parametrize("plain", [False, True], ids=["equivariant", "plain"])
@pytest.mark.parametrize("shape", [(3, 2), (3, 1), (2,)])
def test_regressor_opt_step_of_the_wrong_shape(plain, shape):
    G = eg.cyclic_group(4)
    r = G.regular_representation
    if plain:
        model = sl.CondTransformerRegressor(4, 4, 4, 4, 2, 1, 1, 8)
    else:
        model = sl.eCondTransformerRegressor(r, r, None, 4, 2, 1, 1, 8)
    X, Z = torch.randn(3, 4, 4), torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match=f"opt_step of shape \\({shape[0]}, ?{shape[1] if len(shape) > 1 else ''}"):
        model(X, torch.zeros(shape), Z)
    assert model(X, torch.zeros(3), Z).shape == X.shape  # one step per row is fine, as is a scalar
    assert model(X, 5, Z).shape == X.shape


def _external():
    return sl.eLinear(rep(), rep(), external_weights=True)


@pytest.mark.parametrize("dof_shape", [(5, 3), (2, 5, 7)], ids=["wrong-last-dim", "leading-dims-do-not-broadcast"])
def test_external_weight_dof_of_the_wrong_shape(dof_shape):
    layer = _external()
    shape = (*dof_shape[:-1], layer.basis.dim) if dof_shape[-1] == 7 else dof_shape
    with pytest.raises(ValueError, match=f"weight_dof of shape \\(\\.\\.\\., {layer.basis.dim}\\).*\\(5,"):
        layer(torch.randn(5, rep().size), weight_dof=torch.randn(shape))


def test_external_weight_dof_broadcasting_over_rows_is_accepted():
    layer = _external()
    x = torch.randn(5, rep().size)
    one = torch.randn(layer.basis.dim)
    torch.testing.assert_close(layer(x, weight_dof=one), layer(x, weight_dof=one.expand(5, -1)))


def _indexed():
    return sl.eLinear(rep(), rep(), num_indexed_weights=3)


@pytest.mark.parametrize("bad", [3, -1])
def test_weight_index_out_of_range(bad):
    index = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match="must lie in \\[0, num_indexed_weights=3\\).*larger num_indexed_weights"):
        _indexed()(torch.randn(4, rep().size), weight_index=index)


def test_weight_index_of_the_wrong_shape():
    with pytest.raises(ValueError, match="weight_index of shape \\(3,\\) does not broadcast.*\\(4,\\)"):
        _indexed()(torch.randn(4, rep().size), weight_index=torch.tensor([0, 1, 2]))


def test_weight_index_of_floats():
    with pytest.raises(ValueError, match="integers.*float32.*long"):
        _indexed()(torch.randn(4, rep().size), weight_index=torch.zeros(4))


@pytest.mark.parametrize("instance", [False, True])
def test_batchnorm_of_a_single_vector_shows_the_shape_received(instance):
    norm = sl.eBatchNorm(rep(), instance=instance)
    x = torch.randn(rep().size) if not instance else torch.randn(2, rep().size)
    with pytest.raises(ValueError, match=f"x of shape {tuple(x.shape)}".replace("(", "\\(").replace(")", "\\)")):
        norm(x)
