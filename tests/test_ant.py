"""The Ant's morphological symmetry, checked by simulation, and its dataset.

The symmetry test transforms an initial state and an action sequence by a group element, simulates both with
MuJoCo and compares the transformed original trajectory with the simulated transformed one. Tolerance:
``SIM_RTOL = 1e-8`` relative (per state, largest over ``HORIZON`` = 20 environment steps = 100 physics steps of 10
ms, 1 s). The two simulations differ only in the order of floating-point operations (coordinates are permuted and
sign-flipped exactly), so they agree to rounding at first (~1e-16); the dynamics are chaotic and contacts switch
on and off, so that difference grows, measured here ~1e-14..1e-12 after 20 steps, ~1e-8..1e-7 after 100 and
O(0.1) after 150. The short horizon keeps a margin of four orders of magnitude; a broken representation gives an
error of order 1e-2..1 within the same horizon.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

mujoco = pytest.importorskip("mujoco")

from ablations.ant import (  # noqa: E402
    STATE_LAYOUT,
    ant_model,
    ant_symmetry,
    joint_map,
    representation_from_matrices,
    state_matrix,
    torso_state,
    transform_sim_state,
)
from ablations.tasks_ant import AntRollouts, AntTask  # noqa: E402

HORIZON = 20
SIM_RTOL = 1e-8
#: a broken representation must be this far above the tolerance
BROKEN_FACTOR = 1e4


def simulate(qpos, qvel, actions):
    """Torso-frame states ``(len(actions) + 1, 26)`` of ``Ant-v5``'s physics (5 physics steps per action)."""
    model = ant_model()
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    states, contacts = [torso_state(model, data)], 0
    for action in actions:
        data.ctrl[:] = action
        for _ in range(5):
            mujoco.mj_step(model, data)
            contacts += data.ncon
        states.append(torso_state(model, data))
    return np.stack(states), contacts


@pytest.fixture(scope="module")
def start():
    """A state reached by 2 s of random actions from a perturbed reset (legs moving, feet hitting the floor)."""
    model = ant_model()
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    data.qpos[:] = model.qpos0 + rng.uniform(-0.1, 0.1, model.nq)
    data.qvel[:] = 0.1 * rng.standard_normal(model.nv)
    for _ in range(200):
        data.ctrl[:] = rng.uniform(-1, 1, model.nu)
        mujoco.mj_step(model, data)
    actions = rng.uniform(-1, 1, (HORIZON, model.nu))
    reference, contacts = simulate(data.qpos.copy(), data.qvel.copy(), actions)
    return data.qpos.copy(), data.qvel.copy(), actions, reference, contacts


def symmetry_error(start, B, joints, actions_matrix, angular=None) -> float:
    """Largest relative error over the horizon between the simulated transformed and the transformed trajectory."""
    qpos, qvel, actions, reference, _ = start
    moved_q, moved_v = transform_sim_state(qpos, qvel, B, joints, angular=angular)
    simulated, _ = simulate(moved_q, moved_v, actions @ actions_matrix.T)
    expected = reference @ state_matrix(B, joints, angular).T
    return float((np.linalg.norm(simulated - expected, axis=1) / np.linalg.norm(expected, axis=1)).max())


def test_reference_trajectory_has_contacts(start):
    assert start[4] > 0


@pytest.mark.parametrize("index", range(8))
def test_dynamics_commute_with_every_element_of_d4(start, index):
    s = ant_symmetry("D4")
    assert symmetry_error(start, s.body[index], s.joints[index], s.actions[index]) < SIM_RTOL


def _leg_swap(matrix: np.ndarray, a: int, b: int) -> np.ndarray:
    """``matrix`` with the images of the two-row blocks ``a`` and ``b`` (one leg each) exchanged."""
    rows = np.arange(matrix.shape[0])
    rows[2 * a : 2 * a + 2], rows[2 * b : 2 * b + 2] = rows[2 * b : 2 * b + 2], rows[2 * a : 2 * a + 2].copy()
    return matrix[rows]


def test_mislabelled_leg_breaks_the_symmetry(start):
    s = ant_symmetry("D4")
    rotation = 1  # 90 degrees
    # legs 3 and 4 exchanged in the images of the joints and of their motors (actuator order: leg 4 first)
    joints, actions = _leg_swap(s.joints[rotation], 2, 3), _leg_swap(s.actions[rotation], 3, 0)
    assert symmetry_error(start, s.body[rotation], joints, actions) > BROKEN_FACTOR * SIM_RTOL


def test_wrong_ankle_sign_breaks_the_symmetry(start):
    s = ant_symmetry("D4")
    rotation = 1
    flip_joint, flip_motor = np.eye(8), np.eye(8)
    flip_joint[3, 3] = flip_motor[5, 5] = -1  # ankle_2: qpos-order index 3, actuator index 5
    joints, actions = flip_joint @ s.joints[rotation], flip_motor @ s.actions[rotation]
    assert symmetry_error(start, s.body[rotation], joints, actions) > BROKEN_FACTOR * SIM_RTOL


