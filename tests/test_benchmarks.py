"""The benchmark definitions run and render: shared cases (escnn peer included), decision maps, their advice.

No timing is asserted: the figures of a smoke run mean nothing; only that every cell runs and renders.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from benchmarks import cases, decision_advice
from symm_layers.testing import equivariance_error


def test_escnn_peer_case_is_equivariant():
    case = cases.linear(cases.PEER, "C8", 16).case(4)
    case.module.eval()
    err = equivariance_error(case.on_features, case.in_rep, case.out_rep, case.probe)
    assert err.max_rel < 1e-4


def test_escnn_peer_train_step_reaches_input_and_parameters():
    case = cases.linear(cases.PEER, "C8", 16).case(4)
    case.module.train()
    case.train_step()
    assert case.leaves[0].grad is not None
    assert all(p.grad is not None for p in case.module.parameters() if p.requires_grad)


def test_linear_cases_share_inputs_across_implementations():
    x_plain = cases.linear(cases.PLAIN, "C8", 16).case(4).leaves[0]
    x_peer = cases.linear(cases.PEER, "C8", 16).case(4).leaves[0]
    torch.testing.assert_close(x_plain, x_peer)


def test_orbit_gather_refuses_a_sum_of_irreps():
    with pytest.raises(ValueError, match="permutation"):
        cases.linear("orbit_gather/cached", "D8-irreps", 20).construct()


def _raw(cells: dict[tuple[int, int], dict[str, float]]) -> pd.DataFrame:
    """A synthetic decision-map raw frame: ``(D, rows) -> {candidate: ratio}``, control at 1."""
    rows = []
    for (d, n), ratios in cells.items():
        base = {"axis": "basis_expansion", "layer": "linear", "group": "C8", "D": d, "rows": n, "threads": 1,
                "mode": "train", "status": "ok", "note": "", "ratio_q25": 0.99, "ratio_q75": 1.01}  # fmt: skip
        rows.append({**base, "candidate": "baseline", "role": "baseline", "ratio": 1.0})
        rows.append({**base, "candidate": "control", "role": "control", "ratio": 1.0})
        rows += [{**base, "candidate": c, "role": "candidate", "ratio": r} for c, r in ratios.items()]
    return pd.DataFrame(rows)


def test_recommendation_names_where_the_answer_flips():
    fast_small = {"orbit_gather": 1.0, "isotypic_expansion": 2.0}
    fast_large = {"orbit_gather": 2.0, "isotypic_expansion": 1.0}
    raw = _raw({(64, 8): fast_small, (64, 512): fast_small, (256, 8): fast_small, (256, 512): fast_small,
                (1024, 8): fast_large, (1024, 512): fast_large})  # fmt: skip
    advice = decision_advice.recommendations(raw)["basis_expansion"]
    assert advice.recommendation == "orbit_gather"
    assert advice.flips == ["isotypic_expansion wins for D = 1024 at every rows (C8; linear; train; 1 thread)"]


def test_margin_within_the_control_noise_is_a_tie():
    raw = _raw({(64, 8): {"orbit_gather": 1.0, "isotypic_expansion": 1.005}})
    assert decision_advice.winners(raw).winner.tolist() == [decision_advice.TIE]


@pytest.mark.slow
def test_decision_maps_smoke_profile_runs_and_renders(tmp_path):
    from benchmarks import decision_maps

    decision_maps.main(["--profile", "smoke", "--out", str(tmp_path)])
    raw = pd.read_csv(tmp_path / "raw.csv")
    refused = raw[(raw.status == "refused") & (raw.candidate == "orbit_gather")]
    assert set(refused.group) == {"D8-irreps"}
    assert (tmp_path / "basis_expansion.png").exists() and (tmp_path / "norm_affine.png").exists()
    assert "## Advice" in (tmp_path / "table.md").read_text()
    decision_maps.main(["--from-raw", "--out", str(tmp_path)])


@pytest.mark.slow
def test_linear_family_table_has_the_escnn_column(tmp_path):
    from benchmarks import linear_family

    linear_family.main(["--profile", "smoke", "--groups", "C8", "--dims", "16", "--batches", "4", "--out",
                        str(tmp_path)])  # fmt: skip
    table = (tmp_path / "table.md").read_text()
    assert "escnn.nn.Linear" in table and "auto / escnn" in table and "eLinear orbit_gather" in table


@pytest.mark.parametrize(("small", "full", "expected"), [(False, False, [64, 256]), (True, False, [64]),
                                                          (False, True, [64, 256, 1024])])  # fmt: skip
def test_asv_grid_follows_the_grid_variables(monkeypatch, small, full, expected):
    from benchmarks import _asv_common

    monkeypatch.setattr(_asv_common, "SMALL", small)
    monkeypatch.setattr(_asv_common, "FULL", full)
    assert _asv_common.grid([64, 256], [64, 256, 1024]) == expected


def test_asv_small_grid_takes_an_axis_own_small_values(monkeypatch):
    from benchmarks import _asv_common

    monkeypatch.setattr(_asv_common, "SMALL", True)
    monkeypatch.setattr(_asv_common, "FULL", False)
    assert _asv_common.grid([64, 256], [64, 256, 1024], small=[256]) == [256]


def test_asv_tables_command_names_the_small_grid(monkeypatch):
    from benchmarks import asv_tables

    monkeypatch.delenv("SYMM_BENCH_FULL", raising=False)
    monkeypatch.setenv("SYMM_BENCH_SMALL", "1")
    assert asv_tables._grid_prefix() == "SYMM_BENCH_SMALL=1 "


def _asv_time_benchmark(method: str, params: tuple):
    """asv_runner's own ``TimeBenchmark`` for ``bench_linear.Linear.<method>`` at ``params``, set up as asv does."""
    import itertools

    from asv_runner.benchmarks.time import TimeBenchmark

    from benchmarks import bench_linear

    suite = bench_linear.Linear()
    func = getattr(suite, method)
    bench = TimeBenchmark(f"bench_linear.Linear.{method}", func, [func, suite, bench_linear])
    bench.set_param_idx(list(itertools.product(*bench_linear.Linear.params)).index(params))
    assert not bench.do_setup()  # not skipped
    return bench


