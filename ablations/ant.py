"""The MuJoCo Ant (gymnasium ``Ant-v5``) and its morphological symmetry group, read from the model itself.

The Ant's torso is a sphere with four identical legs at 45°, 135°, 225° and 315° about the vertical axis, on a flat
isotropic floor under vertical gravity. A rotation ``B`` of the torso frame about its vertical axis by a multiple of
90° (group C4), or a reflection in a vertical plane through one of the legs or between two (group D4), maps the
robot's geometry onto itself with its legs relabelled. Nothing here is typed in by hand: :func:`ant_symmetry` takes
the joint anchors and axes, joint ranges, damping, armature, actuator gears and geoms of the compiled model at its
reference pose and, for each group element, finds the joint ``k`` that joint ``j`` maps to and the sign ``s`` with
``det(B) B a_j = s a_k`` (a hinge axis is a pseudo-vector: under a reflection the sense of rotation flips). It
refuses a model in which any of these does not map onto its image.

How the torso-frame state transforms under ``B`` (derived in :func:`transform_sim_state`):

- hinge angles and velocities, and the motor commands: ``theta'_k = s theta_j`` (a monomial, signed-permutation
  matrix). Hips turn about the vertical axis, so they permute, with a sign flip under reflections; ankle axes are
  rotated copies whose sense alternates (ranges 30°..70° vs -70°..-30°), so ankles permute with sign flips even
  under rotations;
- body-frame linear velocity and the gravity direction: vectors, ``v' = B v``;
- body-frame angular velocity: a pseudo-vector, ``w' = det(B) B w``;
- torso height: invariant.

For a multiple of 90° and the four mirror planes ``B`` itself is a signed permutation of ``(x, y, z)``, so every
block, and the whole state representation, is monomial in the simulator's own coordinates; it is not a permutation
representation, so a pointwise nonlinearity must not act on it directly (models lift it with a linear layer first).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from escnn.group import Group, Representation, cyclic_group, dihedral_group

#: the body whose frame the state is expressed in
TORSO = "torso"
#: geometric tolerance when matching joints and geoms of the compiled model (metres, unit vectors)
GEOMETRY_TOL = 1e-9
#: state layout: name -> slice of the 26-dimensional torso-frame state
STATE_LAYOUT = {"joint_pos": slice(0, 8), "joint_vel": slice(8, 16), "lin_vel": slice(16, 19),
                "ang_vel": slice(19, 22), "gravity": slice(22, 25), "height": slice(25, 26)}  # fmt: skip
STATE_SIZE = 26


def ant_xml_path() -> str:
    """The model file gymnasium's ``Ant-v5`` loads (shipped inside the gymnasium wheel)."""
    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "ant.xml")


@functools.cache
def ant_model():
    """The compiled MuJoCo model of ``Ant-v5`` (cached; treat as read-only)."""
    import mujoco

    return mujoco.MjModel.from_xml_path(ant_xml_path())


# ----------------------------------------------------------------------------------------------- the group
def symmetry_group(name: str) -> tuple[Group, tuple]:
    """escnn group ``C4`` or ``D4`` and the id of its irrep that rotates/reflects the horizontal plane."""
    if name == "C4":
        return cyclic_group(4), (1,)
    if name == "D4":
        return dihedral_group(4), (1, 1)
    raise ValueError(f"unknown Ant symmetry group {name!r}: use 'C4' (rotations) or 'D4' (rotations and mirrors)")


def body_matrix(group: Group, plane_irrep: tuple, g) -> np.ndarray:
    """The 3x3 orthogonal matrix of ``g`` on torso-frame vectors: the plane irrep on ``(x, y)``, identity on ``z``.

    For C4 and D4 the entries are 0 and +-1 up to rounding; they are rounded so that the transformation is exact.
    """
    plane = np.asarray(group.irrep(*plane_irrep)(g), dtype=np.float64)
    if np.abs(plane - np.round(plane)).max() > 1e-9:
        raise ValueError(f"{g} does not act on the plane by a signed permutation; only multiples of 90° are supported")
    out = np.eye(3)
    out[:2, :2] = np.round(plane)
    return out


# ----------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Hinge:
    """One hinge joint at the model's reference pose, in the torso frame."""

    name: str
    qpos: int
    dof: int
    anchor: np.ndarray
    axis: np.ndarray
    range: tuple[float, float]
    damping: float
    armature: float


