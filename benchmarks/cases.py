"""One definition per benchmark case, shared by the asv suites, the target scripts and the decision maps.

A *subject* is what is built and how it is called (:class:`Subject`: a module factory and ``call(module, x)``); a
*case* is a built module on fixed, seeded inputs with the two timed calls (:class:`Case`: ``train_step`` and
``eval_forward``). ``bench_linear.py``/``bench_norms.py`` (asv), ``linear_family.py`` and ``decision_maps.py`` all
build their cells here, so one (group, D, rows, implementation) cell means the same calls everywhere:

- train: ``zero_grad(set_to_none=True)``, the input leaf's ``.grad`` cleared, forward, ``backward`` of a fixed
  upstream gradient; the input requires grad (as inside a network), so the backward reaches it and every parameter;
- eval: forward under ``torch.no_grad()`` (the caller puts the module in eval mode).

Implementations of the linear family (:data:`LINEAR_IMPLS`): the plain twin ``"torch"`` (``nn.Linear``), the peer
``"escnn"`` (``escnn.nn.Linear`` on a ``FieldType`` over ``no_base_space(G)``, inputs wrapped in
``GeometricTensor``) and eLinear as ``"<basis_expansion_scheme>/<weight_cache>"``. Representations
(:data:`REP_NAMES`): whole copies of the regular representation of C8, D8 or ico, and ``"D8-irreps"``, copies of
the sum of all irreps of D8 (orthogonal, not a permutation representation).

Defines no names asv would collect (no ``time_*``, ``mem_*``, ``peakmem_*``, ``track_*``); symm_layers and escnn's
``nn`` package are imported inside the builders, so a script can put its checkout first on ``sys.path`` before.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

if __package__:  # imported as part of the benchmarks folder (asv discovery, python -m)
    from . import common
else:  # run from a script in benchmarks/: benchmarks/ is sys.path[0]
    import common

SEED = 0
PLAIN = "torch"
PEER = "escnn"
#: Non-regular representations: name -> the group whose irreps are summed (one copy of each per block).
IRREP_SUMS = {"D8-irreps": "D8"}
REP_NAMES = (*common.GROUP_ORDERS, *IRREP_SUMS)
#: Column labels of the linear implementations; eLinear's are ``"<scheme>/<cache>"`` strings (see ``strategy``).
LINEAR_IMPLS = {
    PLAIN: "nn.Linear",
    "auto/cached": "eLinear auto",
    "orbit_gather/cached": "eLinear orbit_gather",
    "isotypic_expansion/cached": "eLinear isotypic",
    "isotypic_expansion/uncached": "eLinear isotypic (uncached)",
    "memory_heavy/cached": "eLinear memory_heavy",
    PEER: "escnn.nn.Linear",
}
NORM_EPS = 1e-5
#: Norms with an ``affine`` strategy (``"isotypic"`` or ``"diagonal"``); eBatchNorm's ``affine`` is a flag.
AFFINE_NORMS = ("rmsnorm", "layernorm")


# ----------------------------------------------------------------------------------------------- representations
@functools.cache
def fields(name: str, features: int) -> tuple:
    """The escnn representations whose direct sum is ``representation(name, features)`` (escnn's field list)."""
    if name in common.GROUP_ORDERS:
        G = common.build_group(name)
        return (G.regular_representation,) * max(1, round(features / G.order()))
    if name not in IRREP_SUMS:
        raise ValueError(f"unknown representation {name!r}; choose one of {', '.join(REP_NAMES)}")
    irreps = tuple(common.build_group(IRREP_SUMS[name]).irreps())
    return irreps * max(1, round(features / sum(r.size for r in irreps)))


@functools.cache
def representation(name: str, features: int):
    """``name`` at about ``features`` coordinates (one object per argument pair, so layer memos hit)."""
    if name in common.GROUP_ORDERS:
        return common.regular_rep(name, features)
    from escnn.group import directsum

    parts = fields(name, features)
    return directsum(list(parts), name=f"{len(parts) // len(fields(name, 1))}x_{name}")


def is_permutation(name: str) -> bool:
    return name in common.GROUP_ORDERS


# ----------------------------------------------------------------------------------------------- cases
def randn(*shape: int, device: str = "cpu", dtype: torch.dtype | None = None, seed: int = SEED) -> torch.Tensor:
    """Seeded standard normal inputs, drawn on the CPU (the same values on every device)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype or torch.float32)


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
        leaves: inputs that require grad; their ``.grad`` is cleared before every train step.
    """

    construct: Callable[[], nn.Module]
    module: nn.Module
    forward: Callable[[], torch.Tensor]
    grad: torch.Tensor
    on_features: Callable[[torch.Tensor], torch.Tensor] | None = None
    probe: torch.Tensor | None = None
    in_rep: object | None = None
    out_rep: object | None = None
    leaves: tuple[torch.Tensor, ...] = ()

    def train_step(self) -> None:
        """``zero_grad(set_to_none=True)``, input grads cleared, forward, backward of the fixed upstream gradient."""
        self.module.zero_grad(set_to_none=True)
        for leaf in self.leaves:
            leaf.grad = None
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
    reps: tuple | None = None,
    module: nn.Module | None = None,
) -> Case:
    """Build the module (seeded) unless given and wrap it with its inputs; inputs that require grad are leaves.

    Args:
        construct: zero-argument module factory.
        call: ``call(module, *inputs)`` -> output tensor.
        on_features: ``(module, x) -> f(x)`` for the equivariance check on ``probe``, with ``reps = (in, out)``.
        module: an already built module (e.g. one whose cold construction the caller timed).
    """
    torch.manual_seed(SEED)
    module = construct() if module is None else module
    forward = functools.partial(call, module, *inputs)
    with torch.no_grad():
        grad = torch.randn_like(forward())
    # Warm both paths, since ``--quick`` times one call without warm-up: first calls initialise kernels lazily, and
    # the first no-grad call builds a cached weight.
    forward().backward(grad)
    module.zero_grad(set_to_none=True)
    leaves = tuple(x for x in inputs if x.requires_grad)
    for leaf in leaves:
        leaf.grad = None
    features = None if on_features is None else functools.partial(on_features, module)
    in_rep, out_rep = reps if reps is not None else (None, None)
    return Case(construct, module, forward, grad, features, probe, in_rep, out_rep, leaves)


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


