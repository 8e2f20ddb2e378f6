"""The README's migration table ("Coming from symm-learning and e3nn-jax"): every row's snippet runs here.

Each row names a public name (with its default) of the reference library's layers (seeds 000, 001, 002, 004) or of
the e3nn-jax flax modules (seed 003), says what symm_layers does, and carries a one-line snippet that demonstrates
it. ``test_readme_table_is_current`` keeps README.md equal to :func:`render_table`; regenerate the section with
``python tests/test_migration.py`` after editing ``ROWS``.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F
from escnn.group import cyclic_group, directsum
from torch import nn

import symm_layers
from symm_layers import testing as sl_testing

# (source, reference name = default, what symm_layers does, snippet)
ROWS: list[tuple[str, str, str, str]] = [
    # ---------------------------------------------------------------- seed 000: eRMSNorm
    ("eRMSNorm", "`eRMSNorm(in_rep, ...)`", "same", "assert eRMSNorm(rep)(x).shape == x.shape"),
    ("eRMSNorm", "`eps=1e-06`", "same", "assert eRMSNorm(rep).eps == 1e-6"),
    ("eRMSNorm", "`equiv_affine=True` (eAffine after the norm)", "same",
     "assert isinstance(eRMSNorm(rep).affine, eAffine) and eRMSNorm(rep, equiv_affine=False).affine is None"),
    ("eRMSNorm", "`device=None, dtype=None`", "same",
     "assert eRMSNorm(rep, dtype=torch.float64)(x.double()).dtype == torch.float64"),
    ("eRMSNorm", "`init_scheme='identity'` (`'random'`, `None` skips)", "same",
     "torch.testing.assert_close(eRMSNorm(rep, init_scheme='identity')(x), F.rms_norm(x, (8,), eps=1e-6))"),
    ("eRMSNorm", "`forward(input)`, `(..., D)`", "same", "assert eRMSNorm(rep)(seq).shape == seq.shape"),
    ("eRMSNorm", "`reset_parameters(scheme='identity')`", "same",
     "n = eRMSNorm(rep); n.reset_parameters(scheme='random'); n.check_equivariance()"),
    ("eRMSNorm", "—", "extra: `affine='diagonal'` (orbit-constant affine fused into `F.rms_norm`, permutation reps)",
     "eRMSNorm(rep, affine='diagonal').check_equivariance()"),
    # ---------------------------------------------------------------- seed 001: impose_linear_equivariance
    ("impose_linear_equivariance", "`impose_linear_equivariance(lin, in_rep, out_rep, "
     "basis_expansion_scheme='isotypic_expansion')`", "same (parametrizations: weight projected onto Hom_G, bias "
     "onto invariants; sets `lin.in_rep`, `lin.out_rep`)",
     "lin = nn.Linear(8, 8); impose_linear_equivariance(lin, rep, rep); assert_equivariant(lin, rep, rep)"),
    # ---------------------------------------------------------------- seed 001: eLinear
    ("eLinear", "`eLinear(in_rep, out_rep, bias=True, init_scheme='xavier_normal', "
     "basis_expansion_scheme='isotypic_expansion')`", "same names, order and defaults",
     "assert eLinear(rep, rep, True, 'xavier_normal', 'isotypic_expansion')(x).shape == (2, 8)"),
    ("eLinear", "`basis_expansion_scheme`: `'isotypic_expansion'`, `'memory_heavy'`", "same, plus `'reference'`",
     "assert set(BASIS_STRATEGIES) >= {'isotypic_expansion', 'memory_heavy', 'reference'}"),
    ("eLinear", "`eINIT_SCHEMES`", "renamed: `symm_layers.basis.INIT_SCHEMES` (same four names)",
     "assert set(INIT_SCHEMES) == {'xavier_normal', 'xavier_uniform', 'kaiming_normal', 'kaiming_uniform'}"),
    ("eLinear", "bases `torch.nn.Linear`", "different by design: an `EquivariantModule` (no unused dense "
     "parameters); `export()` returns an `nn.Linear` with the same outputs",
     "l = eLinear(rep, rep); assert not isinstance(l, nn.Linear) and isinstance(l.export(), nn.Linear)"),
    ("eLinear", "`homo_basis` (GroupHomomorphismBasis)", "renamed: `basis`",
     "assert isinstance(eLinear(rep, rep).basis, GroupHomomorphismBasis)"),
    ("eLinear", "`weight_dof`, `weight`, `bias`, `bias_module`", "same",
     "l = eLinear(rep, rep); torch.testing.assert_close(l(x), x @ l.weight.T + l.bias); "
     "assert isinstance(l.bias_module, InvariantBias) and l.weight_dof.shape == (l.basis.dim,)"),
    ("eLinear", "`expand_weight()`", "renamed: the `weight` property (expands, cached while the DoFs are unchanged)",
     "l = eLinear(rep, rep); torch.testing.assert_close(l.weight, l.basis(l.weight_dof))"),
    ("eLinear", "`reset_parameters(scheme='xavier_normal')`", "same (`scheme=None`: the constructor's)",
     "l = eLinear(rep, rep); l.reset_parameters(scheme='kaiming_uniform'); l.check_equivariance()"),
    ("eLinear", "`invalidate_cache()`, `train()`/`load_state_dict()` cache handling", "different by design: no manual "
     "invalidation; a cached weight is keyed on the DoFs' version, so in-place edits are always seen",
     "l = eLinear(rep, rep).eval(); w = l.weight.detach().clone(); l.weight_dof.data.mul_(2); "
     "torch.testing.assert_close(l.weight.detach(), 2 * w)"),
    ("eLinear", "train: recompute; eval: cached weight", "different by design: calls without autograd reuse the "
     "cached weight in either mode; an `eval()` call with gradients enabled still yields gradients",
     "l = eLinear(rep, rep).eval(); l(x).sum().backward(); assert l.weight_dof.grad is not None"),
    # ---------------------------------------------------------------- seed 001: InvariantBias
    ("InvariantBias", "`InvariantBias(in_rep)`, `forward(input)`, identity without a trivial irrep", "same",
     "assert InvariantBias(rep)(x).shape == x.shape and InvariantBias(G.irrep(1)).bias is None"),
    ("InvariantBias", "`has_bias`, `bias_dof`, `bias`, `in_rep`, `out_rep`", "same",
     "b = InvariantBias(rep, init_scheme='uniform'); assert b.has_bias and b.bias_dof.shape == (2,); "
     "assert_equivariant(lambda v: v * 0 + b.bias, rep, rep)"),
    ("InvariantBias", "`reset_parameters(scheme='zeros')`", "different by design: `'zeros'` leaves zeros (the "
     "reference then draws a uniform bias anyway); `'uniform'` draws `U(±1/sqrt(D))`",
     "b = InvariantBias(rep); b.reset_parameters('zeros'); assert b.bias_dof.abs().sum() == 0"),
    ("InvariantBias", "`Qout`, `spectral_trivial_mask`, `expand_bias()`, `expand_bias_spectral_basis()`, "
     "`invalidate_cache()`, `refresh_eval_cache()`", "different by design: `bias` expands (cached by parameter "
     "version); `subspace` applies the change of basis block-wise, no dense `Q` is stored",
     "b = InvariantBias(rep, init_scheme='uniform'); "
     "torch.testing.assert_close(b.bias, b.subspace.expand(b.bias_dof))"),
    # ---------------------------------------------------------------- seed 001: eAffine
    ("eAffine", "`eAffine(in_rep, bias=True, learnable=True, init_scheme='identity')`", "same",
     "torch.testing.assert_close(eAffine(rep, True, True, 'identity')(x), x)"),
    ("eAffine", "`forward(input, scale_dof=None, bias_dof=None)` (FiLM when `learnable=False`)", "same",
     "a = eAffine(rep, learnable=False); a(x, torch.rand(2, a.num_scale_dof), torch.rand(2, a.num_bias_dof))"),
    ("eAffine", "`num_scale_dof`, `num_bias_dof`", "same (one scale per irrep copy, in `in_rep.irreps` order)",
     "a = eAffine(rep); assert (a.num_scale_dof, a.num_bias_dof) == (len(rep.irreps), 2)"),
    ("eAffine", "`reset_parameters(scheme='identity')` (`'random'`: `U(-1, 1)`)", "same",
     "a = eAffine(rep); a.reset_parameters('random'); a.check_equivariance()"),
    ("eAffine", "`rep_x`", "renamed: `in_rep` (= `out_rep`)", "assert eAffine(rep).in_rep is rep"),
    ("eAffine", "`Q`, `Q_inv`, `expand_affine()`, `broadcast_spectral_scale_and_bias()`, `bias_module`, "
     "`invalidate_cache()`", "different by design: block-wise change of basis (`change`); the dense map is "
     "`export()` (an `nn.Linear`); the bias is the parameter `bias_dof`",
     "a = eAffine(rep, init_scheme='random'); torch.testing.assert_close(a.export()(x), a(x))"),
    # ---------------------------------------------------------------- GroupHomomorphismBasis (used by seed 001)
    ("GroupHomomorphismBasis", "`GroupHomomorphismBasis(in_rep, out_rep, basis_expansion=...)`, `dim`", "same",
     "B = GroupHomomorphismBasis(rep, rep, 'memory_heavy'); assert B.dim == 16"),
    ("GroupHomomorphismBasis", "`forward(w)` with `w` of shape `(..., dim)`", "same (leading batch dims)",
     "B = GroupHomomorphismBasis(rep, rep); assert B(torch.randn(5, B.dim)).shape == (5, 8, 8)"),
    ("GroupHomomorphismBasis", "`orthogonal_projection(W)`, `(..., D_out, D_in)`", "same (leading batch dims)",
     "B = GroupHomomorphismBasis(rep, rep); W = torch.randn(3, 8, 8); "
     "torch.testing.assert_close(B.orthogonal_projection(B.orthogonal_projection(W)), B.orthogonal_projection(W))"),
    ("GroupHomomorphismBasis", "coefficients of a dense map", "`coefficients(W)`, `(..., D_out, D_in) -> (..., dim)`",
     "B = GroupHomomorphismBasis(rep, rep); w = torch.randn(3, B.dim); "
     "torch.testing.assert_close(B.coefficients(B(w)), w)"),
    ("GroupHomomorphismBasis", "`initialize_params(scheme, leading_shape=None, return_dense=False)`", "same",
     "B = GroupHomomorphismBasis(rep, rep); "
     "assert B.initialize_params('xavier_uniform', (4,), True).shape == (4, 8, 8)"),
    # ---------------------------------------------------------------- seed 002: eTransformerEncoderLayer
    ("eTransformerEncoderLayer", "`eTransformerEncoderLayer(in_rep, self_attn, ...)`, bases `eModule`",
     "same; bases `EquivariantModule`",
     "assert isinstance(eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16), EquivariantModule)"),
    ("eTransformerEncoderLayer", "`dim_feedforward=2048` (regular hidden representation)",
     "same (a multiple of the group order)",
     "assert inspect.signature(eTransformerEncoderLayer).parameters['dim_feedforward'].default == 2048; "
     "assert eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16).linear1.out_features == 16"),
    ("eTransformerEncoderLayer", "`dropout=0.1`", "same",
     "assert eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16).dropout.p == 0.1"),
    ("eTransformerEncoderLayer", "`activation=GELU()` (a module instance)", "different by design: default `'gelu'`; "
     "a name, a factory, or a module (deep-copied per layer, never shared)",
     "e = eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16, activation=nn.GELU()); "
     "assert isinstance(e.activation, nn.GELU)"),
    ("eTransformerEncoderLayer", "`layer_norm_eps=1e-05`", "same",
     "assert eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16).norm1.eps == 1e-5"),
    ("eTransformerEncoderLayer", "`norm_first=True`", "same",
     "assert eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16).norm_first"),
    ("eTransformerEncoderLayer", "`norm_module='rmsnorm'` (`'layernorm'`)", "same, plus `'batchnorm'`",
     "assert isinstance(eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16).norm1, eRMSNorm)"),
    ("eTransformerEncoderLayer", "`norm_module='layernorm'` (eLayerNorm)", "different by design: centres along the "
     "invariant part of the all-ones vector (the mean for permutation reps, nothing without trivial irreps), "
     "`eps=layer_norm_eps` (1e-5, torch's LayerNorm default; eRMSNorm's own default is 1e-6)",
     "torch.testing.assert_close(eLayerNorm(rep)(x), F.layer_norm(x, (8,), eps=1e-5))"),
    ("eTransformerEncoderLayer", "`bias=True`", "same (invariant biases of the feed-forward maps)",
     "assert eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16, bias=False).linear1.bias is None"),
    ("eTransformerEncoderLayer", "`device=None, dtype=None`", "same",
     "e = eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1, dtype=torch.float64), 16, dtype=torch.float64); "
     "e.check_equivariance()"),
    ("eTransformerEncoderLayer", "`init_scheme='xavier_uniform'`", "same",
     "eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16, init_scheme='xavier_uniform')"),
    ("eTransformerEncoderLayer", "`forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False, *, "
     "src_positions=None, src_position_mask=None)`", "same",
     "e = eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16); "
     "assert e(seq, None, None, True, src_positions=None, src_position_mask=None).shape == seq.shape"),
    ("eTransformerEncoderLayer", "`PositionalAttentionBase` self-attention backends", "renamed: "
     "`eAbsolutePositionalAttention`, `eRelativePositionalAttention`",
     "eTransformerEncoderLayer(rep, eRelativePositionalAttention(rep, 1, max_distance=4), 16).check_equivariance()"),
    ("eTransformerEncoderLayer", "`check_equivariance(batch_size=4, seq_len=5, samples=20, atol=1e-4, rtol=1e-4)`",
     "same keywords on every equivariant module and model; different by design: `atol`/`rtol` default to the "
     "dtype's tolerance (float32 1e-5, float64 1e-12), every element of a finite group is checked (`samples`: "
     "draws for infinite groups), raises `AssertionError`, returns the measured error",
     "e = eTransformerEncoderLayer(rep, eMultiheadAttention(rep, 1), 16); "
     "e.check_equivariance(batch_size=4, seq_len=5, samples=20, atol=1e-4, rtol=1e-4)"),
    ("eTransformerDecoderLayer", "`eTransformerDecoderLayer(in_rep, self_attn, multihead_attn, ...)`", "same; "
     "`multihead_attn=` and `cross_attn=` both name the cross-attention (both: `TypeError`)",
     "d = eTransformerDecoderLayer(rep, eMultiheadAttention(rep, 1), multihead_attn=eMultiheadAttention(rep, 1), "
     "dim_feedforward=16); assert d(seq, seq).shape == seq.shape"),
    # ---------------------------------------------------------------- seed 004: eCondTransformerRegressor
    ("eCondTransformerRegressor", "`eCondTransformerRegressor(in_rep, cond_rep, out_rep, in_horizon, cond_horizon, "
     "num_layers, num_attention_heads, embedding_dim)`", "same (`out_rep=None`: `in_rep`)",
     "m = eCondTransformerRegressor(rep, rep, None, 3, 2, 1, 1, 8); assert m.out_rep is rep"),
    ("eCondTransformerRegressor", "`embedding_dim`: a multiple of the group order", "same (clear error otherwise)",
     "pytest.raises(ValueError, eCondTransformerRegressor, rep, rep, rep, 3, 2, 1, 1, 10)"),
    ("eCondTransformerRegressor", "`p_drop_emb=0.1, p_drop_attn=0.1`", "same",
     "m = eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8); assert m.drop.p == 0.1"),
    ("eCondTransformerRegressor", "`causal_attn=False`", "same",
     "assert eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8, causal_attn=True).causal_attn"),
    ("eCondTransformerRegressor", "`num_cond_layers=0` (eMLP encoder; > 0: encoder layers)", "same",
     "assert isinstance(eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8).encoder, eMLP)"),
    ("eCondTransformerRegressor", "`norm_module='rmsnorm'`, `init_scheme='xavier_uniform'`", "same",
     "eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8, 0.1, 0.1, False, 1, 'layernorm', 'xavier_uniform')"),
    ("eCondTransformerRegressor", "`forward(X, opt_step, Z)`", "same",
     "m = eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8); assert m(seq, 0.5, seq[:, :2]).shape == seq.shape"),
    ("eCondTransformerRegressor", "`get_optim_groups(weight_decay=0.001)`", "same (two groups: linear-map DoFs "
     "decay; biases, norms, positions do not)",
     "m = eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8); torch.optim.AdamW(m.get_optim_groups(0.001))"),
    ("eCondTransformerRegressor", "`reset_parameters(scheme='xavier_uniform')`", "same",
     "eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8).reset_parameters(scheme='xavier_uniform')"),
    ("eCondTransformerRegressor", "bases `GenCondRegressor`; `check_equivariance`", "bases `EquivariantModule`; "
     "`check_equivariance()` acts on `X` and `Z` together",
     "eCondTransformerRegressor(rep, rep, rep, 3, 2, 1, 1, 8).check_equivariance(atol=1e-4, rtol=1e-4)"),
    ("eMLP", "`eMLP(..., hidden_units=[64, 64])` with a width that is not a multiple of the group order",
     "same: rounded up to whole regular copies, with a `UserWarning` naming the width used",
     "m = pytest.warns(UserWarning, eMLP, rep, rep, [10]); assert m.hidden_reps[0].size == 12"),
    # ---------------------------------------------------------------- seed 003: e3nn_jax.flax.Linear
    ("e3nn Linear", "`Linear(irreps_out, irreps_in=None)`; `irreps_in` inferred at the first call", "different by "
     "design: `eLinear(in_rep, out_rep)`, both required (torch creates parameters when the layer is built)",
     "assert eLinear(rep, G.trivial_representation)(x).shape == (2, 1)"),
    ("e3nn Linear", "output irreps no path reaches are discarded; `force_irreps_out=False`", "different by design: "
     "`out_rep` is kept whole (unreached irreps are zero); `force_irreps_out=True` builds the zero map where "
     "dim Hom_G = 0 instead of raising",
     "l = eLinear(G.irrep(1), G.trivial_representation, force_irreps_out=True, bias=False); "
     "assert l(torch.randn(3, 2)).abs().sum() == 0"),
    ("e3nn Linear", "`channel_out=None`", "same, with `channel_in=` (the input's channel axis size, required)",
     "l = eLinear(rep, rep, channel_in=3, channel_out=2); assert l(torch.randn(5, 3, 8)).shape == (5, 2, 8)"),
    ("e3nn Linear", "`weights_per_channel=False`", "same, with `channel_in=`",
     "l = eLinear(rep, rep, channel_in=3, weights_per_channel=True); assert l.weight_dof.shape == (3, 16)"),
    ("e3nn Linear", "`gradient_normalization=None` (config: `'element'`; `'path'`; float)", "same names, default "
     "`'element'`; floats are not accepted",
     "assert eLinear(rep, rep, gradient_normalization='path').dof_scale.shape == (16,)"),
    ("e3nn Linear", "`path_normalization=None` (config: `'element'`; `'path'`; float)", "same values; `None` "
     "(default) keeps torch's init per isotypic block. A path is an isotypic block, one per output irrep type, so "
     "`'element'`, `'path'` and any float give the same `alpha = d / (m_in e)`",
     "l = eLinear(rep, rep, path_normalization='path', gradient_normalization='path'); l.check_equivariance()"),
    ("e3nn Linear", "`biases=False` (bias on scalar outputs)", "renamed: `bias=True` (torch's default; invariant "
     "bias on the trivial irreps, per output channel with channels)",
     "assert eLinear(rep, rep, bias=False).bias is None"),
    ("e3nn Linear", "`instructions=None`: `(i_in, i_out)` index pairs", "different by design: a list of escnn irrep "
     "ids (or irreps) whose isotypic path carries weights; the others own no DoFs",
     "l = eLinear(rep, rep, instructions=[G.trivial_representation.id]); assert l.weight_dof.shape == (4,)"),
    ("e3nn Linear", "`num_indexed_weights=None`; call `linear(i, x)`", "same; call `layer(x, weight_index=i)`",
     "l = eLinear(rep, rep, num_indexed_weights=3); assert l(x, weight_index=torch.tensor([0, 2])).shape == (2, 8)"),
    ("e3nn Linear", "external weights: call `linear(w, x)`", "renamed: `external_weights=True`; call "
     "`layer(x, weight_dof=w)`",
     "l = eLinear(rep, rep, external_weights=True); assert l(x, weight_dof=torch.randn(2, 16)).shape == (2, 8)"),
    ("e3nn Linear", "`parameter_initializer=None` (a callable)", "different by design: `init_scheme` names one of "
     "torch's four schemes, matched per isotypic block",
     "l = eLinear(rep, rep, init_scheme='kaiming_normal'); assert l.init_scheme == 'kaiming_normal'"),
    ("e3nn Linear", "`simplify_irreps_internally=True`", "not offered: the layer always works in the isotypic "
     "decomposition (always simplified)", "assert len(eLinear(rep, rep).basis.space.shared) == 3"),
    ("e3nn Linear", "`parent=None`, `name=None` (flax)", "not offered: torch names submodules by attribute",
     "assert dict(nn.Sequential(eLinear(rep, rep)).named_children()).keys() == {'0'}"),
    # ---------------------------------------------------------------- seed 003: MultiLayerPerceptron
    ("e3nn MultiLayerPerceptron", "`MultiLayerPerceptron(list_neurons)` (scalars only)", "different by design: "
     "`MLP(in_dim, out_dim, hidden_units)` (plain) and `eMLP(in_rep, out_rep, hidden_units)` (equivariant)",
     "assert MLP(4, 2, [16]).features == (4, 16, 2) and eMLP(rep, rep, [16])(x).shape == (2, 8)"),
    ("e3nn MultiLayerPerceptron", "`act=None`", "renamed: `activation='gelu'` (name, factory or module)",
     "assert isinstance(MLP(4, 2, [16], activation='relu').stack.layers[1], nn.ReLU)"),
    ("e3nn MultiLayerPerceptron", "`gradient_normalization=None` (config default `'path'`)", "same values; default "
     "`'element'` (torch's convention)", "MLP(4, 2, [16], gradient_normalization='path')"),
    ("e3nn MultiLayerPerceptron", "`output_activation=True`", "same name; default `False` (a regression head)",
     "assert not isinstance(MLP(4, 2, [16]).stack.layers[-1], nn.GELU)"),
    ("e3nn MultiLayerPerceptron", "`with_bias=False`", "renamed: `bias=True` (torch's default; invariant biases in "
     "eMLP)", "assert not any('bias' in n for n, _ in eMLP(rep, rep, [16], bias=False).named_parameters())"),
    # ---------------------------------------------------------------- seed 003: BatchNorm
    ("e3nn BatchNorm", "`BatchNorm(...)` on `irreps`", "`eBatchNorm(in_rep, ...)` (statistics per irrep copy)",
     "eBatchNorm(rep).check_equivariance()"),
    ("e3nn BatchNorm", "`use_running_average=None`", "same (`None` follows `train()`/`eval()`)",
     "b = eBatchNorm(rep, use_running_average=True); torch.testing.assert_close(b(x), b.eval()(x))"),
    ("e3nn BatchNorm", "`eps=0.0001`: `(1 - eps) * norm + eps`", "different default: `eps=1e-5` added (torch); "
     "e3nn's meaning with `eps_mode='interpolate'`",
     "b = eBatchNorm(rep, eps=1e-4, eps_mode='interpolate'); b.check_equivariance()"),
    ("e3nn BatchNorm", "`momentum=0.1`", "same (`new = (1 - m) old + m batch`)",
     "assert eBatchNorm(rep).momentum == 0.1"),
    ("e3nn BatchNorm", "`affine=True`", "same (scale per irrep copy, bias on trivial copies)",
     "assert eBatchNorm(rep, affine=False).weight is None"),
    ("e3nn BatchNorm", "`reduce='mean'` (`'max'`)", "same", "eBatchNorm(rep, reduce='max').check_equivariance()"),
    ("e3nn BatchNorm", "`instance=False`", "same (instance: statistics over the token axes)",
     "eBatchNorm(rep, instance=True).check_equivariance()"),
    ("e3nn BatchNorm", "`normalization=None` (config `'component'`; `'norm'`)", "same values, default `'component'`",
     "assert eBatchNorm(rep).normalization == 'component'"),
]  # fmt: skip


def namespace() -> dict:
    """What every snippet sees: C4, ``rep`` = two regular copies (8 features), ``x`` (2, 8), ``seq`` (2, 3, 8)."""
    G = cyclic_group(4)
    rep = directsum([G.regular_representation] * 2)
    env = {name: getattr(symm_layers, name) for name in symm_layers.__all__}
    env.update(
        G=G, rep=rep, x=torch.randn(2, 8), seq=torch.randn(2, 3, 8), torch=torch, nn=nn, F=F, pytest=pytest,
        inspect=inspect,
        assert_equivariant=sl_testing.assert_equivariant, EquivariantModule=symm_layers.module.EquivariantModule,
        INIT_SCHEMES=symm_layers.basis.INIT_SCHEMES,
    )  # fmt: skip
    return env


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{row[0]}" for i, row in enumerate(ROWS)])
def test_row_snippet_runs(row):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a snippet must not warn unless it says so (pytest.warns)
        warnings.filterwarnings("ignore", message=".*py3nj.*")
        exec(row[3], namespace())


def render_table() -> str:
    lines = ["| from | reference name and default | symm_layers | snippet (run by `tests/test_migration.py`) |",
             "|---|---|---|---|"]  # fmt: skip
    for source, reference, ours, snippet in ROWS:
        lines.append(f"| {source} | {reference} | {ours} | `{snippet}` |")
    return "\n".join(lines) + "\n"


START, END = "<!-- migration table: generated by tests/test_migration.py -->\n", "<!-- end of migration table -->\n"


def write_readme(path: str = "README.md") -> None:
    """Replace the text between the table markers in README.md by :func:`render_table`."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(head + START + render_table() + END + tail)


def test_readme_table_is_current():
    with open("README.md", encoding="utf-8") as handle:
        readme = handle.read()
    assert START + render_table() + END in readme, "README table is stale: run python tests/test_migration.py"


def test_every_row_snippet_is_one_markdown_cell():
    for _, reference, ours, snippet in ROWS:
        assert "|" not in reference + ours + snippet and "`" not in snippet


if __name__ == "__main__":
    write_readme()