def test_angular_velocity_as_a_plain_vector_breaks_the_mirror_symmetry(start):
    s = ant_symmetry("D4")
    mirror = 4
    assert np.linalg.det(s.body[mirror]) < 0
    error = symmetry_error(start, s.body[mirror], s.joints[mirror], s.actions[mirror], angular=s.body[mirror])
    assert error > BROKEN_FACTOR * SIM_RTOL


def test_ankles_flip_sign_under_a_quarter_turn():
    joints = ant_symmetry("C4").joints[1]
    signs = joints[np.abs(joints).argmax(axis=0), np.arange(8)]
    assert signs[0::2].tolist() == [1, 1, 1, 1]  # hips permute
    assert sorted(signs[1::2].tolist()) == [-1, -1, 1, 1]  # ankle axes alternate in sense


def test_hips_flip_sign_under_a_mirror():
    joints = ant_symmetry("D4").joints[4]
    signs = joints[np.abs(joints).argmax(axis=0), np.arange(8)]
    assert signs[0::2].tolist() == [-1, -1, -1, -1]


def test_non_symmetry_of_the_model_is_refused():
    turn = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="not a symmetry"):
        joint_map(ant_model(), turn)


def test_a_leg_with_another_joint_range_is_refused():
    from ablations.ant import ant_xml_path

    xml = open(ant_xml_path()).read().replace('name="ankle_2" pos="0.0 0.0 0.0" range="-70 -30"',
                                              'name="ankle_2" pos="0.0 0.0 0.0" range="-60 -30"')  # fmt: skip
    model = mujoco.MjModel.from_xml_string(xml)
    with pytest.raises(ValueError, match="ranges"):
        joint_map(model, ant_symmetry("C4").body[1])


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_escnn_representations_equal_the_geometric_matrices(group):
    s = ant_symmetry(group)
    for i, g in enumerate(s.elements):
        torch.testing.assert_close(torch.as_tensor(s.state_rep(g)), torch.as_tensor(s.states[i]), atol=1e-9, rtol=0)
        torch.testing.assert_close(torch.as_tensor(s.action_rep(g)), torch.as_tensor(s.actions[i]), atol=1e-9, rtol=0)


def test_state_representation_is_monomial_but_not_a_permutation():
    from symm_layers.activations import is_permutation_representation

    s = ant_symmetry("D4")
    assert np.all((np.abs(s.states) == 1).sum(axis=1) == 1)
    assert not is_permutation_representation(s.state_rep)


def test_matrices_that_are_not_a_representation_are_refused():
    s = ant_symmetry("C4")
    broken = s.joints.copy()
    broken[1] = np.diag([1.0, -1, 1, 1, 1, 1, 1, 1]) @ broken[1]
    with pytest.raises(ValueError, match="not a representation"):
        representation_from_matrices(s.group, s.elements, broken, "broken_ant_joints")


def test_state_layout_covers_the_state():
    assert sum(sl.stop - sl.start for sl in STATE_LAYOUT.values()) == 26


# ----------------------------------------------------------------------------------------------- dataset
def test_rollouts_are_seeded_and_prefixes_of_longer_ones():
    rollouts = AntRollouts(window=4)
    a_states, a_actions = rollouts.simulate(6, seed=3)
    b_states, b_actions = rollouts.simulate(3, seed=3)
    np.testing.assert_array_equal(a_states[:3], b_states)
    np.testing.assert_array_equal(a_actions[:3], b_actions)
    assert not np.allclose(rollouts.simulate(3, seed=4)[0], b_states)


def test_windows_are_consecutive_steps_of_the_simulator():
    states, actions = AntRollouts(window=4).simulate(2, seed=0)
    assert states.shape == (2, 4, 26) and actions.shape == (2, 4, 8)
    assert np.abs(actions).max() <= 1
    # hinge angles move by at most (velocity bound) x dt between consecutive states
    assert np.abs(np.diff(states[..., :8], axis=1)).max() < 1.0


def test_split_tensors_and_normalisation_commute_with_the_group(tmp_path, monkeypatch):
    monkeypatch.setattr("ablations.tasks_ant.DATA_DIR", tmp_path)
    task = AntTask(group="D4", cond_steps=2, horizon=2, stats_windows=16)
    stats = task.statistics()
    for m in task.symmetry.states:
        np.testing.assert_allclose(m @ stats["state_mean"], stats["state_mean"], atol=1e-12)
        np.testing.assert_allclose(np.abs(m) @ stats["state_scale"], stats["state_scale"], rtol=1e-12)
    split = task.split(8, seed=1)
    assert split.inputs.shape == (8, 2, 34) and split.targets.shape == (8, 2, 26)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # statistics rollout and the split, cached


