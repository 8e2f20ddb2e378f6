"""The eager RMS-norm node of symm_layers.rms against its composite reference."""

import pytest
import torch

from symm_layers.rms import _CentredRMSNorm, reference, rms_norm

SHAPES = [(7, 12), (2, 3, 12), (12,)]


def _direction(dtype):
    u = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return u / u.norm()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("centred", [False, True])
def test_values_and_gradients_match_reference(dtype, shape, centred):
    direction = _direction(dtype) if centred else None
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    upstream = torch.randn(shape, dtype=dtype)
    out = rms_norm(x, 1e-5, direction)
    assert out.grad_fn is not None and "CentredRMSNorm" in type(out.grad_fn).__name__
    expected = reference(x, 1e-5, direction)
    torch.testing.assert_close(out, expected)
    (got,) = torch.autograd.grad(out, x, upstream)
    (want,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("centred", [False, True])
def test_second_derivative_matches_reference(centred):
    direction = _direction(torch.float64) if centred else None
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 12, dtype=torch.float64)

    def grad_norm(fn):
        (g,) = torch.autograd.grad(fn(x, 1e-5, direction), x, upstream, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), x)[0]

    torch.testing.assert_close(grad_norm(rms_norm), grad_norm(reference))


def test_gradcheck_in_double():
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _CentredRMSNorm.apply(t, _direction(torch.float64), 1e-5), (x,))


@pytest.mark.parametrize("centred", [False, True])
def test_no_grad_path_matches_reference(centred):
    direction = _direction(torch.float32) if centred else None
    x = torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(rms_norm(x, 1e-5, direction), reference(x, 1e-5, direction))


def test_in_place_edit_of_output_keeps_backward_valid():
    # The node saves the input and 1/rms only, so editing its output (a residual add) leaves the gradient intact.
    x = torch.randn(4, 12, requires_grad=True)
    out = rms_norm(x, 1e-5, _direction(torch.float32))
    out += 1.0
    (got,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(reference(x, 1e-5, _direction(torch.float32)).sum(), x)
    torch.testing.assert_close(got, want)


def test_transforms_use_the_composite_path():
    direction = _direction(torch.float32)
    x = torch.randn(3, 12)
    got = torch.func.vmap(torch.func.grad(lambda t: rms_norm(t, 1e-5, direction).pow(3).sum()))(x)
    want = torch.func.vmap(torch.func.grad(lambda t: reference(t, 1e-5, direction).pow(3).sum()))(x)
    torch.testing.assert_close(got, want)
