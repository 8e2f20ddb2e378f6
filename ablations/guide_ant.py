"""Sections of ``results/README.md`` for the Ant studies (called by :func:`ablations.guide.write`).

Every number is computed from the saved ``metrics.csv``; a missing study says so instead of recommending anything.
"""

from __future__ import annotations

from pathlib import Path

from .guide import _final, _links, _missing

PLAIN = ("plain/equal-width", "plain/equal-params", "plain/augmented")


def _section(results: Path, study: str, title: str, model: str, extra: str | None = None) -> list[str]:
    out = [f"## {title}", ""]
    final = _final(results, study)
    if final is None:
        return out + _missing(study)
    test = final[final.metric == "test_loss"].groupby(["model", "train_size"]).value.mean().unstack()
    sizes = list(test.columns)
    equivariant = [m for m in ("equivariant", "equivariant/equal-params") if m in test.index]
    plain = [m for m in PLAIN if m in test.index]
    lines = []
    for n in sizes:
        best_eq = min(equivariant, key=lambda m: test.loc[m, n])
        best_plain = min(plain, key=lambda m: test.loc[m, n])
        verdict = "beats" if test.loc[best_eq, n] < test.loc[best_plain, n] else "loses to"
        cells = ", ".join(f"`{m}` {test.loc[m, n]:.4g}" for m in equivariant + plain)
        lines.append(f"- n = {int(n)}: {cells}; the best equivariant {model} (`{best_eq}`) {verdict} the best plain "
                     f"one (`{best_plain}`).")  # fmt: skip
    if extra and extra in set(final.metric):
        table = final[final.metric == extra].groupby(["model", "train_size"]).value.mean().unstack()
        n = max(sizes)
        still = final[final.metric == f"{extra}_no_change"].value.mean()
        lines.append(f"- Sampled forecast, mean squared error on the first future state at n = {int(n)}: "
                     + ", ".join(f"`{m}` {table.loc[m, n]:.3g}" for m in table.index) + f" (scaled units; "
                     f"forecasting no change scores {still:.3g}).")  # fmt: skip
    errors = final[final.metric == "equivariance_error_f64"]
    exact = errors[errors.model.isin(equivariant)].value.max()
    broken = errors[errors.model.isin(plain)].value.min()
    out += [
        "Task: `Ant-v5` (MuJoCo) in the torso frame under its morphological symmetry group, verified by simulation "
        "in `tests/test_ant.py`. Test loss by training-set size (mean over seeds): "
        + _links(study, "sample_efficiency.png", "curves.png", "costs.png"),
        "",
        *lines,
        f"- After training only the equivariant models are equivariant (relative error ≤ {exact:.1e} in float64; "
        f"the plain ones ≥ {broken:.2g}, augmentation included).",
        "",
    ]
    return out


def forecast_section(results: Path) -> list[str]:
    return _section(results, "ant_forecast", "Ant dynamics: the conditional regressor forecasting the next states",
                    "regressor", extra="forecast_mse_first")  # fmt: skip


def dynamics_section(results: Path) -> list[str]:
    return _section(results, "ant_dynamics", "Ant dynamics: an eMLP predicting the next state", "MLP")


def sections(results: Path) -> list[str]:
    return forecast_section(results) + dynamics_section(results)
