"""Ablation harness: tasks, sweep runner (resume, determinism, backends), plot step, tables and guide."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from ablations import guide, report, study_cache, study_equivariance, study_equivariance_sequence, summary, sweep
from ablations.common import STUDY_MODULES, main, regressor
from ablations.run_all import _estimate as plan_estimate
from ablations.run_all import plan as plan_studies
from ablations.stats import MIN_SEEDS, bootstrap_ci, paired
from ablations.sweep import Job, PlanStage, next_rate, run_sweep, select_lr, tuned_sweep
from ablations.tables import budget_criterion, budget_limited, lr_at_edge
from ablations.tasks import RingOscillators, RingRegression, make_splits, ring_group
from ablations.train import FlowMatching, PlateauDetector, PlateauThenAnneal, Regression, TrainConfig, evaluate, fit
from symm_layers.testing import group_elements

TINY = ["--train-sizes", "16", "32", "--seeds", "2", "--steps", "6", "--eval-every", "3", "--eval-size", "32",
        "--equivariant-widths", "32", "--lr-grid", "0.01", "0.003", "--no-progress"]  # fmt: skip
#: Metrics that measure time or memory: they differ between identical runs.
MEASURED = {"time_per_step_ms", "infer_ms_per_batch", "peak_train_rss_mib", "construction_rss_mib"}


def tiny_jobs(models=("equivariant", "plain/augmented")):
    config = dataclasses.replace(study_equivariance.Config(), models=models, train_sizes=(16,), seeds=2, steps=6,
                                 eval_every=3, eval_size=32, equivariant_widths=(32,))  # fmt: skip
    return study_equivariance.jobs(config)


def deterministic_part(frame: pd.DataFrame) -> pd.DataFrame:
    kept = frame[~frame.metric.isin(MEASURED)].drop(columns=["wall_time"])
    return kept.sort_values(["run_id", "step", "metric"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- tasks
def test_ring_representation_shifts_and_reflects_the_sites():
    G, site = ring_group(8)
    rotation, reflection = G.generators
    assert np.argmax(site(rotation), axis=0).tolist() == [(i + 1) % 8 for i in range(8)]
    assert np.argmax(site(reflection), axis=0).tolist() == [(-i) % 8 for i in range(8)]


def test_oscillator_flow_commutes_with_the_group():
    task = RingOscillators()
    G, rep, _ = task.group_and_reps
    q, v = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    stepped = torch.cat(task._step(q, v), dim=-1)
    for g in group_elements(G):
        r = torch.as_tensor(rep(g))
        moved = torch.cat([q, v], dim=-1) @ r.mT
        torch.testing.assert_close(torch.cat(task._step(moved[:, :8], moved[:, 8:]), dim=-1), stepped @ r.mT)


def test_regression_target_is_equivariant():
    task = RingRegression()
    G, in_rep, out_rep = task.group_and_reps
    x = torch.randn(7, in_rep.size, dtype=torch.float64)
    for g in group_elements(G):
        r_in, r_out = torch.as_tensor(in_rep(g)), torch.as_tensor(out_rep(g))
        torch.testing.assert_close(task.function(x @ r_in.mT), task.function(x) @ r_out.mT)


@pytest.mark.parametrize("task", [RingOscillators(horizon=3), RingRegression()], ids=["sequence", "static"])
def test_splits_are_reproducible_and_distinct(task):
    sizes = {"train": 20, "val": 10, "test": 10}
    first, again = make_splits(task, sizes, data_seed=3), make_splits(task, sizes, data_seed=3)
    for name in sizes:
        torch.testing.assert_close(first[name].inputs, again[name].inputs)
        assert len(first[name]) == sizes[name]
    assert not torch.equal(first["train"].inputs[:10], first["test"].inputs)


# ----------------------------------------------------------------------------------------------- sweep runner
def _flaky(job, fail_on: str, calls: list):
    calls.append(job.run_id)
    if job.run_id == fail_on:
        raise KeyboardInterrupt  # an interruption mid-sweep, not an ordinary failure
    return study_equivariance.run(job)


def test_interrupted_sweep_resumes_without_redoing_finished_runs(tmp_path):
    jobs = tiny_jobs()
    first_calls, second_calls = [], []
    with pytest.raises(KeyboardInterrupt):
        run_sweep(jobs, functools.partial(_flaky, fail_on=jobs[2].run_id, calls=first_calls), tmp_path,
                  backend="serial", progress=False)  # fmt: skip
    saved = {p.stem: pd.read_csv(p) for p in (tmp_path / "runs").glob("*.csv")}
    assert sorted(saved) == sorted(job.run_id for job in jobs[:2])
    frame = run_sweep(jobs, functools.partial(_flaky, fail_on="", calls=second_calls), tmp_path, backend="serial",
                      progress=False)  # fmt: skip
    assert second_calls == [job.run_id for job in jobs[2:]]
    for run_id, rows in saved.items():
        pd.testing.assert_frame_equal(frame[frame.run_id == run_id][rows.columns].reset_index(drop=True), rows)
    assert sorted(frame.run_id.unique()) == sorted(job.run_id for job in jobs)


def _counted(job, calls: list):
    calls.append(job.run_id)
    return [{"step": step, "wall_time": 0.1 * step, "metric": "val_loss", "value": 1.0 / (step + 1) + job.seed / 3}
            for step in range(3)]  # fmt: skip


def test_a_written_table_holds_its_runs_and_a_later_sweep_reuses_them(tmp_path):
    jobs = [Job("s", label, seed, {"width": 32, "lr": 1e-3}) for label in ("a", "b") for seed in range(2)]
    first, second = [], []
    table = run_sweep(jobs[:3], functools.partial(_counted, calls=first), tmp_path, backend="serial", progress=False)
    assert not list((tmp_path / "runs").glob("*.csv"))  # the table absorbed the run files: a clone needs only it
    text = (tmp_path / "metrics.csv").read_text().splitlines()
    frame = run_sweep(jobs, functools.partial(_counted, calls=second), tmp_path, backend="serial", progress=False)
    assert len(first) == 3 and second == [jobs[3].run_id]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[: len(text)] == text  # copied verbatim
    pd.testing.assert_frame_equal(frame.iloc[: len(table)], table)


def test_runs_saved_before_an_interruption_survive_a_table_rewrite(tmp_path):
    jobs = [Job("s", "a", seed, {"lr": 1e-3}) for seed in range(4)]
    calls = []
    run_sweep(jobs[:2], functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(jobs, functools.partial(_flaky_counted, fail_on=jobs[3].run_id, calls=calls), tmp_path,
                  backend="serial", progress=False)  # fmt: skip
    assert [p.stem for p in (tmp_path / "runs").glob("*.csv")] == [jobs[2].run_id]
    frame = run_sweep(jobs, functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    assert calls == [job.run_id for job in jobs] and frame.run_id.nunique() == 4


def test_runs_a_rewritten_table_drops_go_back_to_their_files(tmp_path):
    jobs = [Job("s", "a", seed, {"lr": 1e-3}) for seed in range(4)]
    calls = []
    run_sweep(jobs, functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    run_sweep(jobs[:2], functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    assert sorted(p.stem for p in (tmp_path / "runs").glob("*.csv")) == sorted(job.run_id for job in jobs[2:])
    run_sweep(jobs, functools.partial(_counted, calls=calls), tmp_path, table="tuning.csv", backend="serial",
              progress=False)  # fmt: skip
    run_sweep(jobs[:1], functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    assert not list((tmp_path / "runs").glob("*.csv"))  # tuning.csv still holds the three metrics.csv dropped
    assert len(calls) == 4


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _never(job):
    raise AssertionError(f"a dry run trained {job.run_id}")


def test_a_dry_run_counts_the_runs_left_and_trains_and_writes_nothing(tmp_path):
    jobs = [Job("s", label, seed, {"lr": 1e-3}) for label in ("a", "b") for seed in range(2)]
    plan = []
    assert run_sweep(jobs, _never, tmp_path / "new", plan=plan) is None and not (tmp_path / "new").exists()
    assert plan == [PlanStage("metrics.csv", 4, 4)]
    calls = []
    run_sweep(jobs[:1], functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    run_sweep(jobs[1:3], functools.partial(_counted, calls=calls), tmp_path, table="other.csv", backend="serial",
              progress=False)  # fmt: skip
    before = _snapshot(tmp_path)
    assert run_sweep(jobs, _never, tmp_path, plan=plan) is None
    assert plan == [PlanStage("metrics.csv", 4, 1)] and _snapshot(tmp_path) == before
    frame = run_sweep(jobs, functools.partial(_counted, calls=calls), tmp_path, backend="serial", progress=False)
    before = _snapshot(tmp_path)
    pd.testing.assert_frame_equal(run_sweep(jobs, _never, tmp_path, plan=plan), frame)
    assert plan == [PlanStage("metrics.csv", 4, 0)] and _snapshot(tmp_path) == before


def test_a_dry_run_estimates_time_from_saved_runs_of_the_same_configuration(tmp_path):
    jobs = [Job("s", label, seed, {"steps": 3, "lr": lr}) for label in ("a", "b") for seed in range(2)
            for lr in (1e-3, 1e-2)]  # fmt: skip
    run_sweep(jobs[:1], functools.partial(_counted, calls=[]), tmp_path, backend="serial", progress=False)
    run_sweep(jobs[1:2], functools.partial(_counted, calls=[]), tmp_path, table="t.csv", backend="serial",
              progress=False)  # fmt: skip
    seconds = sweep.run_seconds(tmp_path)
    assert seconds == {("a", "3"): [0.2, 0.2]}  # _counted logs wall times 0, 0.1, 0.2
    plan = []
    run_sweep(jobs, _never, tmp_path, plan=plan)
    assert plan_estimate(plan[0].jobs, seconds) == (pytest.approx(2 * 0.2 / 3600), 2, 6)  # "a" has 2 left


def _edge_optimum(job, calls: list, stop_after: int):
    """Label "a" has its best rate inside the grid, label "b" past its top edge (so it tries 0.03 and 0.1)."""
    if len(calls) == stop_after:
        raise KeyboardInterrupt
    calls.append(job.run_id)
    optimum = 3e-3 if job.label == "a" else 3e-2
    loss = (np.log10(job.params["lr"]) - np.log10(optimum)) ** 2 + 0.1 * job.seed
    return [{"step": 0, "wall_time": 0.0, "metric": "val_loss", "value": loss}]


# A full sweep trains 12 runs (14 when the final stage has its own budget and reuses no tuning run): interrupt it
# after each.
@pytest.mark.parametrize(("stop_after", "final"), [(n, None) for n in range(13)] + [(n, 40) for n in range(15)])
def test_a_dry_run_of_a_tuned_sweep_counts_what_the_resumed_sweep_trains(tmp_path, stop_after, final):
    params = {"lr": 0.0, "steps": 10, **({"final_steps": final} if final else {})}
    jobs = [Job("s", label, seed, params) for label in ("a", "b") for seed in range(3)]
    options = dict(lr_grid=[1e-3, 3e-3, 1e-2], tune_seeds=1, backend="serial", progress=False)
    with contextlib.suppress(KeyboardInterrupt):
        tuned_sweep(jobs, functools.partial(_edge_optimum, calls=[], stop_after=stop_after), tmp_path, **options)
    before, plan = _snapshot(tmp_path), []
    planned = tuned_sweep(jobs, _never, tmp_path, plan=plan, **options)
    assert _snapshot(tmp_path) == before
    calls = []
    frame = tuned_sweep(jobs, functools.partial(_edge_optimum, calls=calls, stop_after=-1), tmp_path, **options)
    exact = sum(stage.todo for stage in plan if not stage.bound)
    if any(stage.bound for stage in plan):
        assert planned is None and exact < len(calls) <= exact + sum(stage.todo for stage in plan if stage.bound)
    else:
        assert len(calls) == exact and [stage.table for stage in plan] == ["tuning.csv", "metrics.csv"]
        if exact == 0:
            pd.testing.assert_frame_equal(planned, frame)


def test_run_all_plan_lists_every_run_of_a_study_not_trained_yet(tmp_path, capsys):
    module = study_cache
    stages = plan_studies(["weight_cache"], [], tmp_path)
    runs = len(module.jobs(module.Config()))
    assert stages == [PlanStage("metrics.csv", runs, runs)] and not list(tmp_path.iterdir())
    assert f"weight_cache: metrics.csv: {runs} of {runs} runs to train" in capsys.readouterr().out


def _flaky_counted(job, fail_on: str, calls: list):
    if job.run_id == fail_on:
        raise KeyboardInterrupt
    return _counted(job, calls)


def _fails_once(job, bad: str):
    if job.run_id == bad:
        raise ValueError("boom")
    return study_equivariance.run(job)


def test_failed_runs_are_reported_after_the_others_are_saved(tmp_path):
    jobs = tiny_jobs()
    with pytest.raises(RuntimeError, match="1 of 4 runs failed"):
        run_sweep(jobs, functools.partial(_fails_once, bad=jobs[0].run_id), tmp_path, backend="serial", progress=False)
    assert len(list((tmp_path / "runs").glob("*.csv"))) == 3


def test_fixed_seed_gives_identical_results(tmp_path):
    jobs = tiny_jobs()
    a = run_sweep(jobs, study_equivariance.run, tmp_path / "a", backend="serial", progress=False)
    b = run_sweep(jobs, study_equivariance.run, tmp_path / "b", backend="serial", progress=False)
    pd.testing.assert_frame_equal(deterministic_part(a), deterministic_part(b))


def test_process_pool_gives_the_serial_results(tmp_path):
    jobs = tiny_jobs()
    serial = run_sweep(jobs, study_equivariance.run, tmp_path / "s", backend="serial", progress=False)
    pooled = run_sweep(jobs, study_equivariance.run, tmp_path / "p", backend="local", workers=2, progress=False)
    pd.testing.assert_frame_equal(deterministic_part(serial), deterministic_part(pooled))


def test_ray_backend_runs_a_sweep_on_a_local_instance(tmp_path):
    import ray  # noqa: F401  (a requirement: CI must run the Ray path, never skip it)

    jobs = tiny_jobs()
    serial = run_sweep(jobs, study_equivariance.run, tmp_path / "s", backend="serial", progress=False)
    on_ray = run_sweep(jobs, study_equivariance.run, tmp_path / "r", backend="ray", workers=2, progress=False)
    pd.testing.assert_frame_equal(deterministic_part(serial), deterministic_part(on_ray))


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'slurm'; choose one of local, ray, serial"):
        run_sweep(tiny_jobs(), study_equivariance.run, tmp_path, backend="slurm")


# ----------------------------------------------------------------------------------------------- studies, plots
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    main(study_equivariance.STUDY, study_equivariance.Config, study_equivariance.jobs, study_equivariance.run,
         TINY + ["--backend", "serial", "--out", str(out)])  # fmt: skip
    return out


def test_tiny_study_writes_csv_config_figures_and_table(tiny_study):
    frame = pd.read_csv(tiny_study / "metrics.csv")
    assert {"run_id", "label", "seed", "step", "wall_time", "metric", "value", "model", "train_size"} <= set(frame)
    assert frame.run_id.nunique() == 3 * 2 * 2  # models (one width each) x sizes x seeds
    assert {"train_loss", "test_loss", "val_loss", "equivariance_error", "params", "best_test_loss"} <= set(
        frame.metric
    )
    assert set(frame.lr) <= {0.01, 0.003} and frame.lr_grid.nunique() == 1
    meta = json.loads((tiny_study / "config.json").read_text())
    assert meta["config"]["steps"] == 6 and meta["torch"] == torch.__version__ and meta["git_commit"]
    for name in ("loss_vs_params.png", "loss_vs_data.png", "curves.png", "costs.png", "table.md", "lr_selection.csv"):
        assert (tiny_study / name).stat().st_size > 0
    table = (tiny_study / "table.md").read_text()
    assert "| `plain/augmented` |" in table and "n = 32" in table


def test_trained_equivariant_model_stays_equivariant(tiny_study):
    frame = pd.read_csv(tiny_study / "metrics.csv")
    errors = frame[frame.metric == "equivariance_error"].groupby("model").value.max()
    assert errors["equivariant"] < 1e-5 and errors["plain"] > 1e-3


def test_plot_step_runs_alone_on_saved_csv(tiny_study, tmp_path):
    shutil.copy(tiny_study / "metrics.csv", tmp_path / "metrics.csv")
    shutil.copy(tiny_study / "config.json", tmp_path / "config.json")
    report._main([str(tmp_path)])
    assert {p.name for p in tmp_path.iterdir()} >= {"loss_vs_params.png", "curves.png", "costs.png", "table.md"}


def test_plot_and_tables_do_not_import_each_other():
    import ast
    import inspect

    from ablations import plot, tables

    for module, other in ((plot, "tables"), (tables, "plot")):
        tree = ast.parse(inspect.getsource(module))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom | ast.Import) for a in n.names}
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert other not in names and other not in modules


def test_every_label_has_a_fixed_colour():
    with pytest.raises(ValueError, match="add them to ablations.summary.PALETTE"):
        summary.hue_order(["isotypic_expansion", "new_strategy"])
    assert summary.hue_order(["memory_heavy", "isotypic_expansion"]) == ["isotypic_expansion", "memory_heavy"]


def test_cache_study_outputs_agree_with_an_uncached_copy(tmp_path):
    config = dataclasses.replace(study_cache.Config(), seeds=1, steps=4, eval_every=2, eval_size=16, train_size=32,
                                 batch_size=8, embedding_dim=32, num_layers=1)  # fmt: skip
    frame = run_sweep(study_cache.jobs(config), study_cache.run, tmp_path, backend="serial", progress=False)
    diffs = frame[frame.metric == "cache_output_max_abs_diff"]
    assert len(diffs) == 2 * 3 and diffs.value.max() < 1e-5


def test_guide_links_what_it_rests_on(tiny_study, tmp_path):
    shutil.copytree(tiny_study, tmp_path / "equivariant_vs_plain")
    text = guide.write(tmp_path).read_text()
    assert text.index("## Decisions at a glance") < text.index("## Paired comparisons")  # the first screen
    assert "[equivariant_vs_plain/table.md](equivariant_vs_plain/table.md)" in text
    assert "no data yet" in text  # the studies that were not run say so instead of recommending


def test_gpu_request_for_cpu_jobs_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="add --device cuda"):
        main(study_equivariance.STUDY, study_equivariance.Config, study_equivariance.jobs, study_equivariance.run,
             TINY + ["--backend", "ray", "--gpus", "1", "--out", str(tmp_path)])  # fmt: skip


def test_sequence_study_plain_twin_at_equal_parameters_has_about_as_many():
    width = study_equivariance_sequence.equal_params_width(8, 32, 1, 2)
    task = RingOscillators()

    def count(equivariant, dim):
        return sum(p.numel() for p in regressor(task, equivariant, dim, 1, 2).parameters())

    gap = {w: abs(count(False, w) - count(True, 32)) for w in (width - 2, width, width + 2)}
    assert gap[width] == min(gap.values())  # heads = 2: widths step by 2


# ----------------------------------------------------------------------------------------------- protocol
def test_bootstrap_interval_of_constant_data_is_the_constant():
    ci = bootstrap_ci([2.5] * 5)
    assert (ci.mean, ci.low, ci.high, ci.n) == (2.5, 2.5, 2.5, 5)


def test_bootstrap_interval_matches_the_normal_approximation():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=400)
    ci = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert ci.low < x.mean() < ci.high
    np.testing.assert_allclose(ci.high - ci.low, 2 * half, rtol=0.15)


def test_paired_comparison_subtracts_per_seed():
    a = pd.Series([1.0, 5.0, 9.0, 2.0], index=[0, 1, 2, 3])
    result = paired(a, a + 0.5)  # a large spread across seeds, a constant difference within each
    assert (result.diff.mean, result.diff.low, result.diff.high) == (0.5, 0.5, 0.5)
    assert not result.within_noise and result.verdict("a", "b") == "a better"


def test_paired_comparison_says_within_noise_when_the_interval_covers_zero():
    a = pd.Series([1.0, 2.0, 3.0, 4.0])
    result = paired(a, a + pd.Series([0.3, -0.3, 0.2, -0.2]))
    assert result.within_noise and result.verdict("a", "b") == "within noise"


def test_paired_comparison_uses_shared_seeds_and_needs_three():
    result = paired(pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2]), pd.Series([2.0, 3.0], index=[1, 2]))
    assert result.diff.n == 2 and result.verdict("a", "b") == "too few seeds"


def test_plateau_detector_fires_after_patience_evaluations_without_improvement():
    stopper = PlateauDetector(patience=2, min_delta=0.01)
    stops = [stopper.update(step, loss) for step, loss in enumerate([3.0, 2.0, 1.999, 2.5, 1.0])]
    assert stops == [False, False, False, True, False] and stopper.best_step == 4
    assert PlateauDetector(patience=3).update(0, float("nan"))  # a diverged run stops at once


def test_fit_reports_and_restores_the_best_validation_checkpoint():
    task = RingRegression()
    _, in_rep, out_rep = task.group_and_reps
    splits = make_splits(task, {"train": 16, "val": 64, "test": 64}, data_seed=0)
    torch.manual_seed(0)
    model = torch.nn.Linear(in_rep.size, out_rep.size)
    config = TrainConfig(steps=60, batch_size=16, lr=0.3, eval_every=5, eval_size=64, patience=3)  # overfits
    frame = pd.DataFrame(fit(model, Regression(), splits, config, seed=0))
    value = frame.set_index("metric").value
    logged = frame[(frame.step == value["best_step"]) & (frame.metric == "test_loss")].value.item()
    val = frame[frame.metric == "val_loss"]
    assert value["best_val_loss"] == val.value.min() and value["best_test_loss"] == logged
    assert value["stopped_step"] < 60 and value["plateaued"] == 1  # validation plateaued before the cap
    assert value["anneal_step"] < value["stopped_step"]  # then the rate decayed before stopping
    torch.testing.assert_close(evaluate(model, Regression(), splits["val"]), value["best_val_loss"])


def _rates(cap: int, plateau_at: int | None = None, anneal: float = 0.25, min_length: int = 1) -> list[float]:
    """The learning rate of each step 1..end under :class:`PlateauThenAnneal` (base 1), a plateau at ``plateau_at``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule, rates = PlateauThenAnneal(optimizer, cap, anneal, min_length=min_length), []
    for step in range(1, cap + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        if schedule.after(step):
            break
        if step == plateau_at:
            schedule.begin(step)
    return rates


@pytest.mark.parametrize("cap, plateau_at, anneal, min_length", [(100, 40, 0.25, 1), (100, 10, 0.25, 5),
                         (100, 79, 0.5, 1), (1000, None, 0.25, 1), (7, None, 0.25, 1), (60, 59, 0.25, 10)])  # fmt: skip
def test_plateau_then_anneal_is_constant_then_a_cosine_to_a_tenth_within_the_cap(cap, plateau_at, anneal, min_length):
    rates = _rates(cap, plateau_at, anneal, min_length)
    start = plateau_at if plateau_at is not None and plateau_at < cap / (1 + anneal) else int(cap // (1 + anneal))
    length = min(max(math.ceil(anneal * start), min_length), cap - start) if start < cap else 1
    assert len(rates) == min(start + length, cap) <= cap  # stops when the decay ends, never past the cap
    assert rates[: start + 1] == [1.0] * (start + 1)  # constant up to and including the step after the plateau
    decay = np.array(rates[start:])
    assert np.all(np.diff(decay) <= 1e-12) and decay[-1] >= 0.1 - 1e-12
    if length > 1:
        assert decay[-1] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * (length - 1) / length)) / 2)


