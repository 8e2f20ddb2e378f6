"""Rows and sections of ``results/README.md`` for the MuJoCo Ant studies (called by :mod:`ablations.guide`).

The same statistics as the ring-task rows: 95 % bootstrap intervals over seeds, comparisons paired by seed,
"within noise" when the interval of the mean difference covers 0. Every number is computed from the saved
``metrics.csv``; a missing study says so instead of recommending anything.
"""

from __future__ import annotations

from pathlib import Path

from .guide import (
    Decision,
    _link,
    _missing,
    _ratio_ci,
    _runs,
    _seedwise,
    affine_comparisons,
    affine_decision,
    augmentation_decision,
    equivariance_decision,
    equivariance_details,
    norm_decision,
)
from .stats import MIN_SEEDS, bootstrap_ci
from .summary import BASIS_REFERENCE, compare

FORECAST, DYNAMICS, NORM, BASIS = "ant_forecast", "ant_dynamics", "ant_norm", "ant_basis"


def basis_decision(results: Path) -> Decision:
    """The fastest ``basis_expansion_scheme`` for the Ant regressor (train-step time over seeds, relative to
    ``isotypic_expansion``), and whether any strategy changes the loss beyond noise."""
    axis = "basis expansion, Ant regressor"
    frame = _runs(results, BASIS)
    if frame is None or BASIS_REFERENCE not in set(frame.label):
        return _missing(axis, BASIS)
    reference = _seedwise(frame, BASIS_REFERENCE, "time_per_step_ms")
    ratios = {s: _ratio_ci(reference, _seedwise(frame, s, "time_per_step_ms")) for s in sorted(set(frame.label))}
    faster = {s: r for s, r in ratios.items() if s != BASIS_REFERENCE and r.n >= MIN_SEEDS and r.high < 1}
    fastest = min(faster, key=lambda s: faster[s].mean) if faster else None
    losses = {s: compare(frame, BASIS_REFERENCE, s) for s in ratios if s != BASIS_REFERENCE}
    changed = [s for s, r in losses.items() if not r.within_noise]
    rec = (f"`{fastest}` (faster beyond noise)" if fastest else
           f"any: no strategy trains faster than `{BASIS_REFERENCE}` beyond noise")  # fmt: skip
    rec += "" if changed else "; every strategy learns the same function (losses within noise)"
    flips = (
        f"loss differs beyond noise for {', '.join(changed)}"
        if changed
        else "no loss difference beyond noise; `orbit_gather` alone refuses the monomial state representation"
    )
    interval = "; ".join(f"`{s}`/`{BASIS_REFERENCE}` train-step time {r.text(3)}×" for s, r in ratios.items()
                         if s != BASIS_REFERENCE)  # fmt: skip
    return Decision(axis, rec, flips, interval, _link(BASIS))


def decisions(results: Path) -> list[Decision]:
    return [
        equivariance_decision(results, FORECAST, "equivariant vs plain, regressor (MuJoCo Ant forecast)"),
        equivariance_decision(results, DYNAMICS, "equivariant vs plain, MLP (MuJoCo Ant one-step dynamics)"),
        augmentation_decision(results, FORECAST, "augmentation, regressor (Ant)"),
        augmentation_decision(results, DYNAMICS, "augmentation, MLP (Ant)"),
        norm_decision(results, NORM, "normalisation, Ant regressor"),
        affine_decision(results, NORM, "norm affine, Ant regressor"),
        basis_decision(results),
    ]


def _forecast_lines(results: Path) -> list[str]:
    """Sampled-forecast error on the first future state at the largest training set, per model and width."""
    frame = _runs(results, FORECAST)
    if frame is None or "forecast_mse_first" not in frame:
        return []
    n = frame.train_size.max()
    rows = frame[frame.train_size == n]
    cells = [f"`{label.split('@')[0]}` {bootstrap_ci(part.forecast_mse_first).text(3)}"
             for label, part in sorted(rows.groupby("label"), key=lambda kv: kv[1].params.iloc[0])]  # fmt: skip
    still = bootstrap_ci(rows.groupby("seed").forecast_mse_first_no_change.first()).text(3)
    return [
        f"- Sampled forecast (10 Euler steps of the learned flow), mean squared error on the first future state "
        f"at n = {int(n)}, scaled units: " + ", ".join(cells) + f"; forecasting no change scores {still}.",
        "",
    ]


def _basis_lines(results: Path) -> list[str]:
    frame = _runs(results, BASIS)
    if frame is None or BASIS_REFERENCE not in set(frame.label):
        return []
    out = [f"Basis expansion in the Ant regressor, against `{BASIS_REFERENCE}`, paired by seed:", ""]
    reference = _seedwise(frame, BASIS_REFERENCE, "time_per_step_ms")
    for s in sorted(set(frame.label) - {BASIS_REFERENCE}):
        loss = compare(frame, BASIS_REFERENCE, s)
        time = _ratio_ci(reference, _seedwise(frame, s, "time_per_step_ms"))
        out.append(f"- `{s}`: test loss difference {loss.diff.text(3)} ({loss.verdict(BASIS_REFERENCE, s)}); "
                   f"train-step time {time.text(3)}×")  # fmt: skip
    return [*out, ""]


def sections(results: Path) -> list[str]:
    out = [
        "## MuJoCo Ant",
        "",
        "Task: `Ant-v5` (MuJoCo) in the torso frame under its morphological symmetry group D4 (signed "
        "permutations of legs and joints), verified by simulation in `tests/test_ant.py`. Studies: "
        + ", ".join(_link(s) for s in (FORECAST, DYNAMICS, NORM, BASIS) if (results / s).exists())
        + ".",
        "",
    ]
    for study in (FORECAST, DYNAMICS):
        out += equivariance_details(results, study)
    out += _forecast_lines(results)
    frame = _runs(results, NORM)
    if frame is not None and "norm_affine" in frame:
        out += ["Norm affine in the Ant regressor, test loss `diagonal` − `isotypic` paired by seed:", ""]
        out += [f"- `{name}`: {r.diff.text(3)} — {r.verdict('isotypic', 'diagonal')}" for name, r in
                affine_comparisons(frame)]  # fmt: skip
        out.append("")
    return out + _basis_lines(results)
