"""The converged check (ablations.study_convergence): which configurations it retrains, how, and what it reports."""

from __future__ import annotations

import dataclasses
import json
from unittest import mock

import pandas as pd
import pytest

from ablations import (
    guide,
    run_all,
    study_ant,
    study_ant_norm,
    study_convergence,
    study_equivariance_sequence,
    study_norm,
)
from ablations.common import STUDY_MODULES, main
from ablations.stats import paired
from ablations.summary import (
    CONVERGENCE,
    convergence_comparisons,
    convergence_label,
    convergence_verdict,
    runs,
)


def _long(rows: list[dict]) -> pd.DataFrame:
    """A long-form metrics table with one ``best_test_loss`` row per run (``rows``: label, seed, loss, params)."""
    out = []
    for r in rows:
        params = {k: v for k, v in r.items() if k not in ("label", "seed", "loss")}
        out.append({"run_id": f"{r['label']}__{r['seed']}", "label": r["label"], "seed": r["seed"], **params,
                    "step": 10, "wall_time": 1.0, "metric": "best_test_loss", "value": r["loss"]})  # fmt: skip
    return pd.DataFrame(out)


def _norm_frame(losses: dict[str, float], seeds: int = 3) -> pd.DataFrame:
    rows = [{"label": label, "seed": s, "loss": loss + 0.01 * s, "num_layers": int(label.rsplit("/L", 1)[1]),
             "lr": 0.003} for label, loss in losses.items() for s in range(seeds)]  # fmt: skip
    return _long(rows)


def test_norm_comparisons_are_the_best_against_its_runner_up_and_its_affine_twin_per_depth():
    frame = runs(_norm_frame({"rmsnorm/pre/isotypic/L2": 1.0, "layernorm/pre/isotypic/L2": 1.1,
                              "rmsnorm/pre/diagonal/L2": 1.3, "layernorm/pre/diagonal/L4": 0.5,
                              "layernorm/pre/isotypic/L4": 0.6, "rmsnorm/pre/isotypic/L4": 0.9}))  # fmt: skip
    assert convergence_comparisons("normalization", frame) == [
        ("best vs runner-up at depth 2", "rmsnorm/pre/isotypic/L2", "layernorm/pre/isotypic/L2"),
        ("affine of the best at depth 2", "rmsnorm/pre/isotypic/L2", "rmsnorm/pre/diagonal/L2"),
        ("best vs runner-up at depth 4", "layernorm/pre/diagonal/L4", "layernorm/pre/isotypic/L4"),
        ("affine of the best at depth 4", "layernorm/pre/diagonal/L4", "layernorm/pre/isotypic/L4"),
    ]


def _model_frame() -> pd.DataFrame:
    """Two training sizes; equivariant widths 32 and 64 with plain and augmented partners within 10 %, plus a plain
    width with no equivariant partner."""
    sizes = {("equivariant", 32): 1000, ("equivariant", 64): 4000, ("plain", 8): 1050, ("plain", 16): 3900,
             ("plain/augmented", 8): 1050, ("plain/augmented", 16): 3900, ("plain", 64): 60000}  # fmt: skip
    rows = [{"label": f"{m}/w={w}@n={n}", "seed": s, "loss": 1.0, "model": m, "width": w, "params": p,
             "train_size": n, "lr": 0.01} for (m, w), p in sizes.items() for n in (64, 256)
            for s in range(3)]  # fmt: skip
    return _long(rows)


@pytest.mark.parametrize(
    "ends, widths",
    [(("smallest", "largest"), [32, 64]), (("largest",), [64]), (("smallest",), [32])],
)
def test_model_comparisons_take_the_widths_at_the_ends_of_the_largest_training_set(ends, widths):
    found = convergence_comparisons("equivariant_vs_plain_sequence", runs(_model_frame()), ends)
    expected = []
    for w, p, partner in ((32, 1000, 8), (64, 4000, 16)):
        if w in widths:
            where = f"n = 256, {p:,} params"
            expected += [(f"{where}: plain vs equivariant", f"equivariant/w={w}@n=256", f"plain/w={partner}@n=256"),
                         (f"{where}: plain/augmented vs equivariant", f"equivariant/w={w}@n=256",
                          f"plain/augmented/w={partner}@n=256"),
                         (f"{where}: plain/augmented vs plain", f"plain/w={partner}@n=256",
                          f"plain/augmented/w={partner}@n=256")]  # fmt: skip
    assert found == expected