def test_plateau_then_anneal_starts_once_and_records_what_started_it():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = PlateauThenAnneal(optimizer, cap=100)
    schedule.begin(40)
    schedule.begin(60)  # a later plateau does not restart the decay
    assert (schedule.start, schedule.length, schedule.plateaued) == (40, 10, True)
    capped = PlateauThenAnneal(optimizer, cap=100)
    assert not any(capped.after(step) for step in range(1, 80)) and capped.start is None
    assert not capped.after(80) and (capped.start, capped.plateaued) == (80, False)
    with pytest.raises(ValueError, match="cap"):
        PlateauThenAnneal(optimizer, cap=0)


def test_a_run_without_patience_decays_over_the_last_fifth_of_the_cap_and_says_it_did_not_plateau():
    task = RingRegression()
    _, in_rep, out_rep = task.group_and_reps
    splits = make_splits(task, {"train": 64, "val": 64, "test": 64}, data_seed=0)
    torch.manual_seed(0)
    config = TrainConfig(steps=50, batch_size=16, lr=1e-3, eval_every=10, eval_size=64, patience=None)
    value = pd.DataFrame(fit(torch.nn.Linear(in_rep.size, out_rep.size), Regression(), splits, config, 0))
    value = value.set_index("metric").value
    assert (value["anneal_step"], value["stopped_step"], value["plateaued"]) == (40, 50, 0)


