"""Figures of a study, drawn only from its saved ``metrics.csv`` (never from a live run).

    python -m ablations.plot results/basis_expansion [results/normalization ...]

A colour always means the same configuration: :data:`PALETTE` fixes it for every label the studies use, and the
hue order is the palette's order. Lines and bars show the mean over seeds with an interval of one standard error
of that mean (seaborn's ``errorbar=("se", 1)``), as each figure's caption says.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import tables  # noqa: E402
from .frames import INTERVAL, INTERVAL_TEXT, finals  # noqa: E402

_COLOURS = sns.color_palette("tab10") + sns.color_palette("tab20")  # 10-29: tab20's dark/light pairs
#: label -> colour, for every configuration the studies use; the order is the hue order.
PALETTE = dict(
    zip(
        [
            "isotypic_expansion",
            "memory_heavy",
            "cached",
            "uncached",
            "rmsnorm/pre",
            "rmsnorm/post",
            "layernorm/pre",
            "layernorm/post",
            "batchnorm/pre",
            "batchnorm/post",
            "equivariant",
            "plain/equal-width",
            "plain/equal-params",
            "plain/augmented",
            "equivariant/equal-params",
        ],  # fmt: skip
        [_COLOURS[i] for i in (0, 1, 0, 3, 10, 11, 12, 13, 14, 15, 0, 1, 7, 2, 11)],
        strict=True,
    )
)
#: Studies whose hue is a job parameter other than the label (the label also holds the training-set size).
HUE = {"equivariant_vs_plain": "model", "equivariant_vs_plain_sequence": "model", "ant_forecast": "model",
       "ant_dynamics": "model"}  # fmt: skip


def hue_order(values) -> list[str]:
    present = set(values)
    unknown = sorted(present - set(PALETTE))
    if unknown:
        raise ValueError(f"no fixed colour for {unknown}: add them to ablations.plot.PALETTE")
    return [label for label in PALETTE if label in present]


def load(out: Path) -> pd.DataFrame:
    path = Path(out) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the study first (python -m ablations.<study>)")
    return pd.read_csv(path)


def _curve_figure(data: pd.DataFrame, hue: str, title: str, path: Path) -> None:
    order = hue_order(data[hue])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("train_loss", "step"), ("test_loss", "step"), ("test_loss", "wall_time")]
    for ax, (metric, x) in zip(axes, panels, strict=True):
        # steps are shared by the seeds, so they are averaged; wall times are not, so each seed is its own line
        spread = {"errorbar": INTERVAL} if x == "step" else {"units": "seed", "estimator": None, "alpha": 0.7}
        sns.lineplot(data=data[data.metric == metric], x=x, y="value", hue=hue, hue_order=order, palette=PALETTE,
                     ax=ax, legend=ax is axes[-1], **spread)  # fmt: skip
        ax.set(yscale="log", ylabel=metric.replace("_", " "),
               xlabel="training step" if x == "step" else "training wall time (s)")  # fmt: skip
    axes[-1].legend(title=hue, fontsize=8)
    fig.suptitle(f"{title} (against step: {INTERVAL_TEXT}; against wall time: one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


COST_METRICS = [
    ("time_per_step_ms", "ms per training step"),
    ("infer_ms_per_batch", "ms per inference batch"),
    ("param_buffer_mib", "parameters + buffers (MiB)"),
    ("peak_train_rss_mib", "RSS growth in training (MiB)"),
    ("equivariance_error", "relative equivariance error (float32)"),
]


def _cost_figure(data: pd.DataFrame, hue: str, title: str, path: Path) -> None:
    final = finals(data)
    metrics = [(m, t) for m, t in COST_METRICS if m in set(final.metric)]
    order = hue_order(final[hue])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.8))
    for ax, (metric, text) in zip(axes, metrics, strict=True):
        sns.barplot(data=final[final.metric == metric], x=hue, y="value", hue=hue, order=order, hue_order=order,
                    palette=PALETTE, errorbar=INTERVAL, ax=ax, legend=False)  # fmt: skip
        ax.set(ylabel=text, xlabel="")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        if metric == "equivariance_error":
            ax.set_yscale("symlog", linthresh=1e-7)
    fig.suptitle(f"{title}: costs at the end of training ({INTERVAL_TEXT})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sample_efficiency_figure(data: pd.DataFrame, hue: str, path: Path) -> None:
    final = finals(data)
    order = hue_order(final[hue])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric in zip(axes, ["test_loss", "equivariance_error"], strict=True):
        sns.lineplot(data=final[final.metric == metric], x="train_size", y="value", hue=hue, hue_order=order,
                     palette=PALETTE, errorbar=INTERVAL, marker="o", ax=ax, legend=ax is axes[0])  # fmt: skip
        sizes = sorted(final.train_size.unique())
        ax.set(yscale="log", xlabel="training-set size", ylabel=metric.replace("_", " "))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.minorticks_off()
    fig.suptitle(f"Sample efficiency ({INTERVAL_TEXT})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(study: str, out: Path | str) -> list[Path]:
    """Draw every figure of ``study`` and write its table, from ``out/metrics.csv``; return the files written."""
    out = Path(out)
    sns.set_theme(style="whitegrid", context="notebook")
    data = load(out)
    hue = HUE.get(study, "label")
    title = study.replace("_", " ")
    written = [out / "curves.png", out / "costs.png"]
    if "train_size" in data and data.train_size.nunique() > 1 and hue == "model":
        written.insert(0, out / "sample_efficiency.png")
        _sample_efficiency_figure(data, hue, written[0])
        largest = data[data.train_size == data.train_size.max()]
        _curve_figure(largest, hue, f"{title}, {int(largest.train_size.max())} training samples", written[1])
    else:
        _curve_figure(data, hue, title, written[0])
    _cost_figure(data, hue, title, written[-1])
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    written.append(tables.write(study, data, hue, out, config, hue_order(data[hue])))
    return written


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ablations.plot", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study output folders (results/<study>)")
    for folder in parser.parse_args(argv).folders:
        study = json.loads((folder / "config.json").read_text())["study"] if (folder / "config.json").exists() else (
            folder.name)  # fmt: skip
        for path in render(study, folder):
            print(path)


if __name__ == "__main__":
    _main()
