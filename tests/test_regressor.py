import pytest
import torch
from conftest import rotated
from escnn import group as eg
from escnn.group import directsum

from symm_layers import eLinear
from symm_layers.models import CondTransformerRegressor, eCondTransformerRegressor
from symm_layers.models.regressor import PositionTable
from symm_layers.testing import group_elements

G = eg.dihedral_group(4)
IN_REP = directsum([G.irrep(1, 1)] * 2)
COND_REP = rotated(directsum([G.regular_representation, G.irrep(1, 1)]), 7)


def _model(**kw):
    options = dict(in_horizon=6, cond_horizon=3, num_layers=2, num_attention_heads=2, embedding_dim=32)
    options.update(p_drop_emb=0.0, p_drop_attn=0.0)
    options.update(kw)
    return eCondTransformerRegressor(IN_REP, COND_REP, None, **options)


def _inputs(dtype=torch.float32, batch=3, length=5, cond_length=2):
    X = torch.randn(batch, length, IN_REP.size, dtype=dtype)
    Z = torch.randn(batch, cond_length, COND_REP.size, dtype=dtype)
    return X, torch.rand(batch, dtype=dtype) * 50, Z


@pytest.mark.parametrize("norm_module", ["rmsnorm", "layernorm"])
@pytest.mark.parametrize("num_cond_layers", [0, 1])
@pytest.mark.parametrize("causal_attn", [False, True])
def test_regressor_is_equivariant(dtype, causal_attn, num_cond_layers, norm_module):
    model = _model(causal_attn=causal_attn, num_cond_layers=num_cond_layers, norm_module=norm_module, dtype=dtype)
    X, k, Z = _inputs(dtype)
    y = model(X, k, Z)
    for g in group_elements(G):
        r_in = torch.as_tensor(IN_REP(g), dtype=dtype)
        r_cond = torch.as_tensor(COND_REP(g), dtype=dtype)
        torch.testing.assert_close(model(X @ r_in.mT, k, Z @ r_cond.mT), y @ r_in.mT)


def test_regressor_with_diagonal_norm_affine_is_equivariant():
    G8 = eg.cyclic_group(8)
    rep = directsum([G8.regular_representation] * 2)
    model = eCondTransformerRegressor(rep, rep, None, 6, 3, 1, 2, 32, 0.0, 0.0, norm_affine="diagonal")
    X, Z, k = torch.randn(2, 4, rep.size), torch.randn(2, 2, rep.size), torch.tensor([3.0, 7.0])
    for g in group_elements(G8):
        r = torch.as_tensor(rep(g), dtype=torch.float32)
        torch.testing.assert_close(model(X @ r.mT, k, Z @ r.mT), model(X, k, Z) @ r.mT)


@pytest.mark.parametrize(
    "options",
    [
        {"norm_first": False},
        {"basis_expansion_scheme": "memory_heavy", "weight_cache": "uncached"},
        {"norm_module": "batchnorm", "norm_first": False},
    ],
    ids=["post-norm", "memory_heavy-uncached", "batchnorm-post-norm"],
)
def test_regressor_options_keep_equivariance(dtype, options):
    model = _model(num_cond_layers=1, dtype=dtype, **options).eval()
    X, k, Z = _inputs(dtype)
    y = model(X, k, Z)
    for g in group_elements(G):
        r_in = torch.as_tensor(IN_REP(g), dtype=dtype)
        r_cond = torch.as_tensor(COND_REP(g), dtype=dtype)
        torch.testing.assert_close(model(X @ r_in.mT, k, Z @ r_cond.mT), y @ r_in.mT)


def test_regressor_strategy_reaches_every_linear_map():
    model = _model(num_cond_layers=1, basis_expansion_scheme="memory_heavy", weight_cache="uncached")
    linears = [m for m in model.modules() if isinstance(m, eLinear)]
    assert linears and all(m.basis.basis_expansion == "memory_heavy" for m in linears)
    assert all(m.weight_cache.name == "uncached" for m in linears)


