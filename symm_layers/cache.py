"""The single derived-tensor cache of symm_layers.

Contract (each clause has a test in ``tests/test_cache.py``; ``tests/test_properties.py`` drives random sequences):

1. A cached tensor is returned only while every source tensor is the same object, at the same storage, with the
   same *content* as when the value was built (compared element by element with a snapshot taken then). So it can
   never go stale, whatever changed a source: optimizer steps in any form (fused kernels do not bump
   ``Tensor._version``), in-place edits through the parameter, ``.data``, ``.detach()`` or a numpy view, EMA
   updates, ``load_state_dict`` (also ``assign=True``), ``.to()``, ``to_empty``. The snapshot costs one copy of
   the DoFs (``dim Hom_G``, far below ``D_out * D_in``) and the check one comparison of them per call.
2. Modules clear their caches in ``_apply`` as well, so a change of the derived constants alone also rebuilds.
3. Only calls that record no autograd graph read the cache; a call that records (``train()`` or ``eval()`` with
   gradients enabled) computes through the strategy, so it always produces gradients.
4. While a call is traced or transformed (``torch.compile``, ``torch.export``, ``torch.func`` transforms such as
   ``vmap``/``grad``, fake or other tensor subclasses) the cache is neither read nor written: the value is
   computed through the strategy, so no fake, batched or proxy tensor is ever stored.
5. Values are built outside inference mode, so a value first built under ``torch.inference_mode()`` serves later
   calls that record autograd with respect to the input.
6. Caches are plain attributes, never buffers: the ``state_dict`` does not depend on the cache, the mode, or the
   strategy. A ``copy.deepcopy`` or an unpickled module starts with an empty cache.
7. Tensors handed to users (``layer.weight``, ``layer.bias``) are fresh copies, never the cached value itself, so
   editing them in place cannot change what ``forward`` computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Parameter = torch.nn.Parameter
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_is_compiling = torch.compiler.is_compiling
_BYTES_DTYPES = {torch.float16, torch.float32, torch.float64, torch.int32, torch.int64}


def cacheable(sources: Sequence[torch.Tensor]) -> bool:
    """False while tracing or transforming (compile, export, vmap, fake tensors): never store such values."""
    if _is_compiling():  # first: dynamo cannot trace the functorch query below
        return False
    for t in sources:  # a Parameter is never a functorch wrapper; a plain Tensor may be one (vmap, grad)
        if type(t) is not Parameter and (type(t) is not torch.Tensor or _is_wrapped(t)):
            return False
    return True


def _snapshot(t: torch.Tensor) -> tuple:
    """``(source, data_ptr, live view, reference)`` of a source when a value is built from it.

    On the CPU the reference is the bytes of the tensor and the live view a numpy array on its storage, so the
    per-call check is one ``memcmp`` (0.2 us for 512 DoFs against 1.4 us for ``torch.equal``); elsewhere the
    reference is a copy compared with ``torch.equal``.
    """
    detached = t.detach()
    if detached.device.type == "cpu" and detached.dtype in _BYTES_DTYPES and detached.is_contiguous():
        live = detached.numpy()
        return t, t.data_ptr(), live, live.tobytes()
    return t, t.data_ptr(), None, detached.clone()


class DerivedTensorCache:
    """Holds one value derived from source tensors, rebuilt when any source changes (see the module contract)."""

    __slots__ = ("_snapshots", "_value", "builds")

    def __init__(self) -> None:
        self.clear()
        self.builds = 0

    def get(self, sources: Sequence[torch.Tensor], build: Callable[..., object], *args):
        """Return the value for ``sources``, calling ``build(*args)`` (without autograd) if it is missing or stale.

        Outside plain eager execution (clause 4) the value is built and returned without being stored.
        """
        if _is_compiling():
            with torch.no_grad():
                return build(*args)
        snapshots = self._snapshots
        if len(snapshots) == len(sources):
            # Inlined (this runs on every call). A snapshot holds its source object, so ``is`` cannot match a new
            # object that reuses a freed id: a match means a plain tensor this cache accepted before.
            for t, (source, ptr, live, reference) in zip(sources, snapshots, strict=True):
                if t is not source or t.data_ptr() != ptr:
                    break
                if live.tobytes() != reference if live is not None else not torch.equal(t, reference):
                    break
            else:
                return self._value
        if not cacheable(sources):
            with torch.no_grad():
                return build(*args)
        with torch.inference_mode(False), torch.no_grad():
            self._value = build(*args)
        self._snapshots = tuple(_snapshot(t) for t in sources)
        self.builds += 1
        return self._value

    def clear(self) -> None:
        self._snapshots = ()
        self._value = None

    def __deepcopy__(self, memo):
        return DerivedTensorCache()

    def __reduce__(self):
        return (DerivedTensorCache, ())


def clear_caches(module: torch.nn.Module) -> None:
    """Clear every :class:`DerivedTensorCache` held directly by ``module``."""
    for value in vars(module).values():
        if isinstance(value, DerivedTensorCache):
            value.clear()


def _expand_with_bias(strategy, dof: torch.Tensor, bias) -> tuple[torch.Tensor, torch.Tensor]:
    return strategy.expand(dof), bias[0].expand(bias[1])


class WeightCacheMode(torch.nn.Module):
    """How a layer turns its DoFs into a dense tensor on each call. Holds no parameters or buffers."""

    name: str

    def value(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        """``strategy.expand(dof)`` for internal use (may be the cached tensor: do not hand it out)."""
        raise NotImplementedError

    def weight(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        """The dense tensor ``strategy.expand(dof)`` for users: differentiable when autograd records, else a copy."""
        return self.value(strategy, dof)

    def linear(self, strategy, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        """``x @ W(dof)^T + b`` where ``bias`` is ``None`` or ``(expander, bias_dof)`` with ``b = expander.expand``."""
        raise NotImplementedError

    @staticmethod
    def _compute(strategy, dof, x, bias):
        return strategy.linear(dof, x, bias)

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

    def value(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        if dof.requires_grad and torch.is_grad_enabled():
            return strategy.expand(dof)
        return self.weight_cache.get((dof,), strategy.expand, dof)

    def weight(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        value = self.value(strategy, dof)
        return value if value.requires_grad else value.clone()  # clause 7: never the cached tensor itself

    def linear(self, strategy, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        if torch.is_grad_enabled() and (dof.requires_grad or (bias is not None and bias[1].requires_grad)):
            return self._compute(strategy, dof, x, bias)
        if bias is None:
            return F.linear(x, self.cache.get((dof,), strategy.expand, dof))
        weight, b = self.cache.get((dof, bias[1]), _expand_with_bias, strategy, dof, bias)
        return F.linear(x, weight, b)

    def _apply(self, fn, recurse=True):
        self.cache.clear()
        self.weight_cache.clear()
        return super()._apply(fn, recurse)


class UncachedWeight(WeightCacheMode):
    """Expand on every call, differentiating through the strategy's ``expand``."""

    name = "uncached"

    def value(self, strategy, dof: torch.Tensor) -> torch.Tensor:
        return strategy.expand(dof)

    def linear(self, strategy, dof: torch.Tensor, x: torch.Tensor, bias=None) -> torch.Tensor:
        return self._compute(strategy, dof, x, bias)


WEIGHT_CACHE_MODES: dict[str, type[WeightCacheMode]] = {"cached": CachedWeight, "uncached": UncachedWeight}


def resolve_weight_cache(mode: str) -> WeightCacheMode:
    """Build the weight-cache strategy called ``mode``."""
    if mode not in WEIGHT_CACHE_MODES:
        raise ValueError(f"unknown weight_cache {mode!r}; choose one of {', '.join(WEIGHT_CACHE_MODES)}")
    return WEIGHT_CACHE_MODES[mode]()
