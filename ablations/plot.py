"""Figures of a study, drawn only from its saved ``metrics.csv`` (never from a live run).

    python -m ablations.plot results/basis_expansion [results/normalization ...]   # figures only
    python -m ablations.report results/basis_expansion                            # figures and table.md

Every figure carries a caption (task, loss, model sizes, steps, group, hardware, commit), shows final metrics as
points with 95 % bootstrap intervals over seeds, draws the zero-predictor loss (dashed) and, where the task has
one, the noise floor (dotted), puts its legend outside the axes, uses log axes for quantities that span decades
(loss, parameters, time, memory) and facets instead of stacking more than four curves in a panel. A colour always
means the same configuration (:data:`ablations.summary.PALETTE`).
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .frames import INTERVAL  # noqa: E402
from .stats import bootstrap_ci  # noqa: E402
from .summary import (  # noqa: E402
    CONVERGENCE,
    HUE,
    LOSS,
    NORM_STUDIES,
    PALETTE,
    caption,
    convergence_results,
    equal_params_pairs,
    hue_order,
    load,
    load_config,
    runs,
)

COSTS = [
    ("time_per_step_ms", "ms per training step"),
    ("infer_ms_per_batch", "ms per inference batch"),
    ("param_buffer_mib", "parameters + buffers (MiB)"),
    ("peak_train_rss_mib", "RSS growth in training (MiB, fresh process)"),
    ("construction_rss_mib", "RSS growth, construction (MiB, fresh process)"),
    ("equivariance_error", "relative equivariance error (float32)"),
]


def _compact(value: float, _=None) -> str:
    """Tick label: ``2k`` for 2000, ``1.5M`` for 1.5e6, ``%g`` below 1000."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _scale(ax, which: str, values) -> None:
    """Log scale when the positive ``values`` span more than a factor 10, else linear. Labels are compact
    (``2k``) at 1, 2, 5 per decade on y and 1, 3 on x (narrow panels) while the span is under three decades, at
    powers of ten beyond; minor ticks are unlabelled."""
    values = pd.Series(values, dtype=float).dropna()
    values = values[values > 0]
    if values.empty or values.max() / values.min() <= 10:
        return
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    span = values.max() / values.min()
    subs = ((1.0, 2.0, 5.0) if which == "y" else (1.0, 3.0)) if span < 1e3 else (1.0,)
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs, numticks=8 if span < 1e6 else 6))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_compact))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _save(fig, path: Path, text: str) -> Path:
    fig.text(0.0, -0.01, text, ha="left", va="top", fontsize=7, wrap=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _references(ax, frame: pd.DataFrame) -> None:
    """Zero-predictor loss (dashed) and noise floor (dotted), means over the runs shown."""
    if "zero_predictor_loss" in frame:
        ax.axhline(frame.zero_predictor_loss.mean(), color="0.35", ls="--", lw=1, label="predict zero")
    if "noise_floor" in frame and frame.noise_floor.notna().any():
        ax.axhline(frame.noise_floor.mean(), color="0.35", ls=":", lw=1, label="noise floor")


def _reference_values(frame: pd.DataFrame) -> list[float]:
    return [frame[c].mean() for c in ("zero_predictor_loss", "noise_floor") if c in frame and frame[c].notna().any()]


def _errorbar(ax, x, values: list[pd.Series], colour, label=None, marker="o", connect=False) -> None:
    cis = [bootstrap_ci(v) for v in values]
    mean = np.array([c.mean for c in cis])
    low = np.array([c.mean - c.low if c.n > 1 else 0 for c in cis])
    high = np.array([c.high - c.mean if c.n > 1 else 0 for c in cis])
    ax.errorbar(x, mean, yerr=[low, high], fmt=marker + ("-" if connect else ""), color=colour, label=label,
                capsize=3, ms=5, lw=1.2)  # fmt: skip


def _legend(fig, axes) -> None:
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    fig.legend([handles[k] for k in labels], labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


#: Panels per row of a faceted figure: wider figures shrink below readable size at page width.
MAX_COLUMNS = 4


def _panels(count: int, width: float, height: float, sharey: bool = False):
    """A figure of ``count`` panels of ``width`` x ``height`` inches, at most :data:`MAX_COLUMNS` per row; returns
    the figure and the ``count`` axes in reading order (spare cells of the last row are hidden)."""
    columns = min(count, MAX_COLUMNS)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns + 1, height * rows), squeeze=False,
                             sharey=sharey)  # fmt: skip
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


