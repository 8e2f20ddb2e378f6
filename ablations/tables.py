"""Markdown tables of a study, from its saved long-form data (called by :func:`ablations.plot.render`).

Every cell is a mean over seeds with one standard error (``m ± se``) unless the column says otherwise; the
equivariance error is the largest relative error over the group and the seeds, of the trained model cast to float32
(as trained) and to float64 (exactness, free of rounding); times are
also given as a ratio to a baseline configuration of the same sweep (the plain twin where the study has one,
else the first configuration in the hue order).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .frames import INTERVAL_TEXT, display_path, finals


def mean_se(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    mean = values.mean()
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    fmt = f"{{:.{digits}g}}"
    return fmt.format(mean) + ("" if math.isnan(se) else " ± " + fmt.format(se))


def summary(data: pd.DataFrame, hue: str) -> pd.DataFrame:
    """Per configuration (and seed): the final value of every metric, the last-quarter spread of the training loss
    and the largest cached-vs-uncached difference seen during training."""
    final = finals(data).pivot_table(index=[hue, "seed"], columns="metric", values="value", aggfunc="last")
    train = data[data.metric == "train_loss"]
    late = train[train.step >= 0.75 * train.groupby("run_id").step.transform("max")]
    final["late_train_loss_sd"] = late.groupby([hue, "seed"]).value.std()
    if "cache_output_max_abs_diff" in set(data.metric):
        diffs = data[data.metric == "cache_output_max_abs_diff"]
        final["cache_diff_during_training"] = diffs.groupby([hue, "seed"]).value.max()
    return final.reset_index()


COLUMNS = [
    ("test_loss", "final test loss", 3),
    ("train_loss", "final train loss", 3),
    ("late_train_loss_sd", "sd of last-quarter train loss", 2),
    ("time_per_step_ms", "ms / train step", 3),
    ("infer_ms_per_batch", "ms / inference batch", 3),
    ("param_buffer_mib", "params + buffers (MiB)", 3),
    ("construction_rss_mib", "RSS growth, construction (MiB)", 2),
    ("peak_train_rss_mib", "RSS growth, training (MiB)", 2),
    ("params", "trainable parameters", 4),
]


#: The configuration each study's time ratios are relative to (default: the first in the hue order).
BASELINE = {"equivariant_vs_plain": "plain/equal-width", "equivariant_vs_plain_sequence": "plain/equal-width",
            "ant_forecast": "plain/equal-width", "ant_dynamics": "plain/equal-width"}  # fmt: skip


def _main_table(rows: pd.DataFrame, hue: str, order: list[str], baseline: str) -> str:
    lines = [f"| {hue} | " + " | ".join(text for m, text, _ in COLUMNS if m in rows) + " | time / step vs "
             f"`{baseline}` | equivariance error, float32 / float64 (max) | diverged runs |",
             "|---" * (len([c for c in COLUMNS if c[0] in rows]) + 4) + "|"]  # fmt: skip
    base = rows[rows[hue] == baseline].time_per_step_ms.mean()
    for label in order:
        group = rows[rows[hue] == label]
        cells = [mean_se(group[m], d) for m, _, d in COLUMNS if m in rows]
        ratio = group.time_per_step_ms.mean() / base
        exact = group.equivariance_error_f64.max() if "equivariance_error_f64" in group else float("nan")
        lines.append(f"| `{label}` | " + " | ".join(cells) + f" | {ratio:.2f}× | {group.equivariance_error.max():.1e}"
                     f" / {exact:.1e} |"
                     f" {int(group.diverged.sum())} / {len(group)} |")  # fmt: skip
    return "\n".join(lines)


def _size_table(data: pd.DataFrame, hue: str, order: list[str]) -> str:
    final = finals(data)
    test = final[final.metric == "test_loss"]
    sizes = sorted(test.train_size.unique())
    lines = [f"| {hue} | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for label in order:
        cells = [mean_se(test[(test[hue] == label) & (test.train_size == n)].value) for n in sizes]
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(study: str, data: pd.DataFrame, hue: str, out: Path, config: dict, order: list[str]) -> Path:
    """Write ``out/table.md``; ``order`` is the configurations' display order (the figures' hue order)."""
    baseline = BASELINE.get(study, order[0]) if BASELINE.get(study) in order else order[0]
    seeds = data.seed.nunique()
    header = [
        f"# {study.replace('_', ' ')}",
        "",
        f"Generated from `metrics.csv` by `python -m ablations.plot {display_path(out)}`; the data by "
        f"`{config.get('command', 'python -m ablations.<study>')}` (profile `{config.get('profile', '?')}`).",
        f"Commit `{config.get('git_commit', '?')}`, {config.get('date', '?')}; torch {config.get('torch', '?')}, "
        f"{config.get('cpu', '?')}, {config.get('threads_per_job', '?')} torch thread(s) per run, "
        f"{config.get('workers', '?')} runs in parallel ({config.get('backend', '?')} backend). "
        f"{seeds} seeds; cells are {INTERVAL_TEXT}.",
        "",
    ]
    body = []
    if "train_size" in data and data.train_size.nunique() > 1:
        body += ["## Final test loss by training-set size", "", _size_table(data, hue, order), "",
                 "![sample efficiency](sample_efficiency.png)", ""]  # fmt: skip
        largest = data[data.train_size == data.train_size.max()]
        body += [f"## At the largest training set (n = {int(data.train_size.max())})", "",
                 _main_table(summary(largest, hue), hue, order, baseline), ""]  # fmt: skip
    else:
        body += ["## Final metrics", "", _main_table(summary(data, hue), hue, order, baseline), ""]
    if "cache_output_max_abs_diff" in set(data.metric):
        worst = data[data.metric == "cache_output_max_abs_diff"].groupby(hue).value.max()
        body += ["Largest |cached − uncached| output difference at any evaluation during training: "
                 + ", ".join(f"`{k}` {worst[k]:.1e}" for k in order if k in worst) + ".", ""]  # fmt: skip
    body += ["![learning curves](curves.png)", "", "![costs](costs.png)", ""]
    path = out / "table.md"
    path.write_text("\n".join(header + body))
    return path
