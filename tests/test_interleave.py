"""ablations.sweep.interleave: several studies in one pool give what their own sweeps give, wait and fail alone."""

from __future__ import annotations

import concurrent.futures as futures
import functools
import threading

import numpy as np
import pandas as pd
import pytest

from ablations import study_equivariance
from ablations.sweep import Job, Track, interleave, run_sweep, tuned_sweep

GRID = (1e-3, 3e-3, 1e-2)


def _loss(job: Job, calls: list | None = None, bad: str = "") -> list[dict]:
    """A run whose best rate is 3e-3 for label "a" and past the grid's top (3e-2) for the others."""
    if calls is not None:
        calls.append(job.run_id)
    if job.run_id == bad:
        raise ValueError("boom")
    optimum = 3e-3 if job.label == "a" else 3e-2
    loss = (np.log10(job.params["lr"]) - np.log10(optimum)) ** 2 + 0.1 * job.seed + len(job.study) / 100
    return [{"step": step, "wall_time": 0.0, "metric": "val_loss", "value": loss + 1 / (step + 1)}
            for step in range(2)]  # fmt: skip


def _never(job: Job) -> list[dict]:
    raise AssertionError(f"{job.run_id} trained by a study's own sweep after interleave saved every run")


def _jobs(study: str) -> list[Job]:
    return [Job(study, label, seed, {"lr": 1e-3, "steps": 2}) for label in ("a", "b") for seed in range(3)]


def _sweep(study: str, out, fn, tuned: bool, **options):
    if tuned:
        return tuned_sweep(_jobs(study), fn, out, GRID, 1, backend="serial", progress=False, **options)
    return run_sweep(_jobs(study), fn, out, backend="serial", progress=False, **options)


def _track(study: str, root, fn, tuned: bool, log: list, waits=list) -> Track:
    def todo():
        stages = []
        _sweep(study, root / study, fn, tuned, plan=stages)
        return [job for stage in stages if not stage.bound for job in stage.jobs]

    def finish():
        _sweep(study, root / study, _never, tuned)
        log.append(study)

    return Track(study, todo, fn, root / study / "runs", finish, waits)


def _threads():
    return futures.ThreadPoolExecutor(2)


def test_interleaved_studies_write_the_tables_their_own_sweeps_write(tmp_path):
    studies = {"tuned_one": True, "tuned_two": True, "plain": False}
    for study, tuned in studies.items():
        _sweep(study, tmp_path / "alone" / study, _loss, tuned)
    log = []
    tracks = [_track(study, tmp_path / "together", _loss, tuned, log) for study, tuned in studies.items()]
    interleave(tracks, executor=_threads, progress=False)
    assert sorted(log) == sorted(studies)
    for study in studies:
        for table in ("tuning.csv", "metrics.csv", "lr_selection.csv"):
            alone, together = tmp_path / "alone" / study / table, tmp_path / "together" / study / table
            assert alone.exists() == together.exists(), table
            if alone.exists():
                pd.testing.assert_frame_equal(pd.read_csv(together), pd.read_csv(alone))
        assert not list((tmp_path / "together" / study / "runs").glob("*.csv"))
    # rates past the grid were tried for label "b", so the tuned studies went through more than two stages
    assert set(pd.read_csv(tmp_path / "together" / "tuned_one" / "tuning.csv").lr) > set(GRID)


def test_a_study_that_waits_starts_once_its_source_has_finished(tmp_path):
    log, planned = [], []

    def source_done():
        return [] if "source" in log else ["source"]

    reader = _track("reader", tmp_path, _loss, True, log, waits=source_done)
    todo = reader.todo
    reader = Track(reader.name, lambda: planned.append(list(log)) or todo(), reader.fn, reader.runs_dir,
                   reader.finish, reader.waits)  # fmt: skip
    interleave([reader, _track("source", tmp_path, _loss, True, log)], executor=_threads, progress=False)
    assert log == ["source", "reader"] and planned and all(seen[:1] == ["source"] for seen in planned)