@pytest.mark.parametrize("method", ["time_eval_forward", "time_train_step"])
def test_asv_times_calibrated_samples_of_many_calls_not_single_calls(method):
    bench = _asv_time_benchmark(method, ("torch", "C8", 64, 256, "cpu"))
    bench.sample_time, bench.repeat, bench.warmup_time = 0.005, 3, 0.0
    result = bench.do_run()
    assert result["number"] > 1  # a ~0.02-0.2 ms call: asv calibrated many calls into each sample
    assert len(result["samples"]) == 3


def test_asv_construction_samples_stay_one_cold_call_each(monkeypatch):
    from benchmarks import _asv_common

    cleared = []
    monkeypatch.setattr(_asv_common, "clear_layer_memos", lambda: cleared.append(1))
    bench = _asv_time_benchmark("time_construction", ("isotypic_expansion/cached", "C8", 64, 256, "cpu"))
    result = bench.do_run()
    assert result["number"] == 1 and len(result["samples"]) == 5
    assert len(cleared) == 5  # the memos cleared before each of the five samples (once by do_setup, then between)


def test_interleaved_round_sample_is_the_median_block(monkeypatch):
    """A round reports the median of its block means (asv's statistic), not its fastest block."""
    from types import SimpleNamespace

    from benchmarks import common

    scripted = {"a": iter([1.0, 5.0, 2.0, 4.0, 3.0, 9.0]), "b": iter([7.0, 6.0, 8.0, 2.0, 2.0, 2.0])}
    monkeypatch.setattr(common, "seconds_per_call", lambda fn, sync, clock: 0.001)
    monkeypatch.setattr(common, "block_mean", lambda fn, number, sync, clock: next(scripted[fn()]))
    budget = SimpleNamespace(round_s=0.003, blocks=3)
    samples = common.interleaved({"a": lambda: "a", "b": lambda: "b"}, rounds=2, budget=budget)
    assert samples == {"a": [2.0, 4.0], "b": [7.0, 2.0]}