# ----------------------------------------------------------------------------------------------- studies
TINY_ANT = ["--seeds", "2", "--steps", "4", "--eval-every", "2", "--eval-size", "16", "--cond-steps", "2",
            "--horizon", "2", "--stats-windows", "16", "--lr-grid", "0.003", "0.01", "--backend", "serial",
            "--no-progress"]  # fmt: skip


def _tiny(tmp_path, monkeypatch, module: str, extra: list[str]):
    import importlib

    from ablations.common import main

    monkeypatch.setattr("ablations.tasks_ant.DATA_DIR", tmp_path / "data")
    study = importlib.import_module(f"ablations.{module}")
    out = main(study.STUDY, study.Config, study.jobs, study.run, TINY_ANT + extra + ["--out", str(tmp_path / "out")])
    return study, out, pd.read_csv(out / "metrics.csv")


@pytest.mark.parametrize(
    ("module", "extra"),
    [("study_ant", ["--equivariant-widths", "16", "--num-layers", "1"]),
     ("study_ant_dynamics", ["--equivariant-widths", "16"])],
)  # fmt: skip
def test_tiny_ant_study_runs_the_protocol_and_writes_figures_and_table(tmp_path, monkeypatch, module, extra):
    study, out, data = _tiny(tmp_path, monkeypatch, module, ["--train-sizes", "16", "32", *extra])
    assert set(data.model) == set(study.MODELS) and set(data.train_size) == {16, 32}
    assert {"best_test_loss", "best_step", "params", "width"} <= set(data.metric)
    assert set(data.lr) <= {0.003, 0.01} and (out / "lr_selection.csv").exists()
    for name in ("table.md", "curves.png", "costs.png", "loss_vs_params.png", "loss_vs_data.png", "config.json"):
        assert (out / name).exists()
    final = data[data.metric == "equivariance_error_f64"]
    assert final[final.model == "equivariant"].value.max() < 1e-10
    assert final[final.model.str.startswith("plain")].value.min() > 1e-3


def test_ant_widths_match_parameters_in_both_directions():
    from ablations import study_ant_dynamics

    config = study_ant_dynamics.Config(equivariant_widths=(64,), plain_widths=(64,))
    chosen = study_ant_dynamics.widths(config)
    assert 64 in chosen["equivariant"] and 64 in chosen["plain"]
    assert len(chosen["equivariant"]) == 2 and len(chosen["plain"]) == 2  # each family matched to the other's width
    assert chosen["plain/augmented"] == chosen["plain"]  # every equivariant width has an augmented partner too


def test_tiny_ant_norm_study_writes_paired_affine_table(tmp_path, monkeypatch):
    extra = ["--train-size", "16", "--embedding-dim", "16", "--norms", "rmsnorm", "--depths", "1"]
    _, out, data = _tiny(tmp_path, monkeypatch, "study_ant_norm", extra)
    assert set(data.label) == {"rmsnorm/pre/isotypic/L1", "rmsnorm/pre/diagonal/L1"}
    assert "| norm affine |" in (out / "table.md").read_text() and (out / "results.png").exists()


def test_ant_basis_strategies_train_the_same_function(tmp_path, monkeypatch):
    import dataclasses

    from ablations import study_ant_basis
    from ablations.sweep import run_sweep

    monkeypatch.setattr("ablations.tasks_ant.DATA_DIR", tmp_path / "data")
    config = dataclasses.replace(study_ant_basis.Config(), seeds=1, steps=4, eval_every=2, eval_size=16, train_size=16,
                                 cond_steps=2, horizon=2, stats_windows=16, embedding_dim=16, num_layers=1,
                                 strategies=("isotypic_expansion", "auto"))  # fmt: skip
    frame = run_sweep(study_ant_basis.jobs(config), study_ant_basis.run, tmp_path, backend="serial", progress=False)
    loss = frame[frame.metric == "best_test_loss"].set_index("label").value
    torch.testing.assert_close(loss["auto"], loss["isotypic_expansion"], rtol=1e-4, atol=1e-6)


def test_guide_has_ant_rows_with_intervals(tmp_path, monkeypatch):
    from ablations import guide

    _, out, _ = _tiny(tmp_path, monkeypatch, "study_ant_dynamics", ["--train-sizes", "16", "--equivariant-widths",
                                                                    "16", "--seeds", "3"])  # fmt: skip
    out.rename(tmp_path / "ant_dynamics")
    text = guide.write(tmp_path).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| equivariant vs plain, MLP (MuJoCo Ant"))
    assert "plain − equivariant" in row and "[" in row  # a paired difference with its interval
    assert "## MuJoCo Ant" in text and "`quick`" in text
