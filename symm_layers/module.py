"""Base class of the equivariant layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from escnn.group import Representation
from scipy.linalg import block_diag
from torch import nn

from ._constants import ConstantsModule
from .cache import clear_caches
from .testing import EquivarianceError, assert_equivariant, group_elements

#: ``(fn, in_action, out_action, batch_shape)``: what :meth:`EquivariantModule.check_equivariance` tests.
Probe = tuple[Callable[[torch.Tensor], torch.Tensor], object, object, tuple[int, ...]]


class StackedAction:
    """The block-diagonal action of several representations of one group on their concatenated features.

    Duck-types the part of an escnn ``Representation`` that :mod:`symm_layers.testing` uses (``group``, ``size``,
    ``rep(g)``), so a module with several inputs (tokens of different representations) is checked as one map.
    """

    def __init__(self, reps: Sequence[Representation]) -> None:
        self.reps = tuple(reps)
        self.group = self.reps[0].group
        self.size = sum(rep.size for rep in self.reps)
        self.name = "+".join(rep.name for rep in self.reps)

    def __call__(self, element) -> np.ndarray:
        return block_diag(*(np.asarray(rep(element)) for rep in self.reps))


def check_module_equivariance(
    module: nn.Module, probe: Probe, atol, rtol, seed: int, samples: int = 20
) -> EquivarianceError:
    """Run ``assert_equivariant`` on ``probe`` in ``eval()`` mode (dropout off), restoring the module's mode."""
    fn, in_action, out_action, batch_shape = probe
    elements = group_elements(in_action.group, num_samples=samples, seed=seed)
    ref = next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)
    dtype = torch.get_default_dtype() if ref is None else ref.dtype
    device = None if ref is None else ref.device
    mode = module.training
    module.eval()
    try:
        return assert_equivariant(
            fn, in_action, out_action, atol=atol, rtol=rtol, batch_shape=batch_shape, dtype=dtype, device=device,
            seed=seed, elements=elements,
        )  # fmt: skip
    finally:
        module.train(mode)


class EquivariantModule(ConstantsModule):
    """A layer mapping features of ``in_rep`` to features of ``out_rep``.

    Subclasses implement ``forward`` and :meth:`export`; this base checks feature sizes with an error that names
    the fix, clears caches held directly by the module whenever ``.to()``/``.double()`` rebuild its tensors, and
    (through :class:`ConstantsModule`) rebuilds floating constants from float64 masters on a dtype change.
    """

    in_rep: Representation
    out_rep: Representation

    def export(self) -> nn.Module:
        """Plain torch modules computing the same function with the current parameters."""
        raise NotImplementedError

    def check_equivariance(
        self, atol: float | None = None, rtol: float | None = None, *, batch_size: int = 4, seq_len: int = 5,
        samples: int = 20, seed: int = 0,
    ) -> EquivarianceError:  # fmt: skip
        """Assert ``f(rho_in(g) x) = rho_out(g) f(x)`` on random input for the group's elements.

        Every element of a finite group up to order 120; otherwise its generators and ``samples`` seeded draws
        (:func:`symm_layers.testing.group_elements`). A thin call of :func:`symm_layers.testing.assert_equivariant`
        in ``eval()`` mode (dropout off; the mode is restored), on a ``(batch_size, seq_len, D)`` input in the
        module's dtype and device. ``atol``/``rtol`` default to :data:`symm_layers.testing.TOLERANCES` of that
        dtype (the reference library's default is 1e-4 for both).

        Returns:
            The measured :class:`~symm_layers.testing.EquivarianceError`.

        Raises:
            AssertionError: naming the worst element and the error, if over tolerance.
        """
        probe = self._equivariance_probe(batch_size, seq_len, self)
        return check_module_equivariance(self, probe, atol, rtol, seed, samples)

    def _equivariance_probe(self, batch_size: int, seq_len: int, call: nn.Module) -> Probe:
        """What to check: ``call`` on ``(batch_size, seq_len, in_rep.size)`` features, ``in_rep -> out_rep``."""
        return call, *self.feature_reps(), (batch_size, seq_len)

    def feature_reps(self) -> tuple[Representation, Representation]:
        """The representations acting on this module's input and output features, in its layout.

        ``in_rep``/``out_rep`` in the spatial layout; in the spectral layout (:mod:`symm_layers.layout`) the same
        irreps with an identity change of basis.
        """
        from .layout import spectral_representation

        layout = getattr(self, "layout", "spatial")
        in_layout, out_layout = (layout, layout) if isinstance(layout, str) else layout
        in_rep = self.in_rep if in_layout == "spatial" else spectral_representation(self.in_rep)
        out_rep = self.out_rep if out_layout == "spatial" else spectral_representation(self.out_rep)
        return in_rep, out_rep

    def check_features(self, x: torch.Tensor, rep: Representation | None = None, what: str = "input") -> None:
        rep = self.in_rep if rep is None else rep
        if x.dim() == 0 or x.shape[-1] != rep.size:
            got = tuple(x.shape)
            raise ValueError(
                f"{type(self).__name__}: {what} of shape {got} has last dimension "
                f"{got[-1] if got else None}, expected {rep.size} (= size of representation '{rep.name}'); "
                f"reshape features to (..., {rep.size})"
            )

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        clear_caches(self)
        return module
