import numpy as np
import pytest
import torch
from conftest import ALL_CASES, FINITE_CASES, mixed_case, rep_pair, skip_unsupported
from escnn import group as eg
from escnn.group import directsum

from symm_layers import BASIS_STRATEGIES, GroupHomomorphismBasis
from symm_layers.basis import hom_space, nullspace_basis

FAST_STRATEGIES = [name for name in BASIS_STRATEGIES if name != "reference"]


def _pair_basis(case, strategy, dtype=torch.float64):
    skip_unsupported(strategy, case)
    in_rep, out_rep = rep_pair(case)
    return GroupHomomorphismBasis(in_rep, out_rep, strategy, dtype=dtype)


@pytest.mark.parametrize("strategy", FAST_STRATEGIES)
def test_expand_matches_reference(case, strategy):
    basis, ref = _pair_basis(case, strategy), _pair_basis(case, "reference")
    dof = torch.randn(basis.dim, dtype=torch.float64)
    torch.testing.assert_close(basis(dof), ref(dof), atol=1e-12, rtol=0)


@pytest.mark.parametrize("strategy", FAST_STRATEGIES)
def test_adjoint_matches_reference(case, strategy):
    basis, ref = _pair_basis(case, strategy), _pair_basis(case, "reference")
    matrix = torch.randn(basis.out_rep.size, basis.in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(basis.coefficients(matrix), ref.coefficients(matrix), atol=1e-12, rtol=0)


@pytest.mark.parametrize("strategy", FAST_STRATEGIES)
def test_adjoint_is_the_autograd_vjp_of_expand(strategy):
    basis = _pair_basis("D8-permutation-mixed" if strategy == "orbit_gather" else "D6-mixed", strategy)
    dof = torch.randn(basis.dim, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(basis.out_rep.size, basis.in_rep.size, dtype=torch.float64)
    (grad,) = torch.autograd.grad((basis(dof) * upstream).sum(), dof)
    torch.testing.assert_close(grad, basis.coefficients(upstream), atol=1e-12, rtol=0)


@pytest.mark.parametrize("path", ["apply_spectral", "apply_expanded"])
def test_isotypic_paths_match_reference(case, path):
    basis, ref = _pair_basis(case, "isotypic_expansion"), _pair_basis(case, "reference")
    dof = torch.randn(basis.dim, dtype=torch.float64)
    x = torch.randn(3, 5, basis.in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(getattr(basis.strategy, path)(dof, x), x @ ref(dof).mT, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "copies, rows, path",
    [(128, 256, "spectral"), (128, 8, "spectral"), (8, 4096, "expanded"), (16, 512, "expanded")],
)
def test_cost_model_picks_the_measured_faster_path(copies, rows, path):
    # Measured on CPU (1 thread, C8): at D=1024 the spectral path trains 2-10x faster, at D<=128 with many rows
    # the expanded path does (1.7-4x).
    G = eg.cyclic_group(8)
    rep = directsum([G.regular_representation] * copies)
    expanded, spectral = GroupHomomorphismBasis(rep, rep, "isotypic_expansion").strategy.path_macs(rows)
    assert (spectral < expanded) == (path == "spectral")


@pytest.mark.parametrize("case", FINITE_CASES)
def test_reference_spans_the_nullspace_of_the_constraint(case):
    in_rep, out_rep = rep_pair(case)
    if in_rep.size * out_rep.size > 1200:
        pytest.skip("the nullspace solve is cubic in D_in * D_out")
    null = nullspace_basis(in_rep, out_rep, in_rep.group.generators)
    ref = _pair_basis(case, "reference")
    assert null.shape[0] == ref.dim
    stack = ref.strategy.basis.reshape(ref.dim, -1).numpy()
    residual = null.reshape(null.shape[0], -1) - (null.reshape(null.shape[0], -1) @ stack.T) @ stack
    assert np.abs(residual).max() < 1e-9


def test_reference_basis_is_orthonormal(case):
    ref = _pair_basis(case, "reference")
    stack = ref.strategy.basis
    torch.testing.assert_close(stack @ stack.T, torch.eye(ref.dim, dtype=stack.dtype), atol=1e-12, rtol=0)


def test_projection_is_idempotent_and_equivariant():
    in_rep, out_rep = rep_pair("D4-rotated")
    basis = GroupHomomorphismBasis(in_rep, out_rep, dtype=torch.float64)
    w = basis.orthogonal_projection(torch.randn(out_rep.size, in_rep.size, dtype=torch.float64))
    torch.testing.assert_close(basis.orthogonal_projection(w), w)
    for g in in_rep.group.elements:
        a, b = torch.as_tensor(out_rep(g)), torch.as_tensor(in_rep(g))
        torch.testing.assert_close(a @ w, w @ b)


@pytest.mark.parametrize("scheme", ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"])
def test_init_matches_torch_variance_on_regular_reps(scheme):
    G = eg.dihedral_group(4)
    in_rep, out_rep = directsum([G.regular_representation] * 12), directsum([G.regular_representation] * 6)
    basis = GroupHomomorphismBasis(in_rep, out_rep)
    gen = torch.Generator().manual_seed(0)
    weights = torch.stack([basis(basis.initialize_params(scheme, generator=gen)) for _ in range(20)])
    fan_in, fan_out = in_rep.size, out_rep.size
    expected = 2 / (fan_in + fan_out) if scheme.startswith("xavier") else 2 / fan_in
    assert weights.var().item() == pytest.approx(expected, rel=0.1)


def test_init_scheme_unknown_is_refused():
    basis = _pair_basis("C8-regular", "isotypic_expansion")
    with pytest.raises(ValueError, match="xavier_normal"):
        basis.initialize_params("orthogonal")


def test_unknown_strategy_lists_known_ones():
    in_rep, out_rep = rep_pair("C8-regular")
    with pytest.raises(ValueError, match="isotypic_expansion.*memory_heavy"):
        GroupHomomorphismBasis(in_rep, out_rep, "fft")


def test_no_equivariant_map_names_the_fix():
    G = eg.cyclic_group(5)
    with pytest.raises(ValueError, match="dim Hom_G.*= 0.*add a common irrep"):
        GroupHomomorphismBasis(G.irrep(1), G.irrep(2))


def test_memory_heavy_refuses_over_limit_and_names_isotypic():
    in_rep, out_rep = rep_pair("D8-regular")
    with pytest.raises(ValueError, match="isotypic_expansion"):
        GroupHomomorphismBasis(in_rep, out_rep, "memory_heavy", max_basis_bytes=1024)


def test_memory_heavy_rebuilds_in_float64():
    in_rep, out_rep = rep_pair("D4-rotated")
    basis = GroupHomomorphismBasis(in_rep, out_rep, "memory_heavy").double()
    ref = GroupHomomorphismBasis(in_rep, out_rep, "reference", dtype=torch.float64)
    torch.testing.assert_close(basis.strategy.basis, ref.strategy.basis, atol=1e-14, rtol=0)


def test_cost_report_counts(case):
    basis = _pair_basis(case, "isotypic_expansion", dtype=torch.float32)
    cost = basis.cost()
    assert cost.parameters == basis.dim
    assert cost.buffer_bytes == sum(b.numel() * b.element_size() for b in basis.buffers())
    assert cost.expand_macs > 0
    assert cost.apply_macs(10) == cost.expand_macs + 10 * cost.apply_macs_per_row


def test_memory_heavy_cost_is_the_stack():
    basis = _pair_basis("C8-regular", "memory_heavy", dtype=torch.float32)
    d_out, d_in = basis.out_rep.size, basis.in_rep.size
    assert basis.cost().buffer_bytes == basis.dim * d_out * d_in * 4


def test_dim_counts_endomorphisms_of_complex_irreps():
    G = eg.cyclic_group(5)
    space = hom_space(G.irrep(1), directsum([G.irrep(1)] * 3))
    assert space.dim == 3 * 2  # three copies, endomorphism algebra of a complex irrep is 2-dimensional


@pytest.mark.parametrize("case", ALL_CASES)
def test_structured_q_application_round_trip(case):
    basis = _pair_basis(case, "isotypic_expansion")
    change = basis.strategy.domain_cob
    x = torch.randn(4, basis.in_rep.size, dtype=torch.float64)
    torch.testing.assert_close(change.from_spectral(change.to_spectral(x)), x)
    q = torch.as_tensor(basis.strategy.space.domain.change_of_basis)
    order = np.argsort(change.local_position)
    torch.testing.assert_close(change.to_spectral(x), (x @ q)[:, order])


def test_init_std_per_block_is_finite():
    space = hom_space(*rep_pair("C5-complex-irreps"))
    std = space.init_std("xavier_normal")
    assert np.isfinite(std).all() and (std > 0).all()


@pytest.mark.parametrize("case", ["C5-complex-irreps", "D4-rotated", "D6-mixed", "SO2-bandlimited"])
def test_orbit_gather_refuses_non_permutation_reps_and_names_the_fix(case):
    in_rep, out_rep = rep_pair(case)
    with pytest.raises(ValueError, match="permutation.*isotypic_expansion"):
        GroupHomomorphismBasis(in_rep, out_rep, "orbit_gather")


def test_orbit_gather_refuses_copies_rotated_across_orbits():
    # Same matrices rho(g) (a permutation representation), but the two trivial copies are mixed by the basis.
    G = eg.cyclic_group(4)
    rep = directsum([G.regular_representation] * 2)
    q = np.asarray(rep.change_of_basis).copy()
    offsets = np.cumsum([0] + [G.irrep(*i).size for i in rep.irreps])
    a, b = (offsets[k] for k, i in enumerate(rep.irreps) if i == G.trivial_representation.id)
    c, s = np.cos(0.3), np.sin(0.3)
    q[:, a], q[:, b] = c * q[:, a] + s * q[:, b], -s * q[:, a] + c * q[:, b]
    mixed = eg.Representation(G, "mixed", rep.irreps, q)
    with pytest.raises(ValueError, match="one orbit.*isotypic_expansion"):
        GroupHomomorphismBasis(mixed, mixed, "orbit_gather")


@pytest.mark.parametrize(
    "case, expected",
    [("C8-regular", "orbit_gather"), ("D8-permutation-mixed", "orbit_gather"), ("D6-mixed", "isotypic_expansion")],
)
def test_auto_picks_orbit_gather_for_permutation_reps(case, expected):
    basis = GroupHomomorphismBasis(*rep_pair(case))
    assert basis.basis_expansion == expected == basis.cost().strategy
    assert f"basis_expansion={expected} (auto)" in repr(basis)


def test_auto_leaves_large_regular_reps_to_the_spectral_path():
    G = eg.cyclic_group(8)
    rep = directsum([G.regular_representation] * 128)  # D = 1024: the spectral path never forms W
    assert GroupHomomorphismBasis(rep, rep).basis_expansion == "isotypic_expansion"


def test_orbit_gather_stores_one_gather_and_small_orbit_maps():
    in_rep, out_rep = rep_pair("ico-regular")
    cost = GroupHomomorphismBasis(in_rep, out_rep, "orbit_gather", dtype=torch.float32).cost()
    dense = in_rep.size * out_rep.size
    gather_and_orbit_maps = 8 * dense + 2 * 4 * 60 * 60 + 8 * cost.parameters  # gather, orbit map and its T
    lift_maps = 8 * (2 * dense + 3 * out_rep.size + cost.parameters)  # lifted node: s_out * D_in <= D_out * D_in
    assert cost.buffer_bytes <= gather_and_orbit_maps + lift_maps
    assert cost.expand_macs <= 2 * dense


# ------------------------------------------------------------------------------------------- batched calls
BATCH_CASES = ["C8-regular", "C5-complex-irreps", "D4-rotated", "D6-mixed", "SO2-bandlimited"]


@pytest.mark.parametrize("case_name", BATCH_CASES)
@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_batched_forward_matches_unbatched_calls(strategy, case_name):
    basis = _pair_basis(case_name, strategy)
    dof = torch.randn(2, 3, basis.dim, dtype=torch.float64)
    expected = torch.stack([basis(row) for row in dof.reshape(-1, basis.dim)]).view(2, 3, *basis.space.shape)
    torch.testing.assert_close(basis(dof), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("case_name", BATCH_CASES)
@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_batched_coefficients_and_projection_match_unbatched_calls(strategy, case_name):
    basis = _pair_basis(case_name, strategy)
    matrices = torch.randn(4, 1, *basis.space.shape, dtype=torch.float64)
    coefs = torch.stack([basis.coefficients(m[0]) for m in matrices]).view(4, 1, basis.dim)
    proj = torch.stack([basis.orthogonal_projection(m[0]) for m in matrices]).view_as(matrices)
    torch.testing.assert_close(basis.coefficients(matrices), coefs, atol=1e-12, rtol=0)
    torch.testing.assert_close(basis.orthogonal_projection(matrices), proj, atol=1e-12, rtol=0)


@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_batched_forward_gradient_is_the_batched_adjoint(strategy):
    basis = _pair_basis(mixed_case(strategy), strategy)
    dof = torch.randn(3, basis.dim, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, *basis.space.shape, dtype=torch.float64)
    (grad,) = torch.autograd.grad((basis(dof) * upstream).sum(), dof)
    torch.testing.assert_close(grad, basis.coefficients(upstream), atol=1e-12, rtol=0)


@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_initialize_params_leading_shape_and_return_dense(strategy):
    basis = _pair_basis("D4-rotated", strategy)
    draw = dict(generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dof = basis.initialize_params("xavier_uniform", leading_shape=(2, 5), **draw)
    draw["generator"] = torch.Generator().manual_seed(1)
    dense = basis.initialize_params("xavier_uniform", (2, 5), True, **draw)
    assert dof.shape == (2, 5, basis.dim)
    torch.testing.assert_close(dense, basis(dof), atol=1e-12, rtol=0)


def test_initialize_params_without_leading_shape_is_one_vector():
    basis = _pair_basis("C8-regular", "isotypic_expansion")
    assert basis.initialize_params().shape == (basis.dim,)
    assert basis.initialize_params(return_dense=True).shape == basis.space.shape


def test_batched_forward_of_an_empty_batch_is_empty():
    basis = _pair_basis("C8-regular", "isotypic_expansion")
    assert basis(torch.zeros(0, basis.dim, dtype=torch.float64)).shape == (0, *basis.space.shape)


def test_wrong_trailing_shape_names_the_expected_one():
    basis = _pair_basis("C8-regular", "isotypic_expansion")
    with pytest.raises(ValueError, match=f"must end in \\({basis.dim},\\)"):
        basis(torch.zeros(3, basis.dim + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="must end in"):
        basis.orthogonal_projection(torch.zeros(3, 2, 2, dtype=torch.float64))


@pytest.mark.parametrize("strategy", list(BASIS_STRATEGIES))
def test_paths_keep_only_the_named_isotypic_blocks(strategy):
    in_rep, out_rep = rep_pair(mixed_case(strategy))
    full = GroupHomomorphismBasis(in_rep, out_rep, strategy, dtype=torch.float64)
    first, *rest = full.space.shared
    part = GroupHomomorphismBasis(in_rep, out_rep, strategy, paths=[first.out.id], dtype=torch.float64)
    dof = torch.randn(full.dim, dtype=torch.float64)
    kept = dof.clone()
    kept[first.count :] = 0  # the first block's DoFs come first in the full layout
    assert part.dim == first.count and rest
    torch.testing.assert_close(part(dof[: first.count]), full(kept), atol=1e-12, rtol=0)


def test_unknown_path_is_refused_with_the_available_ones():
    in_rep, out_rep = rep_pair("C5-complex-irreps")
    with pytest.raises(ValueError, match="carry no equivariant path"):
        GroupHomomorphismBasis(in_rep, out_rep, paths=[(7,)])


def test_allow_empty_gives_the_zero_map():
    G = eg.cyclic_group(5)
    basis = GroupHomomorphismBasis(G.irrep(1), G.irrep(2), allow_empty=True, dtype=torch.float64)
    assert basis.dim == 0 and basis.basis_expansion == "zero_map"
    torch.testing.assert_close(basis(torch.zeros(0, dtype=torch.float64)), torch.zeros(2, 2, dtype=torch.float64))
    assert basis(torch.zeros(3, 0, dtype=torch.float64)).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="no equivariant map"):
        GroupHomomorphismBasis(G.irrep(1), G.irrep(2))
