"""What the asv suites ``bench_*.py`` share: parameter grids, memoised cases and the suite base class.

Not a suite: asv imports every module under ``benchmarks/``, and the only benchmark-shaped class here,
:class:`FamilySuite`, is abstract, so asv collects nothing from this file.

Conventions (numpy/scipy asv style):

- every suite has an ``impl`` axis with the plain-torch twin (``"torch"``) beside each strategy;
- quick grids by default, the full grid with ``SYMM_BENCH_FULL=1`` in the environment;
- ``time_*`` and ``peakmem_*`` are CPU measurements (1 thread, float32); GPU timings are ``track_cuda_*_ms``
  (``torch.utils.benchmark.Timer``, which synchronises the device) and GPU memory ``track_cuda_forward_peak_bytes``;
- a combination that cannot run (no GPU, a dense basis over the limit, heads splitting an irrep copy) is skipped,
  never replaced by another implementation.

asv_runner 0.3 runs ``setup`` again before every timed call, so the module under test and its inputs are built
once per process by :func:`case_for` (an ``lru_cache``) and ``setup`` only looks them up.
"""

from __future__ import annotations

import abc
import functools
import itertools
import os
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from asv_runner.benchmarks.mark import skip_benchmark_if
from escnn.group import Representation
from torch import nn
from torch.utils import benchmark as torch_benchmark

from symm_layers.attention import valid_num_heads
from symm_layers.basis import DEFAULT_MAX_BASIS_BYTES, hom_space
from symm_layers.testing import equivariance_error

from .common import build_group
from .common import regular_rep as regular_rep  # re-exported for the suites

FULL = os.environ.get("SYMM_BENCH_FULL") == "1"
GROUPS = ["C8", "D8", "ico"]
DEVICES = ["cpu", "cuda"]
BASELINE = "torch"
#: ``basis_expansion_scheme/weight_cache`` of the layers that take both, beside the plain-torch twin.
STRATEGIES = [BASELINE, "isotypic_expansion/cached", "isotypic_expansion/uncached", "memory_heavy/cached"]
#: For layers without a strategy choice: the plain twin and the equivariant layer.
EQUIVARIANT = "equivariant"
PLAIN_OR_EQUIVARIANT = [BASELINE, EQUIVARIANT]
#: The quick grid keeps memory_heavy to stacks of at most 256 MiB (C8/D8 at D=256 need 1-2 GiB and ~10 s to build);
#: the full grid uses the library's own limit.
DENSE_BASIS_LIMIT = DEFAULT_MAX_BASIS_BYTES if FULL else 256 * 1024**2
#: Queried through NVML, which does not initialise CUDA: asv's forkserver parent imports this module, and a
#: process that initialised CUDA cannot fork children that use it.
HAS_CUDA = torch.cuda.device_count() > 0
CUDA_MIN_RUN_S = 0.2
SEED = 0


def grid(quick: list, full: list) -> list:
    """The values of one parameter axis: ``full`` when ``SYMM_BENCH_FULL=1``, else ``quick``."""
    return list(full if FULL else quick)


def _warm_up() -> None:
    """Pay one-time costs here, at import, so that the processes asv forks from its forkserver share them.

    escnn builds the icosahedral group from its disk cache in ~1.5 s, and torch's first backward with an explicit
    gradient imports sympy (through ``torch.fx``) in ~0.4 s; each would otherwise be paid again by every benchmark.
    The backward is elementwise on a 2x2 tensor, so no thread pool starts before the fork.
    """
    for name in GROUPS:
        build_group(name)
    x = torch.ones(2, 2, requires_grad=True)
    (x * x).backward(torch.ones(2, 2))


_warm_up()


# ----------------------------------------------------------------------------------------------- availability
def require_device(device: str) -> None:
    if device == "cuda" and not HAS_CUDA:
        raise NotImplementedError("no CUDA device")


def strategy(impl: str) -> dict[str, str]:
    """``"isotypic_expansion/cached"`` -> the keyword arguments of the layers that take a strategy."""
    scheme, cache = impl.split("/")
    return {"basis_expansion_scheme": scheme, "weight_cache": cache}


def require_dense_basis(impl: str, *maps: tuple[Representation, Representation]) -> None:
    """Skip memory_heavy when one of the layer's ``(in_rep, out_rep)`` maps needs a float32 stack over the limit."""
    if not impl.startswith("memory_heavy"):
        return
    for in_rep, out_rep in maps:
        need = hom_space(in_rep, out_rep).dim * in_rep.size * out_rep.size * 4
        if need > DENSE_BASIS_LIMIT:
            raise NotImplementedError(
                f"memory_heavy basis for {in_rep.size} -> {out_rep.size} needs {need / 2**20:.0f} MiB, over the "
                f"benchmark limit of {DENSE_BASIS_LIMIT / 2**20:.0f} MiB"
            )