# ----------------------------------------------------------------------------------------------- curves
def curves(data: pd.DataFrame, study: str, out: Path, text: str) -> Path:
    """Validation loss against step (mean and 95 % interval over seeds), faceted so that no panel holds more
    than four curves."""
    val = data[data.metric == "val_loss"].copy()
    hue = HUE.get(study, "label")
    if study in NORM_STUDIES:
        rows, cols, style, palette = "num_layers", "norm", "norm_affine", PALETTE
    elif hue == "model":
        rows, cols, style, hue, palette = "model", "train_size", None, "width", "viridis"
        width = val.embedding_dim if "embedding_dim" in val else val.hidden
        val["width"] = [f"width {w:>4}" for w in width]
    else:
        rows, cols, style, palette = None, None, None, PALETTE
    row_values = sorted(val[rows].unique()) if rows else [None]
    col_values = sorted(val[cols].unique()) if cols else [None]
    fig, axes = plt.subplots(len(row_values), len(col_values), figsize=(3.6 * len(col_values) + 1,
                             2.8 * len(row_values)), squeeze=False, sharey=True)  # fmt: skip
    for i, r in enumerate(row_values):
        for j, c in enumerate(col_values):
            ax, part = axes[i, j], val
            if rows:
                part = part[part[rows] == r]
            if cols:
                part = part[part[cols] == c]
            order = hue_order(part[hue]) if palette is PALETTE else None
            sns.lineplot(data=part, x="step", y="value", hue=hue, hue_order=order, style=style, palette=palette,
                         errorbar=INTERVAL, ax=ax, legend=True)  # fmt: skip
            ax.set(yscale="log", xlabel="training step", ylabel="validation loss" if j == 0 else "",
                   title=" · ".join(f"{k} = {v}" for k, v in ((rows, r), (cols, c)) if k))  # fmt: skip
            if ax.get_legend():
                ax.get_legend().remove()
    _legend(fig, axes)
    fig.tight_layout()
    return _save(fig, out / "curves.png", text + " Curves: mean over seeds with a 95 % bootstrap band; a run "
                 "stops when its validation loss plateaus, so late steps average fewer runs.")  # fmt: skip


# ----------------------------------------------------------------------------------------------- final metrics
def _points(ax, frame: pd.DataFrame, labels: list[str], metric: str, hue: str) -> None:
    """One point with its interval per label, coloured (and named in the legend) by its ``hue`` value."""
    for k, label in enumerate(labels):
        rows = frame[frame.label == label]
        name = rows[hue].iloc[0]
        _errorbar(ax, [k], [rows[metric]], PALETTE[name], name)
    ax.set_xlim(-0.6, len(labels) - 0.4)


def results(frame: pd.DataFrame, study: str, out: Path, text: str) -> Path:
    """Best-checkpoint test loss per configuration, point and 95 % interval (faceted by depth for the norm study)."""
    hue = HUE.get(study, "label")
    facets = sorted(frame.num_layers.unique()) if study in NORM_STUDIES else [None]
    fig, axes = plt.subplots(1, len(facets), figsize=(max(4.5, 0.55 * frame.label.nunique() / len(facets) + 2)
                             * len(facets), 4), squeeze=False, sharey=True)  # fmt: skip
    for ax, depth in zip(axes[0], facets, strict=True):
        part = frame if depth is None else frame[frame.num_layers == depth]
        labels = sorted(part.label.unique(), key=lambda lab: (hue_order(part[hue]).index(
            part[part.label == lab][hue].iloc[0]), lab))  # fmt: skip
        _points(ax, part, labels, LOSS, hue)
        _references(ax, part)
        ax.set_xticks(range(len(labels)), [lab.rsplit("/L", 1)[0] for lab in labels], rotation=60, ha="right",
                      fontsize=8)  # fmt: skip
        _scale(ax, "y", [*part[LOSS], *_reference_values(part)])
        ax.set(ylabel="test loss at best validation step",
               title=f"depth {depth}" if depth is not None else "")  # fmt: skip
    _legend(fig, axes)
    fig.tight_layout()
    return _save(fig, out / "results.png", text + " Points: mean over seeds; bars: 95 % bootstrap interval. A seed "
                 "fixes the data for every configuration, so these bars include the spread between datasets; the "
                 "paired differences in table.md remove it.")  # fmt: skip


