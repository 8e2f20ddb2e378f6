"""eAffine's fast paths against their references: tiled conjugation and the spectral weight and bias."""

from __future__ import annotations

import pytest
import torch
from conftest import ALL_CASES, rep_pair
from escnn import group as eg
from escnn.group import directsum

from symm_layers import eAffine, eLayerNorm, eRMSNorm
from symm_layers.change_of_basis import MAX_OUTER_TILE


def _reference(affine: eAffine, x: torch.Tensor) -> torch.Tensor:
    change = affine.change
    scale = affine.scale_dof.index_select(0, affine.copy_of_local)
    return change.from_spectral(change.to_spectral(x) * scale)


@pytest.mark.parametrize("case", ALL_CASES)
@pytest.mark.parametrize("rows", [1, 300])  # fewer rows than the largest block (GEMMs) and more (tiles)
def test_conjugation_paths_match_reference(case, rows, dtype):
    rep = rep_pair(case)[0]
    affine = eAffine(rep, bias=False, init_scheme="random", dtype=dtype)
    x = torch.randn(rows, rep.size, dtype=dtype, requires_grad=True)
    expected = _reference(affine, x)
    torch.testing.assert_close(affine(x), expected)  # recording call
    with torch.no_grad():  # cached tiles
        torch.testing.assert_close(affine(x), expected.detach())
        torch.testing.assert_close(affine.change.apply_tiles(x, affine._tiles()), expected.detach())


def test_tiles_follow_the_scales_after_an_in_place_edit():
    rep = rep_pair("C8-regular")[0]
    affine = eAffine(rep, init_scheme="random")
    x = torch.randn(4, 3, rep.size)
    with torch.no_grad():
        affine(x)
        affine.scale_dof.mul_(-2.0)
        torch.testing.assert_close(affine(x), _reference(affine, x) + affine.subspace.expand(affine.bias_dof))


def test_tile_gradients_match_reference():
    rep = rep_pair("D8-regular")[1]
    affine = eAffine(rep, bias=False, init_scheme="random", dtype=torch.float64)
    x = torch.randn(64, rep.size, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(affine(x).square().sum(), (x, affine.scale_dof))
    expected = torch.autograd.grad(_reference(affine, x).square().sum(), (x, affine.scale_dof))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_large_blocks_are_built_without_the_outer_product_table():
    G = eg.cyclic_group(2 * MAX_OUTER_TILE)
    rep = directsum([G.regular_representation] * 2)
    affine = eAffine(rep, bias=False, init_scheme="random", dtype=torch.float64)
    tile = next(b for n, b in affine.change.named_buffers() if n.startswith("tile_"))
    assert tile.shape == (2 * MAX_OUTER_TILE, 2 * MAX_OUTER_TILE)
    x = torch.randn(3 * MAX_OUTER_TILE, rep.size, dtype=torch.float64)
    torch.testing.assert_close(affine(x), _reference(affine, x))


@pytest.mark.parametrize("cls", [eRMSNorm, eLayerNorm])
@pytest.mark.parametrize("case", ["C8-regular", "D6-mixed", "D4-rotated"])
def test_spectral_bias_paths_agree(cls, case, dtype):
    rep = rep_pair(case)[0]
    norm = cls(rep, layout="spectral", init_scheme="random", dtype=dtype)
    x = torch.randn(5, 2, rep.size, dtype=dtype)
    recorded = norm(x)  # weight and bias built in the call
    assert recorded.requires_grad
    with torch.no_grad():  # cached dense weight and bias
        torch.testing.assert_close(norm(x), recorded.detach())