def hinges(model) -> list[Hinge]:
    """Every hinge joint of ``model`` (qpos order), anchors and axes in the torso frame at ``qpos0``."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    torso = model.body(TORSO).id
    origin, rotation = data.xpos[torso].copy(), data.xmat[torso].reshape(3, 3).copy()
    out = []
    for j in range(model.njnt):
        if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE:
            continue
        low, high = model.jnt_range[j] if model.jnt_limited[j] else (-np.inf, np.inf)
        out.append(Hinge(model.joint(j).name, int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j]),
                         rotation.T @ (data.xanchor[j] - origin), rotation.T @ data.xaxis[j], (float(low), float(high)),
                         float(model.dof_damping[model.jnt_dofadr[j]]),
                         float(model.dof_armature[model.jnt_dofadr[j]])))  # fmt: skip
    return out


def _match(points: np.ndarray, image: np.ndarray, what: str) -> np.ndarray:
    """Index ``k`` for each row ``j`` of ``image`` with ``points[k] == image[j]``; refuses anything but a bijection."""
    distance = np.linalg.norm(image[:, None, :] - points[None, :, :], axis=-1)
    target = distance.argmin(axis=1)
    if distance[np.arange(len(image)), target].max() > GEOMETRY_TOL or len(set(target.tolist())) != len(image):
        raise ValueError(f"the model's {what} do not map onto each other under this transformation: not a symmetry")
    return target


def joint_map(model, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(target, sign)`` over the hinge joints (qpos order): joint ``j`` maps to ``target[j]`` with ``sign[j]``.

    Checks that the image of every joint has the same range (with the sign applied), damping and armature, so that
    the map is a symmetry of the joint's dynamics and not only of its position.
    """
    joints = hinges(model)
    anchors = np.stack([h.anchor for h in joints])
    axes = np.stack([h.axis for h in joints])
    target = _match(anchors, anchors @ B.T, "joint anchors")
    image_axes = np.linalg.det(B) * axes @ B.T
    sign = np.sign(np.einsum("jd,jd->j", image_axes, axes[target]))
    if np.abs(image_axes - sign[:, None] * axes[target]).max() > GEOMETRY_TOL:
        raise ValueError("a joint axis does not map onto the axis of its image joint: not a symmetry")
    for j, k in enumerate(target):
        src, dst = joints[j], joints[k]
        mapped = tuple(sorted(sign[j] * np.asarray(src.range)))
        if not np.allclose(mapped, dst.range) or (src.damping, src.armature) != (dst.damping, dst.armature):
            raise ValueError(f"joint {src.name} maps to {dst.name} but their ranges/damping/armature differ")
    return target, sign