def costs(frame: pd.DataFrame, study: str, out: Path, text: str, fresh: bool) -> Path:
    """Time and memory per configuration, log axes; at the largest training set where the study varies it."""
    hue = HUE.get(study, "label")
    note = ""
    if "train_size" in frame and frame.train_size.nunique() > 1:
        frame = frame[frame.train_size == frame.train_size.max()]
        note = f" Costs at the largest training set only (n = {int(frame.train_size.max())}); they do not depend on n."
    metrics = [(m, t) for m, t in COSTS if m in frame and frame[m].notna().any() and (fresh or "rss" not in m)]
    fig, axes = _panels(len(metrics), 3.4, 3.8)
    labels = sorted(frame.label.unique(), key=lambda lab: (hue_order(frame[hue]).index(
        frame[frame.label == lab][hue].iloc[0]), frame[frame.label == lab].params.iloc[0], lab))  # fmt: skip
    for ax, (metric, title) in zip(axes, metrics, strict=True):
        _points(ax, frame, labels, metric, hue)
        ax.set_xticks(range(len(labels)), [lab.split("@")[0] for lab in labels], rotation=60, ha="right", fontsize=7)
        ax.set(ylabel=title)
        _scale(ax, "y", frame[metric])
    _legend(fig, axes)
    fig.tight_layout()
    return _save(fig, out / "costs.png", text + note + " Points: mean over seeds; bars: 95 % bootstrap interval. "
                 "RSS columns appear only for studies that run every configuration in a fresh process.")  # fmt: skip


# ----------------------------------------------------------------------------------------------- equivariance
def loss_vs_params(frame: pd.DataFrame, out: Path, text: str) -> Path:
    """Test loss against parameter count, one panel per training-set size, one line per model."""
    sizes = sorted(frame.train_size.unique())
    fig, axes = _panels(len(sizes), 3.6, 3.6, sharey=True)
    for ax, n in zip(axes, sizes, strict=True):
        part = frame[frame.train_size == n]
        for model in hue_order(part.model):
            rows = part[part.model == model]
            counts = sorted(rows.params.unique())
            _errorbar(ax, counts, [rows[rows.params == c][LOSS] for c in counts], PALETTE[model], model, connect=True)
        _references(ax, part)
        _scale(ax, "x", part.params)
        _scale(ax, "y", [*frame[LOSS], *_reference_values(frame)])
        ax.set(xlabel="trainable parameters", title=f"n = {int(n)}",
               ylabel="test loss at best validation step" if ax.get_subplotspec().is_first_col() else "")  # fmt: skip
    _legend(fig, axes)
    fig.tight_layout()
    return _save(fig, out / "loss_vs_params.png", text + " Points: mean over seeds; bars: 95 % bootstrap interval.")


def loss_vs_data(frame: pd.DataFrame, out: Path, text: str) -> Path:
    """Test loss against training-set size at equal parameters: one panel per equivariant width, with the plain
    and augmented runs of the closest parameter count."""
    pair_columns = ["train_size", "equivariant", "other_model", "other", "eq_params", "other_params", "width"]
    pairs = pd.DataFrame(equal_params_pairs(frame), columns=pair_columns)
    equivariant = frame[frame.model == "equivariant"]
    widths = sorted(int(w) for w in equivariant.width.unique())
    fig, axes = _panels(len(widths), 3.8, 3.9, sharey=True)
    for ax, width in zip(axes, widths, strict=True):
        mine, own = pairs[pairs.width == width], equivariant[equivariant.width == width]
        sizes = sorted(own.train_size.unique())
        eq_labels = [own[own.train_size == n].label.iloc[0] for n in sizes]
        params = own.params.iloc[0]
        _errorbar(ax, sizes, [frame[frame.label == lab][LOSS] for lab in eq_labels], PALETTE["equivariant"],
                  "equivariant", connect=True)  # fmt: skip
        matched_params = []
        for other in ("plain", "plain/augmented"):
            rows = mine[mine.other_model == other]
            if rows.empty:
                continue
            paired_sizes = sorted(rows.train_size.unique())
            labels = [rows[rows.train_size == n].other.iloc[0] for n in paired_sizes]
            matched_params.append(f"{other} {int(frame[frame.label.isin(labels)].params.median()):,}")
            _errorbar(ax, paired_sizes, [frame[frame.label == lab][LOSS] for lab in labels], PALETTE[other],
                      other, connect=True)  # fmt: skip
        _references(ax, frame[frame.label.isin(eq_labels)])
        partners = ", ".join(matched_params) or "no plain model within 10 %"
        title = f"equivariant width {width}: {int(params):,} params\nat equal params: {partners}"
        ax.set(xscale="log", xlabel="training-set size", title=title,
               ylabel="test loss at best validation step" if ax.get_subplotspec().is_first_col() else "")  # fmt: skip
        ax.title.set_fontsize(9)
        _scale(ax, "y", [*frame[LOSS], *_reference_values(frame)])
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.minorticks_off()
    _legend(fig, axes)
    fig.tight_layout()
    return _save(fig, out / "loss_vs_data.png", text + " Each panel: the equivariant model at one width and the "
                 "plain models at the width with the closest parameter count, if within 10 %. Points: mean over "
                 "seeds; bars: 95 % bootstrap interval.")  # fmt: skip


