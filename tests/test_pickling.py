"""Whole modules pickle: escnn groups and representations are rebuilt from recipes (symm_layers/_pickling.py)."""

from __future__ import annotations

import functools
import io
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import rotated
from escnn import group as eg
from escnn.group import directsum

from symm_layers import eLayerNorm, eLinear
from symm_layers._pickling import rebuild_representation


@functools.cache
def rep_case(case: str):
    group_name, kind = case.split("-", 1)
    G = {"C8": lambda: eg.cyclic_group(8), "D8": lambda: eg.dihedral_group(8), "ico": eg.ico_group}[group_name]()
    if kind == "regular":
        return G.regular_representation
    if kind == "quotient":
        subgroup = {"C8": 2, "D8": (None, 4), "ico": (False, 5)}[group_name]
        return G.quotient_representation(subgroup)
    if kind == "irreps":
        irreps = [G.trivial_representation] + [G.irrep(*i) for i in G.bl_irreps(2)[1:3]] if G.continuous else None
        return directsum(irreps or [G.trivial_representation, *list(G.irreps())[1:3], G.trivial_representation])
    if kind == "rotated":
        return rotated(G.regular_representation, 5)
    raise KeyError(case)


CASES = [f"{g}-{k}" for g in ("C8", "D8", "ico") for k in ("regular", "quotient", "irreps", "rotated")]


def _round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


@pytest.mark.parametrize("case", CASES)
def test_representation_round_trip_keeps_its_content(case):
    rep = rep_case(case)
    copy = _round_trip(rep)
    assert copy.group is rep.group
    assert copy.name == rep.name and list(copy.irreps) == list(rep.irreps)
    np.testing.assert_array_equal(copy.change_of_basis, rep.change_of_basis)
    for g in list(rep.group.elements)[:10]:
        np.testing.assert_allclose(copy(g), rep(g), atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_layers_on_every_kind_of_representation_pickle(case):
    rep = rep_case(case)
    x = torch.randn(5, rep.size, dtype=torch.float64)
    for module in (eLinear(rep, rep, dtype=torch.float64), eLayerNorm(rep, init_scheme="random", dtype=torch.float64)):
        buffer = io.BytesIO()
        torch.save(module.eval(), buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        torch.testing.assert_close(loaded(x), module(x))


def test_registered_name_with_other_content_is_rebuilt_not_reused():
    G = eg.cyclic_group(8)
    regular = G.regular_representation
    other = rotated(regular, 7)
    other.name = "regular"  # the registered one's name, another basis (escnn would refuse it at construction)
    copy = _round_trip(other)
    assert copy is not regular and copy.name == "regular"
    np.testing.assert_array_equal(copy.change_of_basis, other.change_of_basis)


def test_rebuild_of_a_registered_representation_returns_it():
    G = eg.dihedral_group(8)
    rep = G.regular_representation
    args = (G, rep.name, rep.irreps, rep.change_of_basis, rep.change_of_basis_inv, rep.supported_nonlinearities)
    assert rebuild_representation(*args) is rep


_LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {root!r})
    modules, x = torch.load({path!r}, weights_only=False)
    torch.save({{k: m(x[k]) for k, m in modules.items()}}, {out!r})
    """
)


@pytest.mark.slow
def test_torch_save_loads_in_a_fresh_process(tmp_path):
    """A new interpreter has none of the escnn representations built: every recipe must rebuild its own."""
    modules = {case: eLinear(rep_case(case), rep_case(case), dtype=torch.float64).eval() for case in CASES}
    x = {case: torch.randn(3, rep_case(case).size, dtype=torch.float64) for case in CASES}
    path, out = tmp_path / "modules.pt", tmp_path / "outputs.pt"
    torch.save((modules, x), path)
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    script = _LOAD_IN_FRESH_PROCESS.format(root=root, path=str(path), out=str(out))
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    outputs = torch.load(out)
    for case, module in modules.items():
        torch.testing.assert_close(outputs[case], module(x[case]))
