"""One test per clause of the cache contract in symm_layers/cache.py, for every strategy."""

import copy

import pytest
import torch
from conftest import rep_pair
from torch import nn

from symm_layers import BASIS_STRATEGIES, eLinear
from symm_layers.testing import equivariance_error

STRATEGIES = list(BASIS_STRATEGIES)


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


def _case(*strategies):
    """D6-mixed (non-permutation reps) unless a strategy needs permutation representations."""
    return "D8-permutation-mixed" if "orbit_gather" in strategies else "D6-mixed"


def _layer(strategy, case=None, **kw):
    in_rep, out_rep = rep_pair(case or _case(strategy))
    layer = eLinear(in_rep, out_rep, basis_expansion_scheme=strategy, **kw)
    layer.bias_module.reset_parameters("uniform")
    return layer


def _fresh(layer, x):
    """The output recomputed from the current parameters with no cache at all."""
    weight = layer.basis.strategy.expand(layer.weight_dof.detach())
    bias = layer.bias_module.subspace.expand(layer.bias_module.bias_dof.detach())
    return x @ weight.mT + bias


def _eval_out(layer, x):
    layer.eval()
    with torch.no_grad():
        return layer(x)


def test_repeated_grad_free_calls_build_once(strategy):
    layer = _layer(strategy).eval()
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        layer(x), layer(x), layer(x)
    assert layer.weight_cache.cache.builds == 1


def test_not_stale_after_in_place_edit_under_no_grad(strategy):
    layer = _layer(strategy)
    x = torch.randn(3, layer.in_features)
    _eval_out(layer, x)
    with torch.no_grad():
        layer.weight_dof.mul_(-2.0)
    torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


def test_not_stale_after_optimizer_step_with_eval_between(strategy):
    layer = _layer(strategy)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(8, layer.in_features)
    for _ in range(3):
        layer.train()
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        opt.step()
        torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_not_stale_after_load_state_dict(strategy, mode):
    layer, other = _layer(strategy), _layer(strategy)
    x = torch.randn(3, layer.in_features)
    _eval_out(layer, x)
    layer.train(mode == "train")
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(_eval_out(layer, x), _eval_out(other, x))


def test_not_stale_after_to_double(strategy):
    layer = _layer(strategy)
    x = torch.randn(3, layer.in_features, dtype=torch.float64)
    _eval_out(layer, x.float())
    layer.double()
    out = _eval_out(layer, x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _fresh(layer, x))


def test_not_stale_after_parameter_replacement(strategy):
    layer = _layer(strategy)
    x = torch.randn(3, layer.in_features)
    _eval_out(layer, x)
    layer.weight_dof = nn.Parameter(torch.randn_like(layer.weight_dof))
    torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


def test_deepcopy_is_independent(strategy):
    layer = _layer(strategy)
    x = torch.randn(3, layer.in_features)
    before = _eval_out(layer, x)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        layer.weight_dof.add_(1.0)
    torch.testing.assert_close(_eval_out(twin, x), before)
    torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


def test_grad_enabled_forward_in_eval_mode_yields_gradients(strategy):
    layer = _layer(strategy).eval()
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        layer(x)  # fill the cache
    layer(x).sum().backward()
    assert layer.weight_dof.grad is not None and layer.weight_dof.grad.abs().sum() > 0
    assert layer.bias_module.bias_dof.grad is not None


def test_gradients_match_the_uncached_layer(strategy):
    cached, uncached = _layer(strategy), _layer(strategy, weight_cache="uncached")
    uncached.load_state_dict(cached.state_dict())
    x = torch.randn(5, cached.in_features)
    for layer in (cached, uncached):
        layer.eval()
        layer(x).pow(2).sum().backward()
    torch.testing.assert_close(cached.weight_dof.grad, uncached.weight_dof.grad)


def test_state_dict_is_the_same_in_train_and_eval(strategy):
    layer = _layer(strategy)
    train_state = {k: v.clone() for k, v in layer.train().state_dict().items()}
    with torch.no_grad():
        layer.eval()(torch.randn(2, layer.in_features))
    eval_state = layer.state_dict()
    assert train_state.keys() == eval_state.keys() == {"weight_dof", "bias_module.bias_dof"}
    for key in train_state:
        torch.testing.assert_close(train_state[key], eval_state[key])


@pytest.mark.parametrize("target", STRATEGIES)
def test_state_dict_loads_across_strategies(strategy, target):
    source = _layer(strategy, _case(strategy, target))
    x = torch.randn(8, source.in_features)
    opt = torch.optim.Adam(source.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        source(x).pow(2).mean().backward()
        opt.step()
    other = _layer(target, _case(strategy, target), weight_cache="uncached")
    other.load_state_dict(source.state_dict())
    torch.testing.assert_close(_eval_out(other, x), _eval_out(source, x))


def test_float64_construction_is_tight(strategy):
    in_rep, out_rep = rep_pair("D8-permutation-mixed" if strategy == "orbit_gather" else "D4-rotated")
    for layer in (
        eLinear(in_rep, out_rep, basis_expansion_scheme=strategy, dtype=torch.float64),
        eLinear(in_rep, out_rep, basis_expansion_scheme=strategy).double(),
    ):
        layer.eval()
        err = equivariance_error(layer, in_rep, out_rep, dtype=torch.float64)
        assert err.max_rel <= 1e-12


def test_inference_mode_uses_the_cache(strategy):
    layer = _layer(strategy).eval()
    x = torch.randn(3, layer.in_features)
    with torch.inference_mode():
        out = layer(x)
    torch.testing.assert_close(out, _fresh(layer, x))


def test_frozen_weight_still_trains_the_bias(strategy):
    layer = _layer(strategy).eval()
    layer.weight_dof.requires_grad_(False)
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        layer(x)  # fill the cache
    layer(x).sum().backward()
    assert layer.bias_module.bias_dof.grad is not None and layer.bias_module.bias_dof.grad.abs().sum() > 0
