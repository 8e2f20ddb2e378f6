"""The single derived-tensor cache of symm_layers.

Contract (each clause has a test in ``tests/test_cache.py``):

1. A cached tensor is returned only while every source tensor is the same object, with the same ``_version``
   and storage pointer as when it was built (a new dtype or device means new storage). In-place edits
   (``optimizer.step()``, ``copy_`` under ``no_grad``, ``load_state_dict``) bump ``_version``; ``.to()``,
   ``.double()`` and parameter replacement change the identity or the storage; none can leave it stale.
2. Modules clear their caches in ``_apply`` as well, so a change of the derived constants alone also rebuilds.
3. Only calls that record no autograd graph read the cache; a call that records (``train()`` or ``eval()`` with
   gradients enabled) computes through the strategy, so it always produces gradients.
4. Caches are plain attributes, never buffers: the ``state_dict`` does not depend on the cache, the mode, or the
   strategy. A ``copy.deepcopy`` starts with an empty cache (its parameters are new objects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def fingerprint(sources: Sequence[torch.Tensor]) -> tuple:
    """The identity, version and storage pointer of every source tensor.

    A change of dtype or device allocates new storage (and ``.to()`` also clears caches), so the pointer covers
    both; reading ``dtype``/``device`` objects on every call would double the cost of an inference call.
    """
    key = ()
    for t in sources:
        key += (id(t), t._version, t.data_ptr())
    return key


class DerivedTensorCache:
    """Holds one value derived from source tensors, rebuilt when any source changes."""

    __slots__ = ("_key", "_value", "builds")

    def __init__(self) -> None:
        self._key = None
        self._value = None
        self.builds = 0

    def get(self, sources: Sequence[torch.Tensor], build: Callable[[], object]):
        """Return the cached value for ``sources``, calling ``build()`` (without autograd) if it is stale."""
        key = fingerprint(sources)
        if key != self._key:
            with torch.no_grad():
                self._value = build()
            self._key = key
            self.builds += 1
        return self._value

    def clear(self) -> None:
        self._key = None
        self._value = None

    def __deepcopy__(self, memo):
        # The copy's sources are new objects, so the key would never match again: start empty.
        return DerivedTensorCache()


def clear_caches(module: torch.nn.Module) -> None:
    """Clear every :class:`DerivedTensorCache` held directly by ``module``."""
    for value in vars(module).values():
        if isinstance(value, DerivedTensorCache):
            value.clear()


class WeightCacheMode(torch.nn.Module):
    """How a layer turns its DoFs into a dense tensor on each call. Holds no parameters or buffers."""

    name: str

    def weight(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        """The dense tensor ``strategy.expand(dof)``, differentiable when autograd records."""
        raise NotImplementedError

    def linear(self, strategy, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        """``x @ W(dof)^T + b`` where ``bias`` is ``None`` or ``(expander, bias_dof)`` with ``b = expander.expand``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return self.name


class CachedWeight(WeightCacheMode):
    """Reuse the expanded tensor while the DoFs are unchanged, for calls that record no autograd graph.

    A call that records autograd (training, or ``eval()`` with gradients enabled) computes through the strategy
    instead, so gradients are always produced; the DoFs change at every optimiser step anyway.
    """

    name = "cached"

    def __init__(self) -> None:
        super().__init__()
        self.cache = DerivedTensorCache()  # what linear() uses: the weight, or (weight, bias)
        self.weight_cache = DerivedTensorCache()  # what weight() returns

    def weight(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        if dof.requires_grad and torch.is_grad_enabled():
            return strategy.expand(dof)
        return self.weight_cache.get((dof,), lambda: strategy.expand(dof))

    def linear(self, strategy, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        records = dof.requires_grad or (bias is not None and bias[1].requires_grad)
        if records and torch.is_grad_enabled():
            out = strategy.apply(dof, x)
            return out if bias is None else out + bias[0].expand(bias[1])
        if bias is None:
            return F.linear(x, self.cache.get((dof,), lambda: strategy.expand(dof)))
        weight, b = self.cache.get((dof, bias[1]), lambda: (strategy.expand(dof), bias[0].expand(bias[1])))
        return F.linear(x, weight, b)

    def _apply(self, fn, recurse=True):
        self.cache.clear()
        self.weight_cache.clear()
        return super()._apply(fn, recurse)


class UncachedWeight(WeightCacheMode):
    """Expand on every call, differentiating through the strategy's ``expand``."""

    name = "uncached"

    def weight(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        return strategy.expand(dof)

    def linear(self, strategy, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        out = strategy.apply(dof, x)
        return out if bias is None else out + bias[0].expand(bias[1])


WEIGHT_CACHE_MODES: dict[str, type[WeightCacheMode]] = {"cached": CachedWeight, "uncached": UncachedWeight}


def resolve_weight_cache(mode: str) -> WeightCacheMode:
    """Build the weight-cache strategy called ``mode``."""
    if mode not in WEIGHT_CACHE_MODES:
        raise ValueError(f"unknown weight_cache {mode!r}; choose one of {', '.join(WEIGHT_CACHE_MODES)}")
    return WEIGHT_CACHE_MODES[mode]()
