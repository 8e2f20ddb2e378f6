"""What the asv suites ``bench_*.py`` share: parameter grids, memoised cases and the suite base class.

Not a suite: asv imports every module under ``benchmarks/``, and the only benchmark-shaped class here,
:class:`FamilySuite`, is abstract, so asv collects nothing from this file.

Conventions (numpy/scipy asv style):

- every suite has an ``impl`` axis with the plain-torch twin (``"torch"``) beside each strategy;
- quick grids by default, the full grid with ``SYMM_BENCH_FULL=1`` in the environment and the small grid of
  ``make results`` with ``SYMM_BENCH_SMALL=1`` (groups C8 and D8, one value of every other axis, one asv round);
- ``time_*`` and ``peakmem_*`` are CPU measurements (1 thread, float32); GPU timings are ``track_cuda_*_ms``
  (``torch.utils.benchmark.Timer``, which synchronises the device) and GPU memory ``track_cuda_forward_peak_bytes``;
- a combination that cannot run (no GPU, a dense basis over the limit, heads splitting an irrep copy) is skipped,
  never replaced by another implementation.

Sampling. asv_runner 0.3 (asv#966) changed what a ``setup`` hook does to ``time_*`` benchmarks: it re-runs the hook
before every timed call and so times one call per sample, which measures call overhead and cold caches rather than the
layer. Our hooks only look up the case of the process (built once by :func:`case_for`, an ``lru_cache``) and set the
module's train/eval mode, state that no timed call changes, so :func:`_classic_time_sampling` restores asv's
calibrated sampling: calls per sample chosen so that a sample lasts >= ``sample_time`` (10 ms), ``setup`` between
samples only. ``time_construction`` keeps one cold call per sample (``number = 1``), its setup clearing the memos.
"""

from __future__ import annotations

import abc
import functools
import itertools
import os
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from asv_runner.benchmarks import time as asv_time
from asv_runner.benchmarks.mark import skip_benchmark_if
from escnn.group import Representation
from torch.utils import benchmark as torch_benchmark

from symm_layers.attention import valid_num_heads
from symm_layers.basis import DEFAULT_MAX_BASIS_BYTES, hom_space
from symm_layers.testing import equivariance_error

from .cases import LINEAR_IMPLS, Case, clear_layer_memos, make_case, randn, strategy
from .cases import SEED as SEED
from .common import build_group
from .common import regular_rep as regular_rep  # re-exported for the suites

__all__ = ["Case", "clear_layer_memos", "make_case", "randn", "strategy"]  # re-exported from .cases

FULL = os.environ.get("SYMM_BENCH_FULL") == "1"
#: The smoke-sized grid of ``make results`` (its whole pipeline fits in ~25 min on 2 cores): every suite, strategy and
#: metric, on a cyclic and a dihedral group (at D = 64 ico's one regular copy cannot split into the attention suites'
#: heads; ico is left to the quick grid and to the other steps of make results), one value of each size axis (see
#: :func:`grid`) and one asv round of the ``time_*`` benchmarks (``FamilySuite.rounds``). The published tables
#: (``make results-full``) use the quick grid.
SMALL = not FULL and os.environ.get("SYMM_BENCH_SMALL") == "1"
GROUPS = ["C8", "D8"] if SMALL else ["C8", "D8", "ico"]
DEVICES = ["cpu", "cuda"]
BASELINE = "torch"
#: ``basis_expansion_scheme/weight_cache`` of the layers that take both, beside the plain-torch twin: the default
#: (``auto``, resolved per representation pair) and the fixed strategies (attention and the models).
STRATEGIES = [BASELINE, "auto/cached", "isotypic_expansion/cached", "isotypic_expansion/uncached",
              "memory_heavy/cached"]  # fmt: skip
#: The linear suite: every strategy (``orbit_gather`` too), the plain twin and the peer ``escnn.nn.Linear``
#: (``cases.LINEAR_IMPLS``, the same implementations as ``linear_family.py``).
LINEAR_STRATEGIES = list(LINEAR_IMPLS)
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
#: Clock of the CPU ``time_train_step``/``time_eval_forward`` samples (asv's ``timer`` attribute): the calling
#: thread's CPU time. With one torch thread every op, the backward too, runs on it, and time spent waiting for a core
#: on a shared machine is left out (``common.CLOCKS``; linear_family.py and decision_maps.py use the same clock).
#: Construction keeps asv's wall clock (it may read escnn's disk cache).
CPU_TIMER = time.thread_time


