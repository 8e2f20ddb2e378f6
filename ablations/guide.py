"""Write ``results/README.md``: which strategy to pick when, every recommendation computed from saved data.

    python -m ablations.guide [--results results]

Reads the studies' ``metrics.csv`` and the benchmark scripts' ``raw.csv`` files; a section whose data is missing
says so instead of recommending anything. Nothing here measures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .common import RESULTS
from .summary import finals


def _final(results: Path, study: str) -> pd.DataFrame | None:
    path = results / study / "metrics.csv"
    if not path.exists():
        return None
    final = finals(pd.read_csv(path))
    return final


def _mean(final: pd.DataFrame, label: str, metric: str, key: str = "label") -> float:
    return final[(final[key] == label) & (final.metric == metric)].value.mean()


def _links(study: str, *figures: str) -> str:
    parts = [f"[table]({study}/table.md)"] + [f"[{f.split('.')[0].replace('_', ' ')}]({study}/{f})" for f in figures]
    return " · ".join(parts)


def _missing(study: str) -> list[str]:
    return [f"- No data yet: `python -m ablations.run_all` (or the study alone) writes `{study}/metrics.csv`.", ""]


def basis_section(results: Path) -> list[str]:
    out = ["## Basis expansion: `basis_expansion_scheme`", ""]
    final = _final(results, "basis_expansion")
    if final is None:
        return out + _missing("basis_expansion")
    iso, dense = "isotypic_expansion", "memory_heavy"
    loss = {s: _mean(final, s, "test_loss") for s in (iso, dense)}
    time = _mean(final, dense, "time_per_step_ms") / _mean(final, iso, "time_per_step_ms")
    infer = _mean(final, dense, "infer_ms_per_batch") / _mean(final, iso, "infer_ms_per_batch")
    memory = _mean(final, dense, "param_buffer_mib") / _mean(final, iso, "param_buffer_mib")
    per_seed = final[final.metric == "test_loss"].pivot_table(index="seed", columns="label", values="value")
    gap = (per_seed[dense] - per_seed[iso]).abs().max()
    faster = iso if time > 1 else dense
    out += [
        f"- **Pick `{faster}`.** Both parameterise the same basis, so they learn the same function: final test loss "
        f"{loss[iso]:.4g} (`{iso}`) vs {loss[dense]:.4g} (`{dense}`), largest per-seed difference {gap:.1e}. "
        f"`{dense}` takes {time:.2f}× the time per training step, {infer:.2f}× per inference batch and "
        f"{memory:.1f}× the parameter + buffer memory of `{iso}`. "
        + _links("basis_expansion", "curves.png", "costs.png"),
        f"- `{dense}` refuses stacks above `max_basis_bytes` (2 GiB by default); keep it for checking small layers.",
        "",
    ]
    return out


def cache_section(results: Path) -> list[str]:
    out = ["## Weight cache: `weight_cache`", ""]
    data_path = results / "weight_cache" / "metrics.csv"
    if not data_path.exists():
        return out + _missing("weight_cache")
    data = pd.read_csv(data_path)
    final = finals(data)
    interleaved = final[final.metric.str.endswith("_interleaved")].pivot_table(
        index="run_id", columns="metric", values="value"
    )
    infer = (interleaved.infer_ms_uncached_interleaved / interleaved.infer_ms_cached_interleaved).median()
    train = _mean(final, "uncached", "time_per_step_ms") / _mean(final, "cached", "time_per_step_ms")
    diff = data[data.metric == "cache_output_max_abs_diff"].value.max()
    choice = "cached" if infer >= 1 else "uncached"
    out += [
        f"- **Keep `{choice}`** for inference: `uncached` takes {infer:.2f}× the time of `cached` per no-grad "
        f"forward of the trained regressor (median over runs; both modes timed alternately in one process). "
        f"Training steps record autograd and never use the cache: the runs' time per step differs by "
        f"{train:.2f}× (uncached / cached, separate processes on a shared machine, so this ratio is noise "
        f"around 1). {_links('weight_cache', 'costs.png')}",
        f"- The cache never went stale: after every evaluation the cached model's outputs matched an uncached copy "
        f"of its current state to {diff:.1e} (largest difference over all runs and evaluations).",
        "",
    ]
    return out


def norm_section(results: Path) -> list[str]:
    out = ["## Normalisation: `norm_module` and `norm_first`", ""]
    final = _final(results, "normalization")
    if final is None:
        return out + _missing("normalization")
    labels = sorted(final.label.unique())
    loss = {label: _mean(final, label, "test_loss") for label in labels}
    time = {label: _mean(final, label, "time_per_step_ms") for label in labels}
    diverged = {label: int(_mean(final, label, "diverged") * final.seed.nunique()) for label in labels}
    best = min(labels, key=loss.get)
    fastest = min(labels, key=time.get)
    ranked = ", ".join(f"`{label}` {loss[label]:.4g}" for label in sorted(labels, key=loss.get))
    unstable = [label for label in labels if diverged[label]]
    out += [
        f"- **Lowest final test loss: `{best}`** (norm/placement, pre = `norm_first=True`). All, best first: "
        f"{ranked}. {_links('normalization', 'curves.png', 'costs.png')}",
        f"- Fastest per training step: `{fastest}` ({time[fastest]:.3g} ms; slowest {max(time.values()):.3g} ms).",
        "- Diverged runs: "
        + (", ".join(f"`{label}` {diverged[label]}" for label in unstable) if unstable else "none")
        + ". The table's 'sd of last-quarter train loss' column measures how noisy each configuration trains.",
        "",
    ]
    return out


def _equivariance_section(results: Path, study: str, title: str, model: str) -> list[str]:
    out = [f"## {title}", ""]
    final = _final(results, study)
    if final is None:
        return out + _missing(study)
    test = final[final.metric == "test_loss"].groupby(["model", "train_size"]).value.mean().unstack()
    eq = test.loc["equivariant"]
    lines = []
    for n in sorted({test.columns.min(), test.columns.max()}):
        others = {m: test.loc[m, n] for m in test.index if m != "equivariant"}
        best_plain = min(others, key=others.get)
        verdict = "beats" if eq[n] < others[best_plain] else "loses to"
        lines.append(
            f"- n = {int(n)}: equivariant test loss {eq[n]:.4g}; plain at equal width "
            f"{test.loc['plain/equal-width', n]:.4g}, at equal parameters {test.loc['plain/equal-params', n]:.4g}, "
            f"augmented {test.loc['plain/augmented', n]:.4g}: the equivariant model {verdict} the best plain "
            f"variant (`{best_plain}`)."
        )
    wins = [int(n) for n in test.columns if eq[n] < test.loc[[m for m in test.index if m != "equivariant"], n].min()]
    per_plain = []
    for plain in ("plain/equal-width", "plain/equal-params", "plain/augmented"):
        sizes = [str(int(n)) for n in test.columns if eq[n] < test.loc[plain, n]]
        per_plain.append(f"`{plain}` at n = {', '.join(sizes) if sizes else 'none'}")
    error = final[(final.metric == "equivariance_error_f64") & (final.model == "equivariant")].value.max()
    plain_error = final[(final.metric == "equivariance_error") & (final.model != "equivariant")].value.min()
    out += [
        f"- **Training-set sizes where the equivariant {model} has the lowest test loss of all four: "
        + (", ".join(map(str, wins)) if wins else "none")
        + ".** "
        + _links(study, "sample_efficiency.png"),
        f"- The equivariant {model} has a lower mean test loss than "
        + "; than ".join(per_plain)
        + f" (sizes tried: {', '.join(str(int(n)) for n in test.columns)}).",
        *lines,
        f"- Only the equivariant model is equivariant after training (relative error ≤ {error:.1e} in float64; the "
        f"plain ones ≥ {plain_error:.2g}, augmentation included): pick it when exact symmetry matters downstream.",
        "",
    ]
    return out


def equivariance_section(results: Path) -> list[str]:
    return _equivariance_section(results, "equivariant_vs_plain", "Equivariant or plain (with augmentation)? "
                                 "MLP on the ring-regression task", "MLP")  # fmt: skip


def sequence_equivariance_section(results: Path) -> list[str]:
    return _equivariance_section(results, "equivariant_vs_plain_sequence", "Equivariant or plain? The conditional "
                                 "regressor on the ring-oscillator task", "regressor")  # fmt: skip


def _diagonal_twin(name: str) -> str:
    """``"eRMSNorm"`` -> ``"eRMSNorm (diagonal affine)"``; ``"X (rmsnorm)"`` -> ``"X (rmsnorm, diagonal affine)"``."""
    return name[:-1] + ", diagonal affine)" if name.endswith(")") else name + " (diagonal affine)"


def _affine_advice(ratio: pd.DataFrame) -> list[str]:
    """A recommendation for each layer measured with both norm affines, from the upper ends of the ratio ranges."""
    upper = ratio["max"].to_dict()
    pairs = sorted({(impl, metric) for impl, metric in upper if (_diagonal_twin(impl), metric) in upper})
    if not pairs:
        return []
    cells = [f"`{impl}` {metric} ≤ {upper[(impl, metric)]:.2f}× → ≤ {upper[(_diagonal_twin(impl), metric)]:.2f}×"
             for impl, metric in pairs]  # fmt: skip
    better = sum(upper[(_diagonal_twin(i), m)] < upper[(i, m)] for i, m in pairs)
    verdict = 'use `affine="diagonal"`' if better == len(pairs) else "the diagonal affine is not uniformly faster"
    return ["", f"- **Norms on permutation representations: {verdict}** (`norm_affine=\"diagonal\"` in the "
            f"transformer layers and the regressor); faster in {better} of {len(pairs)} measurements: "
            + "; ".join(cells) + "."]  # fmt: skip


def benchmark_section(results: Path) -> list[str]:
    out = ["## Layer speed and memory against torch", ""]
    families = {
        "linear_family": "eLinear strategies vs `nn.Linear`",
        "layer_family": "norms, attention, encoder layer, MLP and regressor vs their torch twins",
    }
    for folder, text in families.items():
        raw = results / folder / "raw.csv"
        if not raw.exists():
            out += [f"- `{folder}`: no data yet (`make results`).", ""]
            continue
        data = pd.read_csv(raw)
        timed = data[data.metric.isin(["train", "eval", "train_fwd_bwd", "eval_fwd"]) & (data.baseline > 0)]
        ratio = (timed.value / timed.baseline).groupby([timed.implementation, timed.metric]).agg(["min", "max"])
        out += [f"[{text}]({folder}/table.md): time as a ratio to the torch layer of the same run (min–max over the"
                " sizes and groups measured).", "", "| implementation | measurement | ratio to torch |",
                "|---|---|---|"]  # fmt: skip
        out += [f"| `{impl}` | {metric} | {row['min']:.2f}–{row['max']:.2f}× |" for (impl, metric), row in
                ratio.iterrows() if not impl.startswith("nn.") and row["max"] != 1.0]  # fmt: skip
        out += _affine_advice(ratio) + [""]
    if (results / "asv").exists():
        out.append("- asv suites, every layer × strategy × device: [results/asv](asv/).")
    return out + [""]


def write(results: Path = RESULTS) -> Path:
    lines = [
        "# Results and strategy guide",
        "",
        "Generated by `python -m ablations.guide` from the saved data in this folder (`make results` regenerates "
        "everything). Each study folder holds `metrics.csv` (long form: one row per run × step × metric), "
        "`config.json` (configuration, versions, commit, device), `table.md` and the figures; numbers are means "
        "over seeds. Quick-profile studies are small: read them as directions, and rerun with `--full` before "
        "publishing.",
        "",
    ]
    sections = (basis_section, cache_section, norm_section, equivariance_section, sequence_equivariance_section,
                benchmark_section)  # fmt: skip
    for section in sections:
        lines += section(results)
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ablations.guide", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    print(write(parser.parse_args(argv).results))


if __name__ == "__main__":
    _main()