# ----------------------------------------------------------------------------------------------- converged check
def convergence_text(frame: pd.DataFrame, config: dict) -> str:
    """The converged check's caption: its tasks are its sources' (see their figures for task, loss and group)."""
    cfg = config.get("config", {})
    return (f"Converged check: configurations of {', '.join(cfg.get('sources', []))} retrained with their study's "
            f"settings and chosen learning rate on fresh seeds at {cfg.get('cap_factor', '?')}x the study's step cap, "
            f"patience {cfg.get('patience', '?')} evaluations; {frame.seed.nunique()} seeds; task, loss and group "
            f"as in each source study's figures. Hardware: {config.get('cpu', '?')}, "
            f"{config.get('threads_per_job', '?')} torch thread(s) per run, {config.get('workers', '?')} runs in "
            f"parallel; commit {str(config.get('git_commit', '?'))[:12]}.")  # fmt: skip


_COLOURS_AB = sns.color_palette("tab10")[:2]


def convergence_curves(data: pd.DataFrame, out: Path, text: str) -> Path:
    """One panel per retrained comparison: the validation curves of its two configurations (mean and 95 % band),
    with the source study's step cap marked."""
    found = convergence_results(out, runs(data))
    val = data[data.metric == "val_loss"]
    factor = load_config(out).get("config", {}).get("cap_factor", 1)
    fig, axes = _panels(max(len(found), 1), 3.8, 3.2)
    for ax, c in zip(axes, found, strict=False):
        for colour, side, name in zip(_COLOURS_AB, ("a", "b"), (c.a, c.b), strict=True):
            part = val[val.label == f"{c.source}:{name}"]
            sns.lineplot(data=part, x="step", y="value", errorbar=INTERVAL, ax=ax, color=colour,
                         label=f"{side}: {name}")  # fmt: skip
        ax.axvline(data[data.label == f"{c.source}:{c.a}"].steps.iloc[0] / factor, color="0.35", ls="--", lw=1,
                   label="the study's step cap")  # fmt: skip
        ax.set(yscale="log", xlabel="training step", ylabel="validation loss")
        ax.set_title(f"{c.source}\n{c.what}", fontsize=8)
        ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return _save(fig, out / "curves.png", textwrap.fill(text + " Each panel: one comparison; bands: 95 % bootstrap "
                 "interval over seeds.", 150))  # fmt: skip


def convergence_verdicts(out: Path, frame: pd.DataFrame, text: str) -> Path:
    """Per comparison, b - a as a percentage of a's mean loss, at the study's cap and trained to plateau."""
    found = convergence_results(out, frame)
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(found), 1) + 1.2))
    for k, c in enumerate(found):
        for shift, result, colour, name in ((-0.15, c.grid, "0.55", "at the study's cap"),
                                            (0.15, c.converged, _COLOURS_AB[0], "trained to plateau")):  # fmt: skip
            scale = 100 / result.a_mean
            d = result.diff
            err = [[(d.mean - d.low) * scale], [(d.high - d.mean) * scale]] if d.n > 1 else None
            ax.errorbar([d.mean * scale], [k + shift], xerr=err, fmt="o", color=colour, capsize=3, ms=4,
                        label=name if k == 0 else None)  # fmt: skip
    ax.axvline(0, color="0.2", lw=1)
    ax.set_yticks(range(len(found)), [f"{c.source}: {c.what}" for c in found], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("b − a, % of a's mean test loss (paired by seed)")
    _legend(fig, [ax])
    fig.tight_layout()
    return _save(fig, out / "verdicts.png", textwrap.fill(text + " Points: mean paired difference; bars: 95 % "
                 "bootstrap interval over seeds; a bar that crosses 0 is within noise. a and b are named in table.md.",
                 110))  # fmt: skip


def figures(study: str, out: Path | str) -> list[Path]:
    """Draw every figure of ``study`` from ``out/metrics.csv``; return the files written."""
    out = Path(out)
    sns.set_theme(style="whitegrid", context="notebook")
    data = load(out)
    frame = runs(data)
    config = load_config(out)
    if study == CONVERGENCE:
        text = convergence_text(frame, config)
        return [convergence_curves(data, out, text), convergence_verdicts(out, frame, text)]
    text = caption(study, frame, config)
    written = [
        curves(data, study, out, text),
        costs(frame, study, out, text, config.get("fresh_process_per_run", False)),
    ]
    if HUE.get(study) == "model":
        written += [loss_vs_params(frame, out, text), loss_vs_data(frame, out, text)]
    else:
        written.append(results(frame, study, out, text))
    return written


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ablations.plot", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study output folders (results/<study>)")
    for folder in parser.parse_args(argv).folders:
        for path in figures(load_config(folder).get("study", folder.name), folder):
            print(path)


if __name__ == "__main__":
    _main()
