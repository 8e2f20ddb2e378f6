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


# ---------------------------------------------------------------------------------------------- clause 1: content
def _fused_optimizers():
    out = []
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad):
        try:
            cls([nn.Parameter(torch.zeros(1))], lr=0.1, fused=True)
        except (RuntimeError, TypeError, ValueError):  # no fused CPU kernel for this optimizer in this torch
            continue
        out.append(cls)
    return out


@pytest.mark.parametrize("form", ["for-loop", "foreach", "fused"])
@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad])
def test_not_stale_after_every_optimizer_form(strategy, opt_cls, form):
    if form == "fused" and opt_cls not in _fused_optimizers():
        pytest.skip(f"{opt_cls.__name__} has no fused CPU kernel in this torch")
    layer = _layer(strategy)
    kwargs = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[form]
    opt = opt_cls(layer.parameters(), lr=0.5, **kwargs)
    x = torch.randn(8, layer.in_features)
    _eval_out(layer, x)
    for _ in range(2):
        layer.train()
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        opt.step()
        torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


@pytest.mark.parametrize("path", ["data", "detach", "numpy", "foreach_ema"])
def test_not_stale_after_edits_that_do_not_bump_the_version(strategy, path):
    layer = _layer(strategy)
    x = torch.randn(3, layer.in_features)
    _eval_out(layer, x)
    params = [layer.weight_dof, layer.bias_module.bias_dof]
    if path == "data":
        for p in params:
            p.data.mul_(0.9).add_(torch.ones_like(p), alpha=0.1)  # the EMA idiom of diffusion-policy code
    elif path == "detach":
        for p in params:
            p.detach().mul_(-1.5)
    elif path == "numpy":
        for p in params:
            p.detach().numpy()[...] += 0.25
    else:
        with torch.no_grad():
            torch._foreach_mul_(params, 0.5)
            torch._foreach_add_(params, [torch.ones_like(p) for p in params], alpha=0.5)
    torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


def test_not_stale_for_an_averaged_model(strategy):
    layer = _layer(strategy)
    averaged = torch.optim.swa_utils.AveragedModel(layer, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
    x = torch.randn(4, layer.in_features)
    opt = torch.optim.SGD(layer.parameters(), lr=0.3)
    for _ in range(3):
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        opt.step()
        averaged.update_parameters(layer)
        torch.testing.assert_close(_eval_out(averaged.module, x), _fresh(averaged.module, x))


def test_not_stale_after_load_state_dict_with_assign(strategy):
    layer, other = _layer(strategy), _layer(strategy)
    x = torch.randn(3, layer.in_features)
    _eval_out(layer, x)
    layer.load_state_dict(other.state_dict(), assign=True)
    torch.testing.assert_close(_eval_out(layer, x), _eval_out(other, x))


# ---------------------------------------------------------------------------------------------- clauses 4, 5, 7
def test_export_leaves_the_eager_module_usable(strategy):
    layer = _layer(strategy).eval()
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        before = layer(x)
    program = torch.export.export(layer, (x,))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), before)
        torch.testing.assert_close(program.module()(x), before)


def test_vmap_ensemble_matches_each_member(strategy):
    members = [_layer(strategy).eval() for _ in range(3)]
    params, buffers = torch.func.stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    x = torch.randn(5, members[0].in_features)

    def call(p, b, inp):
        return torch.func.functional_call(base, (p, b), (inp,))

    with torch.no_grad():
        out = torch.vmap(call, in_dims=(0, 0, None))(params, buffers, x)
        for k, member in enumerate(members):
            torch.testing.assert_close(out[k], member(x))
    assert members[0].weight_cache.cache.builds == 1  # filled by the member's own call only


def test_inference_mode_then_grad_with_respect_to_the_input(strategy):
    layer = _layer(strategy).eval()
    layer.requires_grad_(False)
    x = torch.randn(3, layer.in_features)
    with torch.inference_mode():
        layer(x)  # fills the cache under inference mode
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).sum(), x)
    torch.testing.assert_close(grad, layer.weight.sum(0).expand_as(x))


def test_weight_is_a_copy_not_the_cache(strategy):
    layer = _layer(strategy).eval()
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(0.0)
        layer.bias.mul_(0.0)
        torch.testing.assert_close(layer(x), before)
        torch.testing.assert_close(layer.export()(x), before)


def test_parametrized_dofs_are_read_through_the_parametrization(strategy):
    layer = _layer(strategy)

    class Double(nn.Module):
        def forward(self, dof):
            return 2 * dof

    x = torch.randn(3, layer.in_features)
    expected = x @ (2 * layer.weight.detach()).mT + layer.bias.detach()
    torch.nn.utils.parametrize.register_parametrization(layer, "weight_dof", Double())
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(_eval_out(layer, x), expected)


def test_pruned_dofs_are_read_through_the_mask(strategy):
    layer = _layer(strategy)
    from torch.nn.utils import prune

    prune.l1_unstructured(layer, "weight_dof", amount=0.5)
    x = torch.randn(3, layer.in_features)
    torch.testing.assert_close(_eval_out(layer, x), _fresh(layer, x))


def test_a_pickled_cache_comes_back_empty():
    import pickle

    from symm_layers import DerivedTensorCache

    cache = DerivedTensorCache()
    cache.get((torch.ones(3),), lambda: torch.zeros(2))
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.builds == 0 and clone.get((torch.ones(3),), lambda: torch.ones(2)).sum() == 2