def _quadratic_in_log_lr(job):
    """A fake run whose validation loss is smallest at lr = 3e-3."""
    loss = (np.log10(job.params["lr"]) - np.log10(3e-3)) ** 2 + 0.1 * job.seed
    return [{"step": 0, "wall_time": 0.0, "metric": "val_loss", "value": loss}]


def test_lr_selection_picks_the_lowest_mean_validation_loss():
    tuning = pd.DataFrame({"label": "m", "seed": [0, 1, 0, 1], "lr": [1e-3, 1e-3, 1e-2, 1e-2], "metric": "val_loss",
                           "value": [0.5, 0.1, 0.2, 0.3]})  # fmt: skip
    choice, table = select_lr(tuning, [1e-3, 1e-2])
    assert choice == {"m": 1e-2}  # mean 0.25 < 0.3, although 1e-3 has the single best run
    assert table.set_index("lr").chosen.to_dict() == {1e-3: False, 1e-2: True}


def test_tuned_sweep_runs_all_seeds_at_the_chosen_rate_reusing_tuning_runs(tmp_path):
    calls = []

    def counted(job):
        calls.append(job.run_id)
        return _quadratic_in_log_lr(job)

    jobs = [Job("s", label, seed, {"lr": 0.0}) for label in ("a", "b") for seed in range(3)]
    frame = tuned_sweep(jobs, counted, tmp_path, [1e-3, 3e-3, 1e-2], tune_seeds=1, backend="serial", progress=False)
    assert set(frame.lr) == {3e-3} and frame.run_id.nunique() == 6
    assert json.loads(frame.lr_grid.iloc[0]) == [1e-3, 3e-3, 1e-2]
    assert len(calls) == 2 * (3 + 2)  # 3 rates x 1 tuning seed, then 2 more seeds per label
    assert pd.read_csv(tmp_path / "lr_selection.csv").chosen.sum() == 2