def grid(quick: list, full: list, small: list | None = None) -> list:
    """The values of one parameter axis: ``full`` when ``SYMM_BENCH_FULL=1``; when ``SYMM_BENCH_SMALL=1``, ``small``
    (default: the first value of ``quick``); else ``quick``."""
    if FULL:
        return list(full)
    return list(quick[:1] if small is None else small) if SMALL else list(quick)


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


def _classic_time_sampling() -> None:
    """Let asv calibrate the calls per sample of the ``time_*`` benchmarks that have ``setup`` hooks (asv_runner
    0.3 times them one call per sample; earlier versions and asv's documentation calibrate). Applied at import, so the
    processes asv forks from its forkserver inherit it; ``tests/test_benchmarks.py`` checks the effect through
    asv_runner's own ``TimeBenchmark``, so an asv_runner that stops honouring it fails there."""
    if hasattr(asv_time.TimeBenchmark, "_setup_isolates_timed_calls"):
        asv_time.TimeBenchmark._setup_isolates_timed_calls = False


_classic_time_sampling()


# ----------------------------------------------------------------------------------------------- availability
def require_device(device: str) -> None:
    if device == "cuda" and not HAS_CUDA:
        raise NotImplementedError("no CUDA device")


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


# ----------------------------------------------------------------------------------------------- cases
@functools.lru_cache(maxsize=2)
def case_for(suite: type[FamilySuite], params: tuple) -> Case:
    """The memoised case of one parameter combination (``NotImplementedError`` where it cannot run)."""
    spec = dict(zip(suite.param_names, params, strict=True))
    require_device(spec["device"])
    return suite.make_case(**spec)


# ----------------------------------------------------------------------------------------------- suite base class
#: ``(suite, params, mode)`` whose operation this process has already called once (``Scope.warm``).
_WARMED: set[tuple] = set()


@dataclass(frozen=True)
class Scope:
    """Where a benchmark method applies and how the module must be prepared for it.

    Attributes:
        device: run only for this value of the ``device`` parameter (``None``: every device).
        equivariant_only: skip the plain-torch baseline (e.g. an equivariance error means nothing for it).
        mode: put the memoised module in ``"train"`` or ``"eval"`` mode before each sample.
        cold: forget symm_layers' memos before each sample (one cold construction per sample).
        warm: call the operation of ``mode`` once per process before the first sample, so that first-call costs
            (lazily built indices and caches, the autograd graph's first run) neither enter a sample nor make asv
            calibrate one call per sample (its calibration keeps the count of its first timing that lasts a
            ``sample_time``).
    """

    device: str | None = None
    equivariant_only: bool = False
    mode: str | None = None
    cold: bool = False
    warm: bool = False

    def applies(self, spec: dict) -> bool:
        if self.device is not None and spec["device"] != self.device:
            return False
        return not (self.equivariant_only and spec["impl"] == BASELINE)

    def prepare(self, suite: type[FamilySuite], *params) -> None:
        """asv calls this after the suite's ``setup``, with the benchmark's parameters."""
        if self.cold:
            clear_layer_memos()
        if self.mode is not None:
            case = case_for(suite, params)
            case.module.train(self.mode == "train")
            if self.warm and (suite, params, self.mode) not in _WARMED:
                (case.train_step if self.mode == "train" else case.eval_forward)()
                _WARMED.add((suite, params, self.mode))


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
    #: asv's rounds of the ``time_*`` benchmarks (each round a separate process per cell, its share of the samples):
    #: asv's default 2, one on the small grid (the same calibrated samples, half the processes and case builds).
    rounds = 1 if SMALL else 2

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
    @scoped(device="cpu", mode="eval", warm=True)
    def time_eval_forward(self, *params) -> None:
        self.case.eval_forward()

    time_eval_forward.timer = CPU_TIMER

    @scoped(device="cpu", mode="train", warm=True)
    def time_train_step(self, *params) -> None:
        self.case.train_step()

    time_train_step.timer = CPU_TIMER

    @scoped(device="cpu", cold=True)
    def time_construction(self, *params) -> None:
        self.case.construct()

    time_construction.warmup_time = 0.0
    time_construction.number = 1  # one cold construction per sample
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