def _paired(diffs: list[float]):
    return paired(pd.Series([1.0] * len(diffs)), pd.Series([1.0 + d for d in diffs]))


@pytest.mark.parametrize(
    "grid, converged, verdict",
    [
        ([0.1, 0.12, 0.11], [0.2, 0.21, 0.19], "holds"),
        ([0.1, -0.1, 0.05], [0.2, -0.2, 0.01], "holds (within noise both times)"),
        ([0.1, 0.12, 0.11], [-0.1, -0.12, -0.11], "flips"),
        ([0.1, 0.12, 0.11], [0.2, -0.2, 0.01], "within noise when converged"),
        ([0.1, -0.1, 0.05], [0.1, 0.12, 0.11], "emerges when converged (within noise at the cap)"),
        ([0.1, 0.12, 0.11], [0.2, 0.21], "too few seeds"),
    ],
)
def test_a_verdict_holds_when_training_to_a_plateau_keeps_its_sign(grid, converged, verdict):
    assert convergence_verdict(_paired(grid), _paired(converged)) == verdict


def _saved_norm_study(root, config: study_norm.Config, losses: dict[str, float]) -> None:
    folder = root / "normalization"
    folder.mkdir(parents=True)
    meta = {"study": "normalization", "profile": "quick", "config": dataclasses.asdict(config)}
    (folder / "config.json").write_text(json.dumps(meta))
    _norm_frame(losses, config.seeds).to_csv(folder / "metrics.csv", index=False)


def test_jobs_retrain_the_chosen_configurations_with_their_settings_rate_and_a_longer_cap(tmp_path):
    source = study_norm.Config(norms=("rmsnorm", "layernorm"), placements=("pre",), depths=(2,), steps=40)
    _saved_norm_study(tmp_path, source, {"rmsnorm/pre/isotypic/L2": 1.0, "layernorm/pre/isotypic/L2": 1.1,
                                         "rmsnorm/pre/diagonal/L2": 1.3, "layernorm/pre/diagonal/L2": 1.4})  # fmt: skip
    config = study_convergence.Config(results=str(tmp_path), sources=("normalization",), seeds=3, cap_factor=5,
                                      patience=7)  # fmt: skip
    jobs = study_convergence.jobs(config)
    grid = {job.label: job.params for job in study_norm.jobs(source)}
    chosen = ["layernorm/pre/isotypic/L2", "rmsnorm/pre/diagonal/L2", "rmsnorm/pre/isotypic/L2"]
    assert sorted({job.label for job in jobs}) == [convergence_label("normalization", c) for c in chosen]
    assert sorted(job.seed for job in jobs if job.label.endswith(chosen[0])) == [100, 101, 102]  # fresh seeds
    for job in jobs:
        original = grid[job.label.split(":", 1)[1]]
        assert job.study == CONVERGENCE and job.params["source"] == "normalization"
        assert job.params["steps"] == 200 and job.params["patience"] == 7 and job.params["lr"] == 0.003
        changed = {k for k in original if original[k] != job.params[k]}
        assert changed <= {"steps", "patience", "lr"}


def test_a_source_with_a_final_stage_cap_is_retrained_at_a_multiple_of_that_cap(tmp_path):
    source = study_norm.Config(norms=("rmsnorm",), placements=("pre",), depths=(2,), steps=40)
    _saved_norm_study(tmp_path, source, {"rmsnorm/pre/isotypic/L2": 1.0, "rmsnorm/pre/diagonal/L2": 1.1})
    final = [dataclasses.replace(job, params={**job.params, "final_steps": 90}) for job in study_norm.jobs(source)]
    config = study_convergence.Config(results=str(tmp_path), sources=("normalization",), cap_factor=3, seeds=3)
    with mock.patch.object(study_norm, "jobs", return_value=final):
        jobs = study_convergence.jobs(config)
    assert len(jobs) == 2 * 3 and {job.params["steps"] for job in jobs} == {270}
    assert not any("final_steps" in job.params for job in jobs)