def test_a_final_budget_tunes_on_short_runs_and_trains_every_seed_for_it(tmp_path):
    seen = []

    def run(job):
        seen.append(dict(job.params))
        return _quadratic_in_log_lr(job)

    jobs = [Job("s", label, seed, {"lr": 0.0, "steps": 10, "final_steps": 40}) for label in ("a", "b") for seed in
            range(3)]  # fmt: skip
    frame = tuned_sweep(jobs, run, tmp_path, [1e-3, 3e-3, 1e-2], tune_seeds=1, backend="serial", progress=False)
    assert all("final_steps" not in params for params in seen)  # a run never sees it
    assert [p["steps"] for p in seen] == [10] * 6 + [40] * 6  # 3 rates x 1 tuning seed x 2 labels, then every seed
    assert set(frame.steps) == {40} and frame.run_id.nunique() == 6 and set(frame.lr) == {3e-3}
    assert set(pd.read_csv(tmp_path / "tuning.csv").steps) == {10}


STEPS = [(1e-2, True, 3e-2), (3e-2, True, 1e-1), (1e-3, False, 3e-4), (3e-3, False, 1e-3), (5e-3, True, 1.5e-2),
         (5e-3, False, 5e-3 / 3)]  # fmt: skip


@pytest.mark.parametrize(("lr", "up", "expected"), STEPS)
def test_next_rate_walks_the_one_three_ten_sequence(lr, up, expected):
    assert next_rate(lr, up) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("optimum", "tried", "chosen"), [
    (3e-2, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], 3e-2),  # one step past the grid, then a worse rate: interior again
    (1.0, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], 1e-1),  # still at the edge after the allowed extensions: stops there
    (1e-5, [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], 1e-4),  # the same downwards
])  # fmt: skip
def test_tuned_sweep_tries_rates_past_the_grid_while_the_choice_is_at_an_edge(tmp_path, optimum, tried, chosen):
    calls = []

    def run(job):
        calls.append(job.params["lr"])
        loss = (np.log10(job.params["lr"]) - np.log10(optimum)) ** 2 + 0.1 * job.seed
        return [{"step": 0, "wall_time": 0.0, "metric": "val_loss", "value": loss}]

    jobs = [Job("s", "a", seed, {"lr": 0.0}) for seed in range(3)]
    frame = tuned_sweep(jobs, run, tmp_path, [1e-3, 3e-3, 1e-2], tune_seeds=1, backend="serial", progress=False)
    assert sorted(set(calls)) == pytest.approx(tried)
    assert sorted(set(frame.lr)) == pytest.approx([chosen]) and frame.run_id.nunique() == 3
    assert json.loads(frame.lr_grid.iloc[0]) == [1e-3, 3e-3, 1e-2]  # the configured grid: extending renames no run
    selection = pd.read_csv(tmp_path / "lr_selection.csv")
    assert selection.extension.sum() == 2 and selection.chosen.sum() == 1
    assert len(calls) == 5 + 2  # five rates on the tuning seed, then seeds 1 and 2 at the chosen one