def test_a_study_waiting_for_a_study_that_never_finishes_is_reported(tmp_path):
    reader = _track("reader", tmp_path, _loss, True, [], waits=lambda: ["missing"])
    with pytest.raises(RuntimeError, match="reader waits for missing"):
        interleave([reader], executor=_threads, progress=False)


def test_a_failed_run_stops_its_study_and_is_reported_after_the_others_finish(tmp_path):
    bad = next(job for job in _jobs("broken") if job.seed == 0)
    bad_id = Job(bad.study, bad.label, 0, {**bad.params, "lr": GRID[0], "lr_grid": list(GRID)}).run_id
    log, calls = [], []
    tracks = [_track("broken", tmp_path, functools.partial(_loss, calls=calls, bad=bad_id), True, log),
              _track("fine", tmp_path, _loss, True, log)]  # fmt: skip
    with pytest.raises(RuntimeError, match="1 runs failed") as error:
        interleave(tracks, executor=_threads, progress=False)
    assert bad_id in str(error.value) and bad_id in calls
    assert log == ["fine"]
    saved = {path.stem for path in (tmp_path / "broken" / "runs").glob("*.csv")}
    assert len(saved) == len(set(calls)) - 1 and bad_id not in saved
    again = []  # running again trains only the failed run, then the stages after it
    interleave([_track("broken", tmp_path, functools.partial(_loss, calls=again), True, log)], executor=_threads,
               progress=False)  # fmt: skip
    assert again[0] == bad_id and not set(again) & saved and log == ["fine", "broken"]


def test_interleave_in_spawned_processes_gives_the_serial_runs(tmp_path):
    config = study_equivariance.Config(train_sizes=(16,), seeds=1, steps=4, eval_every=2, eval_size=16,
                                       equivariant_widths=(32,))  # fmt: skip
    jobs = study_equivariance.jobs(config)
    serial = run_sweep(jobs, study_equivariance.run, tmp_path / "s", backend="serial", progress=False)
    finished = threading.Event()

    def todo():
        stages = []
        run_sweep(jobs, study_equivariance.run, tmp_path / "p", plan=stages)
        return [job for stage in stages for job in stage.jobs]

    track = Track("p", todo, study_equivariance.run, tmp_path / "p" / "runs", finished.set)
    interleave([track], workers=2, progress=False)
    pooled = run_sweep(jobs, _never, tmp_path / "p", backend="serial", progress=False)
    measured = {"time_per_step_ms", "infer_ms_per_batch", "peak_train_rss_mib", "construction_rss_mib"}

    def kept(frame):
        frame = frame[~frame.metric.isin(measured)].drop(columns=["wall_time"])
        return frame.sort_values(["run_id", "step", "metric"]).reset_index(drop=True)

    assert finished.is_set()
    pd.testing.assert_frame_equal(kept(pooled), kept(serial))


def _where(job: Job) -> list[dict]:
    """A run that reports its process and whether the preloaded modules were there before it imported anything."""
    import os
    import sys

    preloaded = float(all(name in sys.modules for name in ("torch._dynamo", "escnn.group", "symm_layers")))
    return [{"step": 0, "wall_time": 0.0, "metric": m, "value": v}
            for m, v in (("pid", float(os.getpid())), ("preloaded", preloaded))]  # fmt: skip


def test_a_fresh_process_per_run_is_a_new_process_forked_with_the_modules_preloaded(tmp_path):
    import os

    frame = run_sweep(_jobs("fresh"), _where, tmp_path, backend="local", workers=2, fresh_process=True,
                      progress=False)  # fmt: skip
    pids = frame[frame.metric == "pid"].value
    assert pids.nunique() == len(_jobs("fresh")) and os.getpid() not in set(pids)
    assert set(frame[frame.metric == "preloaded"].value) == {1.0}
