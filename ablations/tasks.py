"""Synthetic tasks with a known symmetry, generated in code (nothing is downloaded).

Both tasks live on a ring of ``N`` sites acted on by the dihedral group ``D_N`` (order ``2N``): rotations shift the
sites, reflections reverse them (``i -> -i``). escnn's quotient representation ``D_N / {e, flip}`` is exactly this
permutation of sites (checked in the tests), so a feature with ``C`` channels per site transforms under ``C`` copies
of it, channel-major: ``x[c * N + i]`` is channel ``c`` at site ``i``.

- :class:`RingOscillators` (sequence task): trajectories of a nonlinear Fermi-Pasta-Ulam-type chain of pendula on the
  ring. The conditional regressor sees ``cond_steps`` past states ``Z`` and learns the flow-matching velocity
  ``V = f(X_k, Z, k)`` towards the next ``horizon`` states.
- :class:`RingRegression` (static task): a fixed, known D_N-equivariant function of two channels per site, plus
  Gaussian noise, for the equivariant MLP.

Every generator is seeded: the same ``(config, seed)`` gives the same tensors on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from escnn.group import Representation, dihedral_group, directsum


def ring_group(sites: int):
    """``D_sites`` and its permutation representation on the ring's sites."""
    G = dihedral_group(sites)
    return G, G.quotient_representation((0, 1))


def channels(site_rep: Representation, count: int) -> Representation:
    """``count`` channels per site, channel-major."""
    return directsum([site_rep] * count, name=f"{count}x_sites")


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values at sites ``i + 1`` and ``i - 1`` for ``x`` of shape ``(..., N)``."""
    return torch.roll(x, -1, dims=-1), torch.roll(x, 1, dims=-1)


@dataclass(frozen=True)
class Split:
    """Tensors of one split; ``inputs`` and ``targets`` for the static task, ``cond`` and ``future`` for sequences."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def double(self) -> Split:
        return Split(self.inputs.double(), self.targets.double())

    def to(self, device) -> Split:
        return Split(self.inputs.to(device), self.targets.to(device))


@dataclass(frozen=True)
class RingOscillators:
    r"""Chain of coupled pendula on a ring; D_N acts by permuting the sites.

    .. math::
        \ddot q_i = \kappa (q_{i+1} - 2 q_i + q_{i-1})
            + \beta \big[(q_{i+1} - q_i)^3 - (q_i - q_{i-1})^3\big] - \omega^2 \sin q_i - \gamma \dot q_i

    The force at site ``i`` depends on its two neighbours symmetrically, so the flow commutes with every rotation
    and reflection of the ring. Initial positions and velocities are standard normal times ``init_scale``;
    integration is RK4 with step ``dt``, one state kept every ``stride`` steps after a ``burn_in``. A sample is
    ``cond_steps`` consecutive states (the conditioning ``Z``) followed by ``horizon`` states (the target ``X``).
    Each state is ``(q, dq/dt)``: two channels per site, ``2N`` features. Targets are returned as the change
    from the last conditioning state, divided by ``target_scale`` (an invariant scalar, so both stay
    equivariant).
    """

    sites: int = 8
    cond_steps: int = 4
    horizon: int = 8
    kappa: float = 1.0
    beta: float = 0.5
    omega: float = 1.0
    gamma: float = 0.02
    dt: float = 0.05
    stride: int = 3
    burn_in: int = 20
    init_scale: float = 1.0
    target_scale: float = 2.0

    @property
    def group_and_reps(self):
        G, site = ring_group(self.sites)
        state = channels(site, 2)
        return G, state, state  # (group, rep of X tokens, rep of Z tokens)

    def _acceleration(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        right, left = _neighbours(q)
        spring = self.kappa * (right - 2 * q + left)
        cubic = self.beta * ((right - q) ** 3 - (q - left) ** 3)
        return spring + cubic - self.omega**2 * torch.sin(q) - self.gamma * v

    def _step(self, q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.dt
        k1q, k1v = v, self._acceleration(q, v)
        k2q, k2v = v + h / 2 * k1v, self._acceleration(q + h / 2 * k1q, v + h / 2 * k1v)
        k3q, k3v = v + h / 2 * k2v, self._acceleration(q + h / 2 * k2q, v + h / 2 * k2v)
        k4q, k4v = v + h * k3v, self._acceleration(q + h * k3q, v + h * k3v)
        return q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q), v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)

    def trajectories(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count, cond_steps + horizon, 2N)`` states, float64."""
        shape = (count, self.sites)
        q = torch.randn(shape, generator=generator, dtype=torch.float64) * self.init_scale
        v = torch.randn(shape, generator=generator, dtype=torch.float64) * self.init_scale
        states = []
        total = self.burn_in + (self.cond_steps + self.horizon) * self.stride
        for step in range(total):
            if step >= self.burn_in and (step - self.burn_in) % self.stride == 0:
                states.append(torch.cat([q, v], dim=-1))
            q, v = self._step(q, v)
        return torch.stack(states, dim=1)

    def split(self, count: int, seed: int) -> Split:
        """``inputs``: ``Z`` of shape ``(count, cond_steps, 2N)``; ``targets``: ``X`` ``(count, horizon, 2N)``."""
        states = self.trajectories(count, torch.Generator().manual_seed(seed))
        cond, future = states[:, : self.cond_steps], states[:, self.cond_steps :]
        return Split(cond.float(), ((future - cond[:, -1:]) / self.target_scale).float())


@dataclass(frozen=True)
class RingRegression:
    r"""A known equivariant map from two channels per site ``(u, w)`` to one, plus noise.

    .. math::
        y_i = \tanh(u_{i+1} + u_{i-1} - 2 u_i)\, w_i + \tfrac12 u_i \overline{w^2}
            + \tfrac12 \max(u_i, w_{i+1}, w_{i-1}) + \sigma \epsilon_i

    Neighbours enter symmetrically and ``\overline{w^2}`` is the mean over sites, so
    ``y(\rho(g) x) = \rho(g) y(x)`` for every rotation and reflection. Inputs are standard normal.
    """

    sites: int = 8
    noise: float = 0.05

    @property
    def group_and_reps(self):
        G, site = ring_group(self.sites)
        return G, channels(site, 2), site  # (group, input rep, output rep)

    def function(self, x: torch.Tensor) -> torch.Tensor:
        """The noise-free target for ``x`` of shape ``(..., 2N)``."""
        u, w = x[..., : self.sites], x[..., self.sites :]
        u_right, u_left = _neighbours(u)
        w_right, w_left = _neighbours(w)
        mean_w2 = (w**2).mean(dim=-1, keepdim=True)
        peak = torch.maximum(u, torch.maximum(w_right, w_left))
        return torch.tanh(u_right + u_left - 2 * u) * w + 0.5 * u * mean_w2 + 0.5 * peak

    def split(self, count: int, seed: int) -> Split:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(count, 2 * self.sites, generator=generator, dtype=torch.float64)
        noise = torch.randn(count, self.sites, generator=generator, dtype=torch.float64) * self.noise
        return Split(x.float(), (self.function(x) + noise).float())


#: Seeds of the three splits, offset from the run seed so that train/validation/test never share samples.
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def make_splits(task, sizes: dict[str, int], data_seed: int) -> dict[str, Split]:
    """Train/validation/test splits of ``task``; ``data_seed`` fixes the dataset (shared across model seeds)."""
    return {name: task.split(sizes[name], 1000 * data_seed + SPLIT_SEEDS[name]) for name in ("train", "val", "test")}
