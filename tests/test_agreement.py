"""benchmarks/agreement.py: a disagreement between asv and linear_family.py fails only if it reproduces."""

import csv
import itertools
import json
import re

import pytest

from benchmarks import agreement

CELL = ("eval_fwd", "torch", "C8", 64, 8)


def _write(tmp_path, asv_ms: float, family_ms: float):
    asv, family = tmp_path / "asv", tmp_path / "family"
    asv.mkdir(parents=True), family.mkdir(parents=True)
    params = {"device": "cpu", "impl": "torch", "group": "C8", "features": 64, "batch": 8}
    with open(asv / "raw.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["suite_file", "suite", "metric", "params", "status", "value"])
        writer.writeheader()
        writer.writerow({"suite_file": "bench_linear", "suite": "Linear", "metric": "time_eval_forward",
                         "params": json.dumps(params), "status": "ok", "value": asv_ms / 1e3})  # fmt: skip
    with open(family / "raw.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["metric", "implementation", "group", "D_target", "B", "value"])
        writer.writeheader()
        writer.writerow({"metric": "eval_fwd", "implementation": "torch", "group": "C8", "D_target": 64, "B": 8,
                         "value": family_ms})  # fmt: skip
    return ["--asv", str(asv), "--family", str(family)]


@pytest.mark.parametrize(("again", "code", "verdict"), [(1.1, 0, "agrees"), (2.0, 1, "still disagrees")])
def test_a_disagreement_fails_only_when_the_recheck_reproduces_it(tmp_path, monkeypatch, again, code, verdict):
    calls = []

    def remeasure(family, keys):
        calls.append(("family", list(keys)))
        return {key: again for key in keys}

    def remeasure_asv(asv, keys):
        calls.append(("asv", list(keys)))
        return {key: 1.0 for key in keys}

    monkeypatch.setattr(agreement, "remeasure", remeasure)
    monkeypatch.setattr(agreement, "remeasure_asv", remeasure_asv)
    args = _write(tmp_path, asv_ms=1.0, family_ms=2.0)
    assert agreement.main([*args, "--rechecks", "1"]) == code
    assert sorted(calls) == [("asv", [CELL]), ("family", [CELL])]
    text = (tmp_path / "family" / "agreement.md").read_text()
    assert "| 0.50 |" in text and verdict in text


def test_a_slow_episode_during_one_recheck_does_not_fail_the_check(tmp_path, monkeypatch):
    # the first recheck lands in a slow episode of the machine (asv 1.4x), the second, a gap later, does not
    ratios, slept = iter([1.4, 1.05]), []
    monkeypatch.setattr(agreement, "remeasure", lambda family, keys: dict.fromkeys(keys, 1.0))
    monkeypatch.setattr(agreement, "remeasure_asv", lambda asv, keys: dict.fromkeys(keys, next(ratios)))
    monkeypatch.setattr(agreement, "busy_share", lambda: 0.0)
    monkeypatch.setattr(agreement.time, "sleep", slept.append)
    assert agreement.main(_write(tmp_path, asv_ms=2.0, family_ms=1.0)) == 0  # default: two rechecks, 60 s apart
    assert slept == [60.0] and "| 2.00 | 1.40, 1.05 | agrees |" in (tmp_path / "family" / "agreement.md").read_text()
    ratios = iter([1.4, 1.4])
    assert agreement.main([*_write(tmp_path / "b", asv_ms=2.0, family_ms=1.0), "--recheck-gap", "5"]) == 1
    assert slept == [60.0, 5.0]


def test_no_recheck_for_agreeing_cells_and_none_when_disabled(tmp_path, monkeypatch):
    monkeypatch.setattr(agreement, "remeasure", lambda family, keys: pytest.fail("re-measured"))
    monkeypatch.setattr(agreement, "remeasure_asv", lambda asv, keys: pytest.fail("re-measured"))
    assert agreement.main(_write(tmp_path / "close", asv_ms=1.0, family_ms=1.1)) == 0
    assert agreement.main([*_write(tmp_path / "far", asv_ms=1.0, family_ms=2.0), "--rechecks", "0"]) == 1


def test_an_outlier_on_the_asv_side_is_caught_by_remeasuring_asv(tmp_path, monkeypatch):
    # the saved asv value is 2x off; fresh measurements on both sides agree, so the cell passes
    monkeypatch.setattr(agreement, "remeasure", lambda family, keys: dict.fromkeys(keys, 1.0))
    monkeypatch.setattr(agreement, "remeasure_asv", lambda asv, keys: dict.fromkeys(keys, 1.1))
    assert agreement.main(_write(tmp_path, asv_ms=2.0, family_ms=1.0)) == 0
    assert "| 2.00 | 1.10 | agrees |" in (tmp_path / "family" / "agreement.md").read_text()


def test_the_asv_selection_picks_exactly_the_rechecked_cells():
    # asv matches --bench against "name(repr(p1), repr(p2), ...)" of every parameter cell
    grid = itertools.product(["time_eval_forward", "time_train_step"], ["torch", "escnn"], ["C8", "D8"], [64, 640],
                             [8, 256], ["cpu", "cuda"])  # fmt: skip
    names = [f"bench_linear.Linear.{m}({', '.join(map(repr, params))})" for m, *params in grid]
    keys = [("eval_fwd", "escnn", "D8", 64, 256), ("train_fwd_bwd", "torch", "C8", 640, 8)]
    selected = [n for n in names if any(re.search(r, n) for r in agreement.asv_selection(keys))]
    assert selected == ["bench_linear.Linear.time_eval_forward('escnn', 'D8', 64, 256, 'cpu')",
                        "bench_linear.Linear.time_train_step('torch', 'C8', 640, 8, 'cpu')"]  # fmt: skip


def test_the_asv_recheck_spreads_its_samples_over_more_rounds(tmp_path, monkeypatch):
    # one asv round samples a cell for ~0.1 s, inside one slow episode of a shared machine; the recheck asks for more
    commands, run = [], agreement.subprocess.run

    def fake_run(command, **kwargs):  # git still runs; asv is only recorded
        return commands.append(command) if "asv" in command else run(command, **kwargs)

    monkeypatch.setattr(agreement.subprocess, "run", fake_run)
    assert agreement.remeasure_asv(tmp_path, [CELL]) == {}
    (command,) = commands
    assert command[command.index("--attribute") + 1] == f"rounds={agreement.RECHECK_ROUNDS}"
    assert agreement.RECHECK_ROUNDS > 2
    assert command.count("--bench") == 1


@pytest.mark.parametrize(("busy", "flagged"), [(0.03, False), (0.9, True)])
def test_the_recheck_records_how_busy_the_machine_was(tmp_path, monkeypatch, busy, flagged):
    monkeypatch.setattr(agreement, "busy_share", lambda: busy)
    monkeypatch.setattr(agreement, "remeasure", lambda family, keys: dict.fromkeys(keys, 1.0))
    monkeypatch.setattr(agreement, "remeasure_asv", lambda asv, keys: dict.fromkeys(keys, 1.0))
    assert agreement.main(_write(tmp_path, asv_ms=2.0, family_ms=1.0)) == 0
    text = (tmp_path / "family" / "agreement.md").read_text()
    assert f"cores busy in the second before each recheck: {busy:.0%}" in text
    assert ("other work was running" in text) == flagged


def test_busy_share_sees_a_busy_core():
    # a spinning thread keeps one core busy: at least a share 1/cores of the machine (less a margin for the VM)
    import os
    import threading

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        share = agreement.busy_share(0.3)
    finally:
        stop.set()
        spinner.join()
    assert 0.5 / (os.cpu_count() or 1) <= share <= 1


def test_a_difference_that_changes_sign_between_rechecks_is_scatter_not_a_disagreement(tmp_path, monkeypatch):
    # asv slower at first (1.66), faster in the first recheck (0.73), slower again (1.58): no systematic offset
    monkeypatch.setattr(agreement, "remeasure", lambda family, keys: dict.fromkeys(keys, 1.0))
    monkeypatch.setattr(agreement, "busy_share", lambda: 0.0)
    monkeypatch.setattr(agreement.time, "sleep", lambda s: None)
    for again, code in [([0.73, 1.58], 0), ([1.58, 0.73], 0), ([1.4, 1.58], 1), ([float("nan"), 1.5], 1)]:
        ratios = iter(again)
        monkeypatch.setattr(agreement, "remeasure_asv", lambda asv, keys, r=ratios: dict.fromkeys(keys, next(r)))
        folder = tmp_path / "-".join(map(str, again))
        assert agreement.main(_write(folder, asv_ms=1.66, family_ms=1.0)) == code, again
        text = (folder / "family" / "agreement.md").read_text()
        assert ("changed sign" in text) == (code == 0)


def test_a_recheck_measures_both_sides_of_one_group_size_and_batch_back_to_back(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(agreement, "remeasure", lambda family, keys: calls.append(("family", keys)) or {})
    monkeypatch.setattr(agreement, "remeasure_asv", lambda asv, keys: calls.append(("asv", keys)) or {})
    keys = [("eval_fwd", "torch", "D8", 256, 256), ("eval_fwd", "torch", "C8", 64, 256),
            ("train_fwd_bwd", "escnn", "C8", 64, 256)]  # fmt: skip
    agreement.paired_remeasure(tmp_path, tmp_path, keys)
    c8, d8 = [keys[1], keys[2]], [keys[0]]
    assert calls == [("asv", c8), ("family", c8), ("asv", d8), ("family", d8)]