def test_a_two_rate_grid_is_not_extended(tmp_path):
    calls = []

    def run(job):
        calls.append(job.params["lr"])
        return [{"step": 0, "wall_time": 0.0, "metric": "val_loss", "value": -job.params["lr"]}]

    jobs = [Job("s", "a", seed, {"lr": 0.0}) for seed in range(2)]
    tuned_sweep(jobs, run, tmp_path, [3e-3, 1e-2], tune_seeds=1, backend="serial", progress=False)
    assert sorted(calls) == [3e-3, 1e-2, 1e-2]


def test_a_choice_at_an_edge_of_the_rates_tried_is_flagged():
    selection = pd.DataFrame({"label": ["mid"] * 3 + ["top"] * 3 + ["one"],
                              "lr": [1e-3, 3e-3, 1e-2, 1e-3, 3e-3, 1e-2, 3e-3],
                              "chosen": [False, True, False, False, False, True, True]})  # fmt: skip
    assert lr_at_edge(selection) == ["top"]  # a single rate is no tuning, not an edge


def _curves(**losses) -> pd.DataFrame:
    """Long-format validation curves (evaluated at steps 0, 100, ...; budget 400), one run per keyword."""
    rows = [{"run_id": run, "label": run, "seed": 0, "steps": 400, "step": 100 * i, "wall_time": 0.0,
             "metric": "val_loss", "value": v}
            for run, values in losses.items() for i, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_late_gain_is_the_fall_of_the_best_validation_loss_over_the_last_quarter_of_the_budget():
    data = _curves(falling=[4, 3, 2, 1.5, 1], flat=[4, 2, 1.01, 1.005, 1.0], early=[4, 2, 1, 1.1],
                   noisy=[4, 2, 1, 3, 1])  # fmt: skip
    gain = summary.late_gain(data)
    assert gain["falling"] == pytest.approx(0.5)  # best 1.5 at step 300 (75 % of 400), then 1
    assert gain["flat"] == pytest.approx(0.005)  # best at the last step, but only by a hair
    assert gain["early"] == 0 and gain["noisy"] == 0  # stopped (or no new best) in the last quarter


def test_late_gain_of_a_plateau_schedule_run_ignores_its_decay():
    data = _curves(decayed=[4, 3, 2, 1.9, 1.0])  # steps 0..400; the decay began at step 300 and gave the last fall
    data = pd.concat([data, data.iloc[-1:].assign(metric="anneal_step", value=300.0)])
    assert summary.late_gain(data)["decayed"] == pytest.approx(0.1 / 1.9)  # best up to 225 is 2, at 300 it is 1.9


def test_only_configurations_still_falling_past_the_plateau_tolerance_are_budget_limited():
    data = _curves(falling=[4, 3, 2, 1.5, 1], flat=[4, 2, 1.01, 1.005, 1.0])
    data = pd.concat([data, data.assign(metric="test_loss")])
    frame = summary.runs(data)
    assert budget_limited(frame) == ["falling"]


def test_with_plateau_records_a_configuration_is_budget_limited_when_most_runs_reached_the_cap():
    frame = pd.DataFrame({"label": ["a"] * 5 + ["b"] * 5 + ["c"] * 4, "best_step": 1, "stopped_step": 2,
                          "plateaued": [0, 0, 0, 1, 1] + [0, 0, 1, 1, 1] + [0, 0, 1, 1]})  # fmt: skip
    assert budget_limited(frame) == ["a"]  # b: 3 of 5 plateaued; c: a tie is not "most"
    assert budget_limited(frame.assign(diverged=[1, 1, 1, 0, 0] + [0] * 9)) == []  # diverged runs hit no cap
    assert "cap" in budget_criterion(frame) and "fell" in budget_criterion(frame.drop(columns="plateaued"))


def test_the_guide_calls_a_recommendation_on_edge_rates_provisional(tmp_path):
    (tmp_path / "s").mkdir()
    selection = pd.DataFrame({"label": ["a", "a", "b", "b"], "lr": [1e-3, 1e-2] * 2, "chosen": [False, True] * 2})
    selection.to_csv(tmp_path / "s" / "lr_selection.csv", index=False)
    assert "provisional" in guide._tuning_caveat(tmp_path, "s") and "2 of 2" in guide._tuning_caveat(tmp_path, "s")
    assert guide._tuning_caveat(tmp_path, "missing") == ""  # no tuning record: nothing to warn about


def test_the_guide_calls_a_recommendation_on_runs_still_improving_at_the_budget_provisional(tmp_path):
    (tmp_path / "s").mkdir()
    data = _curves(falling=[4, 3, 2, 1.5, 1], flat=[4, 2, 1.01, 1.005, 1.0])
    pd.concat([data, data.assign(metric="test_loss")]).to_csv(tmp_path / "s" / "metrics.csv", index=False)
    caveat = guide._tuning_caveat(tmp_path, "s")
    assert "provisional" in caveat and "1 of 2 configurations still improving" in caveat and "50 %" in caveat


def test_the_guide_names_the_studies_still_from_the_fixed_budget_schedule(tmp_path):
    data = _curves(falling=[4, 3, 2, 1.5, 1])
    data = pd.concat([data, data.assign(metric="test_loss")])
    plateau = pd.concat([data, data.iloc[-1:].assign(metric="plateaued", value=1.0)])  # a final metric
    for study, frame in (("weight_cache", plateau), ("normalization", data)):
        (tmp_path / study).mkdir()
        frame.to_csv(tmp_path / study / "metrics.csv", index=False)
    text = guide.schedules(tmp_path)
    assert "PlateauThenAnneal`): weight_cache;" in text and text.endswith("retrains them): normalization.")
    (tmp_path / "normalization" / "metrics.csv").unlink()
    assert guide.schedules(tmp_path) == ""  # every study with data trained until its plateau


def test_zero_head_starts_the_regressor_at_the_zero_predictor_loss():
    task = RingOscillators(horizon=3)
    split = make_splits(task, {"train": 1, "val": 1, "test": 32}, data_seed=0)["test"]
    objective = FlowMatching()
    zero = objective.zero_loss(split)
    for equivariant in (True, False):
        torch.manual_seed(0)
        model = regressor(task, equivariant, 32, 1, 2)
        assert evaluate(model, objective, split) == pytest.approx(zero, rel=1e-6)
    torch.manual_seed(0)
    drawn = regressor(task, True, 32, 1, 2, zero_head=False)  # xavier head: starts worse than predicting zero
    assert evaluate(drawn, objective, split) > 1.2 * zero


@pytest.mark.slow
def test_fresh_process_per_run_gives_the_serial_results(tmp_path):
    jobs = tiny_jobs()[:2]
    serial = run_sweep(jobs, study_equivariance.run, tmp_path / "s", backend="serial", progress=False)
    fresh = run_sweep(jobs, study_equivariance.run, tmp_path / "f", backend="local", workers=1, fresh_process=True,
                      progress=False)  # fmt: skip
    pd.testing.assert_frame_equal(deterministic_part(serial), deterministic_part(fresh))


def _decision_map_cells(axis: str, ratios: dict[str, float]) -> list[dict]:
    base = {"axis": axis, "layer": "linear", "group": "C8", "D_target": 64, "D": 64, "rows": 8, "threads": 1,
            "mode": "train", "timer": "thread", "rounds": 2, "note": "", "status": "ok", "seconds": 1e-5}  # fmt: skip
    rows = [
        {**base, "candidate": "baseline", "role": "baseline", "ratio": 1.0, "ratio_q25": 1.0, "ratio_q75": 1.0},
        {**base, "candidate": "control", "role": "control", "ratio": 1.0, "ratio_q25": 0.99, "ratio_q75": 1.01},
    ]
    return rows + [{**base, "candidate": c, "role": "candidate", "ratio": r, "ratio_q25": r, "ratio_q75": r}
                   for c, r in ratios.items()]  # fmt: skip


def test_guide_basis_and_cache_rows_use_the_decision_maps_when_present(tmp_path):
    (tmp_path / "decision_maps").mkdir()
    cells = _decision_map_cells("basis_expansion", {"isotypic_expansion": 2.0, "orbit_gather": 1.2})
    cells += _decision_map_cells("weight_cache", {"cached": 1.5, "uncached": 1.1})
    pd.DataFrame(cells).to_csv(tmp_path / "decision_maps" / "raw.csv", index=False)
    rows = [line for line in guide.write(tmp_path).read_text().splitlines() if line.startswith("| ")]
    basis = next(line for line in rows if line.startswith("| basis expansion (`"))
    cache = next(line for line in rows if line.startswith("| weight cache"))
    assert "`orbit_gather` (decision maps: wins 1 of 1" in basis and "source: decision maps" in basis
    assert "`uncached` (decision maps" in cache and "source: decision maps" in cache


def test_guide_layout_row_comes_from_the_decision_maps(tmp_path):
    (tmp_path / "decision_maps").mkdir()
    cells = _decision_map_cells("layout", {"spatial": 1.4, "spectral": 1.1})
    pd.DataFrame(cells).to_csv(tmp_path / "decision_maps" / "raw.csv", index=False)
    rows = [line for line in guide.write(tmp_path).read_text().splitlines() if line.startswith("| ")]
    layout = next(line for line in rows if line.startswith("| feature layout"))
    assert "`spectral` (decision maps: wins 1 of 1" in layout and "source: decision maps" in layout


def test_guide_layout_row_says_no_data_without_decision_maps(tmp_path):
    assert guide.layout_decision(tmp_path).recommendation == "no data yet"


def test_guide_names_linear_family_as_the_source_without_decision_maps(tiny_study, tmp_path):
    from ablations import guide_maps

    assert not guide_maps.available(tmp_path)
    assert "source: linear_family" in guide_maps.source(tmp_path)


@pytest.mark.parametrize("study", list(STUDY_MODULES))
def test_quick_profile_keeps_enough_seeds_for_a_verdict(study):
    import importlib

    config = importlib.import_module(STUDY_MODULES[study]).Config()
    assert config.seeds >= MIN_SEEDS  # below, every paired comparison of make results reads "too few seeds"


def test_git_commit_ignores_results_and_documentation(tmp_path):
    def git(*args):
        run = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        return run.stdout.strip()

    git("init", "-q")
    git("config", "user.email", "ci@example.com"), git("config", "user.name", "ci")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A"), git("commit", "-qm", "code")
    code_commit = git("rev-parse", "HEAD")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("| a |\n")
    (tmp_path / "README.md").write_text("notes\n")
    git("add", "-A"), git("commit", "-qm", "results and docs")
    assert sweep.git_commit(tmp_path) == code_commit
    (tmp_path / "README.md").write_text("edited, not committed\n")
    assert sweep.git_commit(tmp_path) == code_commit
    (tmp_path / "code.py").write_text("x = 2\n")
    assert sweep.git_commit(tmp_path) == code_commit + "-dirty"