def check_geoms(model, B: np.ndarray) -> None:
    """Refuse ``B`` unless every geom of the Ant (centre, type, size) maps onto a geom of the same shape."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    torso = model.body(TORSO).id
    origin, rotation = data.xpos[torso], data.xmat[torso].reshape(3, 3)
    robot = [g for g in range(model.ngeom) if model.geom_bodyid[g] != 0]  # body 0 is the world (the floor)
    centres = np.stack([rotation.T @ (data.geom_xpos[g] - origin) for g in robot])
    target = _match(centres, centres @ B.T, "geoms")
    for j, k in enumerate(target):
        a, b = robot[j], robot[k]
        if model.geom_type[a] != model.geom_type[b] or not np.allclose(model.geom_size[a], model.geom_size[b]):
            raise ValueError(f"geom {model.geom(a).name} maps onto {model.geom(b).name} of another shape")


def _signed_permutation(target: np.ndarray, sign: np.ndarray) -> np.ndarray:
    out = np.zeros((len(target), len(target)))
    out[target, np.arange(len(target))] = sign
    return out


@dataclass(frozen=True)
class AntSymmetry:
    """The matrices of every group element on the simulator's coordinates and on the torso-frame state.

    Attributes:
        group: the escnn group (C4 or D4).
        elements: the group elements, in ``group.elements`` order.
        body: ``(|G|, 3, 3)`` matrices on torso-frame vectors.
        joints: ``(|G|, 8, 8)`` signed permutations of hinge angles (qpos order).
        actions: ``(|G|, 8, 8)`` signed permutations of motor commands (actuator order, as ``Ant-v5``'s action).
        states: ``(|G|, 26, 26)`` matrices on the torso-frame state (:data:`STATE_LAYOUT`).
    """

    group: Group
    elements: tuple
    body: np.ndarray
    joints: np.ndarray
    actions: np.ndarray
    states: np.ndarray

    @property
    def state_rep(self) -> Representation:
        return representation_from_matrices(self.group, self.elements, self.states, f"ant_state_{self.group.name}")

    @property
    def action_rep(self) -> Representation:
        return representation_from_matrices(self.group, self.elements, self.actions, f"ant_action_{self.group.name}")


def state_matrix(B: np.ndarray, joints: np.ndarray, angular: np.ndarray | None = None) -> np.ndarray:
    """The matrix on the 26-dimensional state of the body matrix ``B`` and hinge signed permutation ``joints``.

    ``angular`` (default ``det(B) B``, a pseudo-vector's) acts on the body angular velocity.
    """
    angular = np.linalg.det(B) * B if angular is None else angular
    out = np.zeros((STATE_SIZE, STATE_SIZE))
    blocks = {"joint_pos": joints, "joint_vel": joints, "lin_vel": B, "ang_vel": angular,
              "gravity": B, "height": np.eye(1)}  # fmt: skip
    for name, block in blocks.items():
        out[STATE_LAYOUT[name], STATE_LAYOUT[name]] = block
    return out


@functools.cache
def ant_symmetry(name: str = "D4") -> AntSymmetry:
    """The C4 or D4 symmetry of ``Ant-v5``, derived from its compiled model (see the module docstring)."""
    import mujoco

    model = ant_model()
    group, plane = symmetry_group(name)
    qpos_of = {h.qpos: i for i, h in enumerate(hinges(model))}
    # actuator a drives hinge actuated[a] (gear is checked equal below, and every motor acts on a hinge)
    actuated = []
    for a in range(model.nu):
        joint = model.actuator_trnid[a, 0]
        if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT or model.jnt_qposadr[joint] not in qpos_of:
            raise ValueError(f"actuator {a} does not drive a hinge joint")
        actuated.append(qpos_of[model.jnt_qposadr[joint]])
    actuator_of = {j: a for a, j in enumerate(actuated)}
    if len(actuator_of) != model.nu or not np.allclose(model.actuator_gear, model.actuator_gear[0]):
        raise ValueError("every hinge must have one motor, all with the same gear and control range")
    body, joints, actions, states = [], [], [], []
    for g in group.elements:
        B = body_matrix(group, plane, g)
        check_geoms(model, B)
        target, sign = joint_map(model, B)
        J = _signed_permutation(target, sign)
        act_target = np.array([actuator_of[target[actuated[a]]] for a in range(model.nu)])
        A = _signed_permutation(act_target, sign[actuated])
        body.append(B), joints.append(J), actions.append(A), states.append(state_matrix(B, J))
    return AntSymmetry(group, tuple(group.elements), *(np.stack(x) for x in (body, joints, actions, states)))


# ----------------------------------------------------------------------------------------------- escnn reps
def representation_from_matrices(group: Group, elements, matrices: np.ndarray, name: str) -> Representation:
    """An escnn Representation of a finite ``group`` whose ``rep(g)`` equals ``matrices[i]`` for ``elements[i]``.

    The irreps' multiplicities come from the character; the change of basis is the orthogonal (polar) factor of
    the group average ``Q = 1/|G| sum_g M_g X E_g^T`` of a fixed random ``X`` (``E_g``: the block-diagonal irreps),
    which intertwines the two and is invertible for almost every ``X``. The result is checked against ``matrices``.
    A representation of the same name already built on ``group`` is returned if it has the same matrices.
    """
    from escnn.group import directsum

    matrices = np.asarray(matrices, dtype=np.float64)
    if name in group.representations:
        existing = group.representations[name]
        if all(np.allclose(existing(g), m, atol=1e-9) for g, m in zip(elements, matrices, strict=True)):
            return existing
        raise ValueError(f"{group.name} already has a different representation named {name!r}: pick another name")
    if len(elements) != group.order():
        raise ValueError(f"need the matrices of all {group.order()} elements of {group.name}, got {len(elements)}")
    ids = []
    for irrep in group.irreps():
        chi = np.array([np.trace(irrep(g)) for g in elements])
        inner = np.trace(matrices, axis1=1, axis2=2) @ chi / (chi @ chi)
        if abs(inner - round(inner)) > 1e-6:
            raise ValueError(f"the matrices of {name!r} are not a representation of {group.name} (character)")
        ids += [irrep.id] * round(inner)
    base = directsum([group.irrep(*i) for i in ids], name=f"{name}_irreps")
    if base.size != matrices.shape[1]:
        raise ValueError(f"the matrices of {name!r} are not a representation of {group.name} (dimensions)")
    x = np.random.default_rng(0).standard_normal(matrices.shape[1:])
    q = sum(m @ x @ np.asarray(base(g)).T for g, m in zip(elements, matrices, strict=True)) / len(elements)
    u, s, vt = np.linalg.svd(q)
    if s.min() < 1e-8 * s.max():
        raise ValueError(f"could not find an invertible change of basis for {name!r}")
    q = u @ vt
    rep = Representation(group, name, ids, q, supported_nonlinearities=[], change_of_basis_inv=q.T)
    for g, m in zip(elements, matrices, strict=True):
        if not np.allclose(rep(g), m, atol=1e-9):
            raise ValueError(f"the matrices of {name!r} are not a representation of {group.name}")
    return rep


# ----------------------------------------------------------------------------------------------- simulator state
def hinge_addresses(model) -> tuple[list[int], list[int]]:
    """qpos and qvel addresses of the hinge joints, in joint order."""
    import mujoco

    joints = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    return [int(model.jnt_qposadr[j]) for j in joints], [int(model.jnt_dofadr[j]) for j in joints]


def torso_state(model, data) -> np.ndarray:
    """The 26-dimensional torso-frame state (:data:`STATE_LAYOUT`) of ``data``; no absolute x/y position.

    MuJoCo's free joint stores the linear velocity in the world frame and the angular velocity in the body frame.
    """
    torso = model.body(TORSO).id
    rotation = data.xmat[torso].reshape(3, 3)  # body -> world
    hinge_q, hinge_v = hinge_addresses(model)
    return np.concatenate([data.qpos[hinge_q], data.qvel[hinge_v], rotation.T @ data.qvel[0:3], data.qvel[3:6],
                           rotation.T @ np.array([0.0, 0.0, -1.0]), data.qpos[2:3]])  # fmt: skip


def transform_sim_state(qpos: np.ndarray, qvel: np.ndarray, B: np.ndarray, joints: np.ndarray, model=None,
                        angular: np.ndarray | None = None):  # fmt: skip
    """The simulator state mapped by the symmetry ``(B, joints)``: ``(qpos', qvel')``.

    The world is mapped by ``M = B`` (a rotation about, or a reflection in a plane through, the vertical axis
    through the origin: the floor and gravity are invariant), and the torso frame is relabelled by ``B``, so the
    torso orientation ``R`` (body -> world) becomes ``R' = M R B^-1``, proper even when ``det B = -1``. Then
    position ``p' = M p``, world linear velocity ``v' = M v``, body angular velocity ``w' = det(B) B w``, hinges
    ``theta' = joints @ theta``; in the torso frame ``v_b' = R'^T v' = B v_b`` and the gravity direction
    ``R'^T e = B R^T e`` because ``M^T e_z = e_z``. ``angular`` overrides ``det(B) B`` on the angular velocity
    (the tests use it to break the pseudo-vector rule).
    """
    hinge_q, hinge_v = hinge_addresses(model or ant_model())
    qpos, qvel = np.array(qpos, dtype=np.float64), np.array(qvel, dtype=np.float64)
    out_q, out_v = qpos.copy(), qvel.copy()
    det = np.linalg.det(B)
    # R' = B R B^T rotates by the same angle about det(B) B n (the axis n is a pseudo-vector): exact, no rounding
    out_q[0:3], out_q[4:7], out_q[hinge_q] = B @ qpos[0:3], det * B @ qpos[4:7], joints @ qpos[hinge_q]
    angular = det * B if angular is None else angular
    out_v[0:3], out_v[3:6], out_v[hinge_v] = B @ qvel[0:3], angular @ qvel[3:6], joints @ qvel[hinge_v]
    return out_q, out_v