def test_regressor_post_norm_export_matches():
    model = _model(num_cond_layers=1, norm_first=False).eval()
    plain = model.export()
    assert all(not m.norm_first for m in plain.modules() if hasattr(m, "norm_first"))
    X, k, Z = _inputs()
    torch.testing.assert_close(plain(X, k, Z), model(X, k, Z))


def test_regressor_causal_attention_ignores_the_future():
    model = _model(causal_attn=True).eval()
    X, k, Z = _inputs()
    changed = X.clone()
    changed[:, -1] += 10
    torch.testing.assert_close(model(changed, k, Z)[:, :-1], model(X, k, Z)[:, :-1])


def test_regressor_timestep_changes_the_output():
    model = _model().eval()
    X, _, Z = _inputs()
    assert not torch.allclose(model(X, 1.0, Z), model(X, 40.0, Z))


def test_regressor_export_matches():
    model = _model(num_cond_layers=1).eval()
    plain = model.export()
    assert isinstance(plain, CondTransformerRegressor)
    X, k, Z = _inputs()
    torch.testing.assert_close(plain(X, k, Z), model(X, k, Z))


def test_optim_groups_cover_every_parameter_once():
    model = _model(num_cond_layers=1)
    decay, no_decay = model.get_optim_groups(0.05)
    ids = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    dofs = [m.weight_dof for m in model.modules() if isinstance(m, eLinear)]
    assert dofs and all(id(p) in decayed and p.dim() == 1 for p in dofs)  # 1-D DoFs decay: tagged by role
    tables = [m.table for m in model.modules() if isinstance(m, PositionTable)]
    assert tables and not any(id(p) in decayed for p in tables)
    torch.optim.AdamW(model.get_optim_groups(0.05), lr=1e-3)


def test_plain_regressor_runs_and_has_optim_groups():
    model = CondTransformerRegressor(4, 10, 3, 6, 3, num_layers=1, num_attention_heads=2, embedding_dim=16)
    X, Z = torch.randn(2, 4, 4), torch.randn(2, 3, 10)
    assert model(X, torch.tensor([1.0, 2.0]), Z).shape == (2, 4, 3)
    groups = model.get_optim_groups()
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_regressor_trains():
    model = _model()
    X, k, Z = _inputs(batch=8)
    target = torch.randn(8, 5, IN_REP.size)
    opt = torch.optim.AdamW(model.get_optim_groups(0.0), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (model(X, k, Z) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_embedding_dim_must_be_a_multiple_of_group_order():
    with pytest.raises(ValueError, match="embedding_dim: width 30 is not a positive multiple of \\|D4\\| = 8"):
        _model(embedding_dim=30)


def test_heads_must_not_split_regular_copies():
    with pytest.raises(ValueError, match="num_heads"):
        _model(num_attention_heads=3)


@pytest.mark.parametrize("shape", [(3, 7, 4), (3, 5, 5)])
def test_wrong_input_shapes_name_the_horizon(shape):
    model = _model()
    _, k, Z = _inputs()
    with pytest.raises(ValueError, match="in_horizon = 6"):
        model(torch.randn(*shape), k, Z)


def test_wrong_condition_horizon():
    model = _model()
    X, k, _ = _inputs()
    with pytest.raises(ValueError, match="cond_horizon = 3"):
        model(X, k, torch.randn(3, 4, COND_REP.size))


def test_regressor_state_dict_round_trip():
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    X, k, Z = _inputs()
    torch.testing.assert_close(a.eval()(X, k, Z), b.eval()(X, k, Z))


@pytest.mark.slow
def test_regressor_compiles():
    model = _model().eval()
    X, k, Z = _inputs()
    torch.testing.assert_close(torch.compile(model)(X, k, Z), model(X, k, Z))