def require_heads(impl: str, rep: Representation, num_heads: int) -> None:
    """Skip equivariant attention whose heads would split a component of ``rep`` (the layer refuses them)."""
    if impl != BASELINE and num_heads not in valid_num_heads(rep):
        raise NotImplementedError(f"num_heads={num_heads} splits a component of {rep.name}")


def clear_layer_memos() -> None:
    """Forget symm_layers' memoised decompositions and Hom spaces, so the next construction starts cold.

    escnn's groups and representations stay built: they belong to the benchmark's inputs, not to the layer.
    Commits older than these memos have nothing to clear.
    """
    import symm_layers.basis.space as space
    import symm_layers.reps as reps

    for memo in (getattr(reps, "_decompose", None), getattr(space, "_hom_space", None)):
        if hasattr(memo, "cache_clear"):
            memo.cache_clear()


# ----------------------------------------------------------------------------------------------- cases
def randn(*shape: int, device: str, seed: int = SEED) -> torch.Tensor:
    """Seeded standard normal inputs, drawn on the CPU (the same values on every device)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


@dataclass(frozen=True, eq=False)
class Case:
    """One module under test on fixed inputs.

    Attributes:
        construct: builds a fresh module (what ``time_construction`` times).
        module: one module built by ``construct``, on the benchmark's device.
        forward: runs ``module`` on the inputs; returns the output the train step back-propagates.
        grad: a fixed upstream gradient for that output.
        on_features: for equivariant modules, ``x -> f(x)`` on features ``(..., in_rep.size)`` (``probe``
            shaped), with ``in_rep`` and ``out_rep``; ``None`` for the plain baseline.
    """

    construct: Callable[[], nn.Module]
    module: nn.Module
    forward: Callable[[], torch.Tensor]
    grad: torch.Tensor
    on_features: Callable[[torch.Tensor], torch.Tensor] | None = None
    probe: torch.Tensor | None = None
    in_rep: Representation | None = None
    out_rep: Representation | None = None

    def train_step(self) -> None:
        """``zero_grad(set_to_none=True)``, forward, backward of the fixed upstream gradient."""
        self.module.zero_grad(set_to_none=True)
        self.forward().backward(self.grad)

    def eval_forward(self) -> torch.Tensor:
        with torch.no_grad():
            return self.forward()


def make_case(
    construct: Callable[[], nn.Module],
    call: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    *,
    on_features: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    probe: torch.Tensor | None = None,
    reps: tuple[Representation, Representation] | None = None,
) -> Case:
    """Build the module (seeded) and wrap it with its inputs.

    Args:
        construct: zero-argument module factory.
        call: ``call(module, *inputs)`` -> output tensor.
        on_features: ``(module, x) -> f(x)`` for the equivariance check on ``probe``, with ``reps = (in, out)``.
    """
    torch.manual_seed(SEED)
    module = construct()
    forward = functools.partial(call, module, *inputs)
    with torch.no_grad():
        grad = torch.randn_like(forward())
    # Warm both paths, since ``--quick`` times one call without warm-up: first calls initialise kernels lazily, and
    # the first no-grad call builds a cached weight.
    forward().backward(grad)
    module.zero_grad(set_to_none=True)
    features = None if on_features is None else functools.partial(on_features, module)
    in_rep, out_rep = reps if reps is not None else (None, None)
    return Case(construct, module, forward, grad, features, probe, in_rep, out_rep)


@functools.lru_cache(maxsize=2)
def case_for(suite: type[FamilySuite], params: tuple) -> Case:
    """The memoised case of one parameter combination (``NotImplementedError`` where it cannot run)."""
    spec = dict(zip(suite.param_names, params, strict=True))
    require_device(spec["device"])
    return suite.make_case(**spec)


# ----------------------------------------------------------------------------------------------- suite base class
@dataclass(frozen=True)
class Scope:
    """Where a benchmark method applies and how the module must be prepared for it.

    Attributes:
        device: run only for this value of the ``device`` parameter (``None``: every device).
        equivariant_only: skip the plain-torch baseline (e.g. an equivariance error means nothing for it).
        mode: put the memoised module in ``"train"`` or ``"eval"`` mode before each call.
        cold: forget symm_layers' memos before each call (construction from scratch).
    """

    device: str | None = None
    equivariant_only: bool = False
    mode: str | None = None
    cold: bool = False

    def applies(self, spec: dict) -> bool:
        if self.device is not None and spec["device"] != self.device:
            return False
        return not (self.equivariant_only and spec["impl"] == BASELINE)

    def prepare(self, suite: type[FamilySuite], *params) -> None:
        """asv calls this after the suite's ``setup``, with the benchmark's parameters."""
        if self.cold:
            clear_layer_memos()
        if self.mode is not None:
            case_for(suite, params).module.train(self.mode == "train")


def scoped(**options) -> Callable[[Callable], Callable]:
    """Attach a :class:`Scope` to a :class:`FamilySuite` benchmark method."""

    def mark(method: Callable) -> Callable:
        method.scope = Scope(**options)
        return method

    return mark


def _specialise(method: Callable, suite: type[FamilySuite]) -> Callable:
    """A copy of ``method`` for ``suite`` that asv skips outside its scope and prepares with ``Scope.prepare``.

    The copy runs the same code object (no wrapper call inside the timed operation). Parameter combinations outside
    the scope go to asv's ``skip_params``, which asv checks before ``setup``; the preparation goes to the method's
    own ``setup`` attribute, which asv runs after the class's ``setup``.
    """
    copy = types.FunctionType(
        method.__code__, method.__globals__, method.__name__, method.__defaults__, method.__closure__
    )
    copy.__dict__.update(method.__dict__)
    copy.__qualname__ = f"{suite.__qualname__}.{method.__name__}"
    scope: Scope = method.scope
    combos = itertools.product(*suite.params)
    copy.skip_params = [c for c in combos if not scope.applies(dict(zip(suite.param_names, c, strict=True)))]
    if scope.cold or scope.mode is not None:
        copy.setup = functools.partial(scope.prepare, suite)
    return copy


class FamilySuite(abc.ABC):
    """Every metric of one layer family over an ``(impl, ..., device)`` grid.

    Subclasses set ``params``/``param_names`` (with ``impl`` and ``device`` among them) and implement
    :meth:`make_case`. CPU metrics skip ``device="cuda"``; the ``track_cuda_*`` metrics skip ``device="cpu"``
    and are not collected at all on machines without a GPU.
    """

    params: list[list]
    param_names: list[str]
    timeout = 300

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            method = None if name.startswith("_") else getattr(cls, name)
            if callable(method) and isinstance(getattr(method, "scope", None), Scope):
                setattr(cls, name, _specialise(method, cls))

    @staticmethod
    @abc.abstractmethod
    def make_case(**spec) -> Case:
        """Build the case for one parameter combination; raise ``NotImplementedError`` where it cannot run."""

    def setup(self, *params) -> None:
        torch.set_num_threads(1)
        self.case = case_for(type(self), params)

    # ------------------------------------------------------------------------------------------- CPU
    @scoped(device="cpu", mode="eval")
    def time_eval_forward(self, *params) -> None:
        self.case.eval_forward()

    @scoped(device="cpu", mode="train")
    def time_train_step(self, *params) -> None:
        self.case.train_step()

    @scoped(device="cpu", cold=True)
    def time_construction(self, *params) -> None:
        self.case.construct()

    time_construction.warmup_time = 0.0
    time_construction.repeat = (1, 5, 10.0)

    @scoped(device="cpu", mode="eval")
    def peakmem_forward(self, *params) -> None:
        self.case.eval_forward()

    @scoped(device="cpu")
    def track_param_bytes(self, *params) -> int:
        return sum(p.numel() * p.element_size() for p in self.case.module.parameters())

    track_param_bytes.unit = "bytes"

    @scoped(device="cpu")
    def track_buffer_bytes(self, *params) -> int:
        return sum(b.numel() * b.element_size() for b in self.case.module.buffers())

    track_buffer_bytes.unit = "bytes"

    # ------------------------------------------------------------------------------------------- any device
    @scoped(equivariant_only=True, mode="eval")
    def track_equivariance_error(self, *params) -> float:
        case = self.case
        return equivariance_error(case.on_features, case.in_rep, case.out_rep, case.probe).max_rel

    track_equivariance_error.unit = "relative"

    # ------------------------------------------------------------------------------------------- CUDA
    @skip_benchmark_if(not HAS_CUDA)
    @scoped(device="cuda", mode="eval")
    def track_cuda_eval_forward_ms(self, *params) -> float:
        return cuda_ms(self.case.eval_forward)

    track_cuda_eval_forward_ms.unit = "ms"

    @skip_benchmark_if(not HAS_CUDA)
    @scoped(device="cuda", mode="train")
    def track_cuda_train_step_ms(self, *params) -> float:
        return cuda_ms(self.case.train_step)

    track_cuda_train_step_ms.unit = "ms"

    @skip_benchmark_if(not HAS_CUDA)
    @scoped(device="cuda", mode="eval")
    def track_cuda_forward_peak_bytes(self, *params) -> int:
        """Peak of ``torch.cuda.max_memory_allocated`` over one eval forward (module and inputs included)."""
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.case.eval_forward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()

    track_cuda_forward_peak_bytes.unit = "bytes"


def cuda_ms(fn: Callable[[], object]) -> float:
    """Median milliseconds per call, ``torch.utils.benchmark.Timer`` (synchronises the device around each block)."""
    timer = torch_benchmark.Timer(stmt="fn()", globals={"fn": fn})
    return timer.blocked_autorange(min_run_time=CUDA_MIN_RUN_S).median * 1e3
