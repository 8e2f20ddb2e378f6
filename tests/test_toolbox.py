"""The torch toolbox on every layer: export, compile, functional_call, vmap ensembles, jacrev, prune/parametrize,
meta-device construction, pickling, deepcopy and inference_mode followed by grad-recording calls."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from layer_zoo import LAYERS, build, output
from torch.func import functional_call, jacrev, stack_module_state, vmap
from torch.nn.utils import parametrize, prune

from symm_layers import BASIS_STRATEGIES

STRATEGIES = [s for s in BASIS_STRATEGIES if s != "reference"]


def _same_function(module, reference, inputs):
    """``module`` and ``reference`` agree on ``inputs`` in eval mode, with and without autograd."""
    module.eval(), reference.eval()
    torch.testing.assert_close(output(module, inputs), output(reference, inputs))
    with torch.no_grad():
        torch.testing.assert_close(output(module, inputs), output(reference, inputs))


# ------------------------------------------------------------------------------------------------ export / compile
@pytest.mark.parametrize("name", LAYERS)
def test_export_matches_eager_and_leaves_it_usable(name):
    module, inputs = build(name)
    module.eval()
    expected = output(module, inputs)
    program = torch.export.export(module, inputs)
    exported = program.module()(*inputs)
    torch.testing.assert_close(exported[0] if isinstance(exported, tuple) else exported, expected)
    torch.testing.assert_close(output(module, inputs), expected)
    with torch.no_grad():
        torch.testing.assert_close(output(module, inputs), expected)


@pytest.mark.parametrize(
    "name",
    [
        *("eLinear", "InvariantBias", "eAffine", "eRMSNorm", "eLayerNorm", "eBatchNorm"),
    ],
)
def test_compile_fullgraph_matches_eager(name):
    module, inputs = build(name)
    compiled = torch.compile(module, fullgraph=True)
    for training in (False, True):
        module.train(training)
        expected = output(module, inputs)
        torch.testing.assert_close(output(compiled, inputs), expected)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(output(compiled, inputs), output(module, inputs))


# ------------------------------------------------------------------------------------------------ torch.func
@pytest.mark.parametrize("name", LAYERS)
def test_functional_call_uses_the_given_parameters(name):
    module, inputs = build(name)
    module.eval()
    before = output(module, inputs).detach()
    params = {k: 2.0 * v.detach() for k, v in module.named_parameters()}
    twin = copy.deepcopy(module)
    twin.load_state_dict(params, strict=False)
    got = functional_call(module, params, inputs)
    torch.testing.assert_close(got[0] if isinstance(got, tuple) else got, output(twin.eval(), inputs))
    torch.testing.assert_close(output(module, inputs), before)


def _ensemble(module, count=3):
    models = [module] + [copy.deepcopy(module) for _ in range(count - 1)]
    with torch.no_grad():
        for k, model in enumerate(models[1:]):
            for p in model.parameters():
                p.mul_(1.5 + k)
    return [m.eval() for m in models]


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("name", LAYERS)
def test_vmap_ensemble_matches_each_model(name, grad):
    module, inputs = build(name)
    models = _ensemble(module)
    params, buffers = stack_module_state(models)

    def call(p, b, *x):
        out = functional_call(module, (p, b), x)
        return out[0] if isinstance(out, tuple) else out

    with torch.set_grad_enabled(grad):
        outs = vmap(call, in_dims=(0, 0) + (None,) * len(inputs))(params, buffers, *inputs)
    for out, model in zip(outs, models, strict=True):
        torch.testing.assert_close(out, output(model, inputs))


def _first_sample(inputs):
    """Inputs for one batch row, and whether the layer is called as self-attention ``(x, x, x)``."""
    is_self_attention = len(inputs) == 3 and inputs[1] is inputs[0]
    rest = tuple(t[:1] if t.dim() else t for t in inputs[1:])
    return inputs[0][:1], rest, is_self_attention


@pytest.mark.parametrize("name", LAYERS)
def test_jacrev_matches_autograd_jacobian(name):
    module, inputs = build(name)
    module.eval()
    x, rest, self_attention = _first_sample(inputs)

    def fn(x):
        return output(module, (x, x, x) if self_attention else (x, *rest))

    torch.testing.assert_close(jacrev(fn)(x), torch.autograd.functional.jacobian(fn, x))


# ------------------------------------------------------------------------------------------------ prune / parametrize
def _dof_parameters(module):
    """``(submodule name, parameter name)`` of every DoF vector and positional table."""
    return [
        (name, p)
        for name, sub in module.named_modules()
        for p, _ in sub.named_parameters(recurse=False)
        if p.endswith("dof") or p == "table"
    ]


@pytest.mark.parametrize("name", LAYERS)
def test_prune_on_dofs_matches_a_twin_holding_the_pruned_values(name):
    module, inputs = build(name)
    twin = copy.deepcopy(module)
    subs, twin_subs = dict(module.named_modules()), dict(twin.named_modules())
    for sub, p in _dof_parameters(module):
        prune.l1_unstructured(subs[sub], p, amount=0.5)
        with torch.no_grad():
            getattr(twin_subs[sub], p).copy_(getattr(subs[sub], p))
    _same_function(module, twin, inputs)


class _Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x


@pytest.mark.parametrize("name", LAYERS)
def test_parametrize_on_dofs_matches_a_twin_holding_the_values(name):
    module, inputs = build(name)
    twin = copy.deepcopy(module)
    subs, twin_subs = dict(module.named_modules()), dict(twin.named_modules())
    for sub, p in _dof_parameters(module):
        parametrize.register_parametrization(subs[sub], p, _Double())
        with torch.no_grad():
            getattr(twin_subs[sub], p).mul_(2.0)
    _same_function(module, twin, inputs)
    output(module.train(), inputs).sum().backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------------ meta device
@pytest.mark.parametrize("name", LAYERS)
def test_meta_construction_to_empty_and_load_state_dict(name):
    reference, inputs = build(name)
    module, _ = build(name, device="meta")
    module.to_empty(device="cpu")
    module.load_state_dict(reference.state_dict())
    _same_function(module, reference, inputs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_meta_construction_rebuilds_index_and_basis_constants(strategy):
    reference, inputs = build("eLinear", basis=strategy)
    module, _ = build("eLinear", basis=strategy, device="meta")
    module.to_empty(device="cpu")
    for name, buffer in reference.named_buffers():
        torch.testing.assert_close(dict(module.named_buffers())[name], buffer, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ copies
@pytest.mark.parametrize("name", LAYERS)
def test_pickle_round_trip_computes_the_same_function(name):
    module, inputs = build(name)
    _same_function(pickle.loads(pickle.dumps(module)), module, inputs)


@pytest.mark.parametrize("name", LAYERS)
def test_torch_save_and_load_whole_module(name):
    module, inputs = build(name)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    _same_function(torch.load(buffer, weights_only=False), module, inputs)


@pytest.mark.parametrize("name", LAYERS)
def test_deepcopy_is_independent_and_shares_the_group(name):
    module, inputs = build(name)
    clone = copy.deepcopy(module)
    _same_function(clone, module, inputs)
    pairs = zip(module.modules(), clone.modules(), strict=True)
    assert all(c.in_rep.group is m.in_rep.group for m, c in pairs if hasattr(m, "in_rep"))
    expected = output(module, inputs).detach()
    with torch.no_grad():
        for p in clone.parameters():
            p.mul_(-3.0)
    torch.testing.assert_close(output(module, inputs), expected)


# ------------------------------------------------------------------------------------------------ inference_mode
@pytest.mark.parametrize("name", LAYERS)
def test_inference_mode_then_grad_recording_calls(name):
    module, inputs = build(name)
    module.eval()
    with torch.inference_mode():
        expected = output(module, inputs)
    x = inputs[0].clone().requires_grad_(True)
    _, _, self_attention = _first_sample(inputs)
    args = (x, x, x) if self_attention else (x, *inputs[1:])
    out = output(module, args)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), expected)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    output(module.train(), args).sum().backward()
    assert all(p.grad is not None for p in module.parameters())
