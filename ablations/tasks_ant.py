"""Ant dynamics datasets: gymnasium ``Ant-v5`` under random smoothed actions, in the torso's own frame.

A rollout starts from ``Ant-v5``'s reset (its own noise), applies actions from a clipped AR(1) process per motor
(``a_t = clip(alpha a_{t-1} + sqrt(1 - alpha^2) sigma eps_t, -1, 1)``: zero-mean and independent across motors,
so its law is invariant under every signed permutation of the motors) and resets whenever the episode terminates
(torso height outside ``Ant-v5``'s healthy range), is truncated, or (our addition, on by default) the torso turns
upside down: random actions flip the Ant within a few hundred steps and ``Ant-v5`` does not end such episodes, so
half the data would otherwise show an Ant on its back. The flip test (gravity's torso-frame z component > 0) is
invariant under the group, so the dataset's law stays symmetric. Each sample is a window of
``cond_steps + horizon`` consecutive environment steps (``Ant-v5``: 5 physics steps of 10 ms) inside one episode;
windows do not overlap. States are :func:`ablations.ant.torso_state` (26 numbers: hinge angles and velocities,
torso-frame linear and angular velocity, gravity direction in the torso frame, torso height; no x/y position).

Rollouts are cached under ``data/ant/`` (git-ignored; ``ANT_DATA_DIR`` overrides) keyed by the generator's
settings, the seed and the gymnasium/mujoco versions; a request for ``n`` windows reuses any cached rollout of the
same seed with at least ``n`` (the generator is sequential, so a shorter rollout is a prefix of a longer one).

Normalisation keeps the symmetry: statistics come from a separate rollout augmented by every group element, so the
mean lies in the invariant subspace and the scale is equal on coordinates that the group maps onto each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .ant import STATE_LAYOUT, AntSymmetry, ant_symmetry, representation_from_matrices, torso_state
from .tasks import Split

DATA_DIR = Path(os.environ.get("ANT_DATA_DIR", Path(__file__).resolve().parent.parent / "data" / "ant"))
#: index of the vertical component of the gravity direction in the torso-frame state (> 0: upside down)
GRAVITY_Z = STATE_LAYOUT["gravity"].stop - 1
#: seed of the rollout the normalisation statistics come from (disjoint from the split seeds of make_splits)
STATS_SEED = 999_999


@dataclass(frozen=True)
class AntRollouts:
    """Settings of the data generator (everything that changes the simulated windows)."""

    window: int = 12
    action_smoothing: float = 0.8
    action_scale: float = 0.6
    episode_steps: int = 1000
    reset_when_flipped: bool = True

    def key(self, seed: int) -> str:
        import gymnasium
        import mujoco

        settings = {**asdict(self), "seed": seed, "gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__}
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def simulate(self, windows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``windows`` windows: states ``(windows, window, 26)`` and actions ``(windows, window, 8)``, float64.

        ``actions[:, t]`` is applied in ``states[:, t]`` and leads to ``states[:, t + 1]``.
        """
        import gymnasium as gym

        env = gym.make("Ant-v5", max_episode_steps=self.episode_steps)
        model, data = env.unwrapped.model, env.unwrapped.data
        rng = np.random.default_rng(seed)
        states, actions = [], []
        env.reset(seed=seed)
        state = torso_state(model, data)
        action = np.clip(self.action_scale * rng.standard_normal(model.nu), -1, 1)
        current_s, current_a = [], []
        noise = np.sqrt(1 - self.action_smoothing**2) * self.action_scale
        while len(states) < windows:
            current_s.append(state)
            current_a.append(action.copy())
            _, _, terminated, truncated, _ = env.step(action.astype(np.float32))
            state = torso_state(model, data)
            action = np.clip(self.action_smoothing * action + noise * rng.standard_normal(model.nu), -1, 1)
            if len(current_s) == self.window:
                states.append(np.stack(current_s)), actions.append(np.stack(current_a))
                current_s, current_a = [], []
            flipped = self.reset_when_flipped and state[GRAVITY_Z] > 0
            if terminated or truncated or flipped:  # a partial window is dropped: windows never span a reset
                env.reset()
                state = torso_state(model, data)
                current_s, current_a = [], []
        env.close()
        return np.stack(states), np.stack(actions)

    def load(self, windows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`simulate`, from the cache when a rollout of this seed with enough windows is there."""
        key = self.key(seed)
        cached = sorted(DATA_DIR.glob(f"{key}_n*.npz"), key=lambda p: int(p.stem.rsplit("_n", 1)[1]))
        for path in cached:
            if int(path.stem.rsplit("_n", 1)[1]) >= windows:
                with np.load(path) as saved:
                    return saved["states"][:windows], saved["actions"][:windows]
        states, actions = self.simulate(windows, seed)
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        tmp = DATA_DIR / f".{key}_n{windows}.{os.getpid()}.npz"
        np.savez(tmp, states=states, actions=actions)
        tmp.replace(DATA_DIR / f"{key}_n{windows}.npz")  # atomic: parallel workers never read half a file
        return states, actions


def _augmented_stats(values: np.ndarray, matrices: np.ndarray, center: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean (zero unless ``center``) and root-mean-square deviation per coordinate of ``values`` (``(..., d)``)
    augmented by every matrix: invariant mean, equal scale on coordinates in one orbit of the group."""
    flat = values.reshape(-1, values.shape[-1])
    augmented = np.concatenate([flat @ m.T for m in matrices])
    mean = augmented.mean(axis=0) if center else np.zeros(flat.shape[-1])
    return mean, np.sqrt(((augmented - mean) ** 2).mean(axis=0))


@dataclass(frozen=True)
class AntTask:
    """Ant dynamics under C4 or D4, as a sequence task (``forecast``) or a one-step task.

    ``forecast=True``: inputs are ``cond_steps`` tokens ``[state_t, action_t]`` (normalised state, 34 numbers) and
    targets the next ``horizon`` states as changes from the last conditioning state, per coordinate divided by
    their (symmetrised) scale. The future actions are not given, so the target is a distribution: what the
    flow-matching regressor learns. ``forecast=False``: input ``[state_t, action_t]`` (34), target the scaled
    change ``state_{t+1} - state_t`` (26), for a dynamics MLP.
    """

    group: str = "D4"
    cond_steps: int = 4
    horizon: int = 8
    forecast: bool = True
    action_smoothing: float = 0.8
    action_scale: float = 0.6
    stats_windows: int = 512

    @property
    def rollouts(self) -> AntRollouts:
        return AntRollouts(self.cond_steps + self.horizon, self.action_smoothing, self.action_scale)

    @property
    def symmetry(self) -> AntSymmetry:
        return ant_symmetry(self.group)

    @property
    def token_matrices(self) -> np.ndarray:
        """``(|G|, 34, 34)``: the group on ``[state, action]`` tokens."""
        s = self.symmetry
        out = np.zeros((len(s.elements), 34, 34))
        out[:, :26, :26], out[:, 26:, 26:] = s.states, s.actions
        return out

    @property
    def group_and_reps(self):
        """``(group, rep of targets, rep of inputs)``: the state rep and the ``[state, action]`` token rep."""
        s = self.symmetry
        tokens = representation_from_matrices(s.group, s.elements, self.token_matrices, f"ant_token_{self.group}")
        return s.group, s.state_rep, tokens

    def statistics(self) -> dict[str, np.ndarray]:
        return _statistics(self.rollouts, self.group, self.cond_steps, self.stats_windows)

    def split(self, count: int, seed: int) -> Split:
        states, actions = self.rollouts.load(count, seed)
        stats = self.statistics()
        last = self.cond_steps - 1
        normal = (states - stats["state_mean"]) / stats["state_scale"]
        tokens = np.concatenate([normal, actions], axis=-1)
        if self.forecast:
            change = (states[:, self.cond_steps :] - states[:, last : last + 1]) / stats["forecast_scale"]
            return Split(torch.as_tensor(tokens[:, : self.cond_steps]).float(), torch.as_tensor(change).float())
        change = (states[:, last + 1] - states[:, last]) / stats["step_scale"]
        return Split(torch.as_tensor(tokens[:, last]).float(), torch.as_tensor(change).float())


@functools.cache
def _statistics(rollouts: AntRollouts, group: str, cond_steps: int, windows: int) -> dict[str, np.ndarray]:
    states, _ = rollouts.load(windows, STATS_SEED)
    matrices = ant_symmetry(group).states
    mean, scale = _augmented_stats(states, matrices, center=True)
    _, forecast = _augmented_stats(states[:, cond_steps:] - states[:, cond_steps - 1 : cond_steps], matrices, False)
    _, step = _augmented_stats(states[:, 1:] - states[:, :-1], matrices, center=False)
    floor = 1e-6  # a coordinate that never moves (none in practice) must not divide by zero
    return {"state_mean": mean, "state_scale": np.maximum(scale, floor), "forecast_scale": np.maximum(forecast, floor),
            "step_scale": np.maximum(step, floor)}  # fmt: skip