def test_a_simulated_source_has_its_data_prepared_for_the_fresh_seeds_before_the_workers_start(tmp_path):
    source = study_ant_norm.Config(norms=("rmsnorm",), depths=(2,), train_size=512)
    folder = tmp_path / "ant_norm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"config": dataclasses.asdict(source)}))
    _norm_frame({"rmsnorm/pre/isotypic/L2": 1.0, "rmsnorm/pre/diagonal/L2": 1.1}).to_csv(folder / "metrics.csv")
    config = study_convergence.Config(results=str(tmp_path), sources=("ant_norm",), seeds=2, first_seed=7)
    with mock.patch.object(study_ant_norm, "prepare_data"), mock.patch.object(study_ant, "prepare_data") as prepare:
        jobs = study_convergence.jobs(config)
    assert {job.seed for job in jobs} == {7, 8}
    prepare.assert_called_once()
    assert prepare.call_args.args[1] == 512 and list(prepare.call_args.kwargs["seeds"]) == [7, 8]


def test_jobs_name_the_command_that_writes_a_missing_source(tmp_path):
    config = study_convergence.Config(results=str(tmp_path), sources=("normalization",))
    assert study_convergence.waits_for(config) == ["normalization"]
    with pytest.raises(SystemExit, match="run_all --only normalization --results"):
        study_convergence.jobs(config)
    with pytest.raises(SystemExit, match="unknown source studies"):
        study_convergence.waits_for(dataclasses.replace(config, sources=("basis_expansion",)))


def test_a_source_with_runs_from_other_training_files_is_stale(tmp_path):
    source = study_norm.Config(norms=("rmsnorm",), placements=("pre",), affines=("isotypic",), depths=(2,))
    _saved_norm_study(tmp_path, source, {"rmsnorm/pre/isotypic/L2": 1.0})
    config = study_convergence.Config(results=str(tmp_path), sources=("normalization",))
    assert study_convergence.waits_for(config) == []
    provenance = {"metrics.csv": {"runs": 3, "trained_at": {"0" * 40: 3}}}
    (tmp_path / "normalization" / "provenance.json").write_text(json.dumps(provenance))
    assert study_convergence.waits_for(config) == ["normalization"]


def test_run_all_plans_the_check_after_its_sources_and_says_what_it_waits_for(tmp_path, capsys):
    assert list(STUDY_MODULES)[-1] == CONVERGENCE
    run_all.plan([CONVERGENCE], ["--backend", "serial"], tmp_path)
    assert "convergence: waits for normalization, equivariant_vs_plain_sequence" in capsys.readouterr().out


TINY_SOURCE = ["--backend", "serial", "--no-progress", "--seeds", "3", "--steps", "6", "--eval-every", "3",
               "--eval-size", "16", "--lr-grid", "0.003"]  # fmt: skip


def test_the_check_retrains_reports_and_marks_the_guide_from_tiny_sources(tmp_path):
    main(study_norm.STUDY, study_norm.Config, study_norm.jobs, study_norm.run,
         [*TINY_SOURCE, "--norms", "rmsnorm", "--placements", "pre", "--depths", "1", "--train-size", "32",
          "--embedding-dim", "32", "--out", str(tmp_path / "normalization")])  # fmt: skip
    sequence = study_equivariance_sequence
    main(sequence.STUDY, sequence.Config, sequence.jobs, sequence.run,
         [*TINY_SOURCE, "--train-sizes", "32", "--equivariant-widths", "64", "--num-layers", "1",
          "--out", str(tmp_path / sequence.STUDY)])  # fmt: skip
    run_all.run(["--only", CONVERGENCE, "--backend", "serial", "--no-progress", "--results", str(tmp_path)])
    out = tmp_path / CONVERGENCE
    frame = runs(pd.read_csv(out / "metrics.csv"))
    quick = study_convergence.Config()
    assert set(frame.steps) == {6 * quick.cap_factor} and frame.seed.nunique() == quick.seeds
    assert frame.label.nunique() == 2 + 3  # two affines of the one norm; equivariant, plain and augmented
    table = (out / "table.md").read_text()
    assert table.count("| `normalization` |") == 2 and table.count("| `equivariant_vs_plain_sequence` |") == 3
    assert "python -m ablations.study_convergence" in table and "/tmp" not in table.split("## Verdicts")[0]
    for name in ("curves.png", "verdicts.png"):
        assert (out / name).stat().st_size > 0
    readme = guide.write(tmp_path).read_text()
    assert readme.count("trained to a plateau ([convergence/table.md](convergence/table.md))") == 4