# ----------------------------------------------------------------------------------------------- subjects
def _apply(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _geometric(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from escnn.nn import GeometricTensor

    return module(GeometricTensor(x, module.in_type)).tensor


@dataclass(frozen=True)
class Subject:
    """What one cell builds and how it calls it, before any input exists.

    Attributes:
        construct: zero-argument module factory (on the cell's device and dtype).
        call: ``call(module, x) -> y`` on features ``(rows, in_rep.size)``.
        rep: the representation of the features (input and output).
        equivariant: whether the module is checked for equivariance (not the plain twin).
    """

    construct: Callable[[], nn.Module]
    call: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    rep: object
    equivariant: bool = True
    options: Mapping[str, object] = field(default_factory=dict)

    def case(self, rows: int, *, device: str = "cpu", dtype: torch.dtype | None = None,
             module: nn.Module | None = None) -> Case:  # fmt: skip
        """The case on ``(rows, D)`` seeded features that require grad (``module``: reuse a built one)."""
        x = randn(rows, self.rep.size, device=device, dtype=dtype).requires_grad_(True)
        probe = x.detach()[:8]
        return make_case(self.construct, self.call, (x,), on_features=self.call if self.equivariant else None,
                         probe=probe, reps=(self.rep, self.rep), module=module)  # fmt: skip


def strategy(impl: str) -> dict[str, str]:
    """``"isotypic_expansion/cached"`` -> the keyword arguments of the layers that take a strategy."""
    scheme, cache = impl.split("/")
    return {"basis_expansion_scheme": scheme, "weight_cache": cache}


def unsupported_options(cls: type, options: Mapping[str, object]) -> list[str]:
    """The keyword arguments in ``options`` that ``cls.__init__`` does not take (e.g. an option not yet merged)."""
    params = inspect.signature(cls).parameters
    return [k for k in options if k not in params]


def linear(impl: str, rep_name: str, features: int, *, device: str = "cpu", dtype: torch.dtype | None = None,
           **options) -> Subject:  # fmt: skip
    """``impl`` of :data:`LINEAR_IMPLS` (or ``"elinear"`` with eLinear keyword ``options``) on ``rep_name``.

    eLinear raises ``ValueError`` at construction where a strategy refuses the representation (orbit_gather on a
    non-permutation representation, a dense basis over ``max_basis_bytes``); callers record that as refused.
    """
    rep = representation(rep_name, features)
    factory = {"device": device, "dtype": dtype}
    if impl == PLAIN:
        return Subject(lambda: nn.Linear(rep.size, rep.size, **factory), _apply, rep, equivariant=False)
    if impl == PEER:
        return Subject(lambda: escnn_linear(rep_name, features).to(device, dtype or torch.float32), _geometric, rep)
    if impl != "elinear":
        options = {**strategy(impl), **options}

    def construct() -> nn.Module:
        from symm_layers import eLinear

        return eLinear(rep, rep, **options, **factory)

    return Subject(construct, _apply, rep, options=options)


def escnn_linear(rep_name: str, features: int) -> nn.Module:
    """``escnn.nn.Linear`` between two copies of the field type of ``representation(rep_name, features)``."""
    import escnn.nn as enn
    from escnn.gspaces import no_base_space

    group = rep_name if rep_name in common.GROUP_ORDERS else IRREP_SUMS[rep_name]
    field_type = enn.FieldType(no_base_space(common.build_group(group)), list(fields(rep_name, features)))
    return enn.Linear(field_type, field_type)


def norm(impl: str, name: str, rep_name: str, features: int, *, device: str = "cpu",
         dtype: torch.dtype | None = None, **options) -> Subject:  # fmt: skip
    """Normalisation ``name`` of ``symm_layers.NORM_MODULES``: its plain twin (``impl="torch"``) or the equivariant
    layer with keyword ``options`` (e.g. ``affine="diagonal"``, which refuses non-permutation representations)."""
    from symm_layers import NORM_MODULES

    rep = representation(rep_name, features)
    equivariant_cls, plain_cls = NORM_MODULES[name]
    factory = {"device": device, "dtype": dtype}
    if impl == PLAIN:
        return Subject(lambda: plain_cls(rep.size, eps=NORM_EPS, **factory), _apply, rep, equivariant=False)
    return Subject(lambda: equivariant_cls(rep, eps=NORM_EPS, **options, **factory), _apply, rep, options=options)
