"""Pickle support for escnn groups and representations, so whole symm_layers modules pickle.

escnn builds its irreps from local closures, so its groups and representations do not pickle, and neither would
any module holding one (``torch.save(model)``, ``pickle.dumps``, multiprocessing). :func:`install` registers, with
:mod:`copyreg`, a small recipe per object instead:

- a group is rebuilt by its class's ``_generator(**group._keys)`` (escnn returns its cached instance);
- an irrep is ``group.irrep(*id)``;
- any other representation keeps its name, irreps ids, change of basis (and inverse) and supported
  nonlinearities. On load the group's registered representation of that name is reused when its content is the
  same (``regular`` is built on demand), else an equal representation is rebuilt from the irreps.

The recipes also serve :func:`copy.deepcopy`, which therefore shares the (immutable) groups instead of copying them.
"""

from __future__ import annotations

import copyreg

import numpy as np
from escnn.group import Group, IrreducibleRepresentation, Representation

__all__ = ["install", "rebuild_group", "rebuild_irrep", "rebuild_representation"]


def rebuild_group(cls: type, keys: dict) -> Group:
    """The escnn group of class ``cls`` with construction keys ``keys`` (escnn's cached instance)."""
    return cls._generator(**keys)


def rebuild_irrep(group: Group, irrep_id: tuple) -> IrreducibleRepresentation:
    """The irrep ``irrep_id`` of ``group``."""
    return group.irrep(*irrep_id)


def _same_content(rep: Representation, irreps: list, change_of_basis: np.ndarray) -> bool:
    return list(rep.irreps) == list(irreps) and np.array_equal(np.asarray(rep.change_of_basis), change_of_basis)


def rebuild_representation(
    group: Group, name: str, irreps: list, change_of_basis: np.ndarray, change_of_basis_inv: np.ndarray, nonlinearities
) -> Representation:
    """A representation of ``group`` equal in content (irreps, change of basis) to the pickled one."""
    known = group.representations.get(name)
    if known is None and name == "regular" and not group.continuous:
        known = group.regular_representation
    if known is not None and _same_content(known, irreps, change_of_basis):
        return known
    # escnn refuses a second representation under a registered name: build under a free one, then rename.
    free = name if name not in group.representations else f"{name}#unpickled"
    rep = Representation(
        group,
        free,
        list(irreps),
        change_of_basis,
        supported_nonlinearities=set(nonlinearities),
        change_of_basis_inv=change_of_basis_inv,
    )
    rep.name = name
    return rep


def _reduce_group(group: Group):
    return rebuild_group, (type(group), dict(group._keys))


def _reduce_irrep(irrep: IrreducibleRepresentation):
    return rebuild_irrep, (irrep.group, tuple(irrep.id))


def _reduce_representation(rep: Representation):
    args = (
        rep.group,
        rep.name,
        [tuple(i) for i in rep.irreps],
        np.asarray(rep.change_of_basis),
        np.asarray(rep.change_of_basis_inv),
        sorted(rep.supported_nonlinearities),
    )
    return rebuild_representation, args


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def install() -> None:
    """Register the recipes with :mod:`copyreg` (idempotent; covers every escnn group class defined so far)."""
    for cls in _subclasses(Group):
        if cls is not Group:
            copyreg.pickle(cls, _reduce_group)
    copyreg.pickle(Representation, _reduce_representation)
    copyreg.pickle(IrreducibleRepresentation, _reduce_irrep)
