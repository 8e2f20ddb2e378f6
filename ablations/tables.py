"""Markdown tables of a study, from its saved long-form data (``python -m ablations.report`` writes them).

Cells are means over seeds with a 95 % bootstrap interval over seeds (``m [low, high]``); accuracy is the test
loss at each run's best-validation checkpoint. Paired comparisons subtract per seed (a seed fixes the data and the
initialisation) and say "within noise" when the interval of the mean difference covers 0. The equivariance error
is the largest relative error over the group and the seeds, of the trained model in float32 (as trained) and
float64 (exactness, free of rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .frames import INTERVAL_TEXT, display_path
from .stats import bootstrap_ci
from .summary import (
    BASIS_STUDIES,
    CONVERGENCE,
    HUE,
    LATE,
    LOSS,
    commit_text,
    compare,
    comparisons,
    convergence_results,
    hue_order,
    load,
    runs,
    unpaired,
)
from .sweep import LR_EXTENSIONS

COLUMNS = [
    (LOSS, "test loss at best val step", 3),
    ("best_train_loss", "train loss there", 3),
    ("late_train_loss_sd", "sd of last-quarter train loss", 2),
    ("time_per_step_ms", "ms / train step", 3),
    ("infer_ms_per_batch", "ms / inference batch", 3),
    ("param_buffer_mib", "params + buffers (MiB)", 3),
    ("construction_rss_mib", "RSS growth, construction (MiB)", 2),
    ("peak_train_rss_mib", "RSS growth, training (MiB)", 2),
]


def _cell(values: pd.Series, digits: int = 3) -> str:
    return bootstrap_ci(values).text(digits)


def _ordered_labels(frame: pd.DataFrame, hue: str) -> list[str]:
    order = hue_order(frame[hue])
    first = frame.drop_duplicates("label").set_index("label", drop=False)
    extra = [c for c in ("width", "train_size") if c in first]
    return sorted(first.index, key=lambda lab: (order.index(first.loc[lab, hue]), *first.loc[lab, extra], lab))


#: Runs trained before the plateau schedule (:class:`ablations.train.PlateauThenAnneal`) log no ``plateaued``: such
#: a configuration counts as plateaued when its median run's best validation loss fell by at most this fraction
#: over the last quarter of the step budget (:func:`ablations.summary.late_gain`).
PLATEAU = 0.01


def has_plateau_record(frame: pd.DataFrame) -> bool:
    """Whether every run of ``frame`` logged ``plateaued`` (trained under the plateau schedule)."""
    return "plateaued" in frame and bool(frame.plateaued.notna().all())


def _capped(rows: pd.DataFrame) -> bool:
    """Whether most runs of one configuration reached the step cap without a validation plateau (a diverged run
    did neither: it counts against)."""
    diverged = rows.diverged >= 0.5 if "diverged" in rows else False
    return bool(((rows.plateaued < 0.5) & ~diverged).mean() > 0.5)


def _steps_cell(rows: pd.DataFrame) -> str:
    """Median best and stopping step, then how many runs plateaued (flagged "cap" when most did not); for runs
    without that record, the median late gain, flagged "budget" above :data:`PLATEAU`."""
    best, stop = rows.best_step.median(), rows.stopped_step.median()
    cell = f"{best:.0f} / {stop:.0f}"
    if has_plateau_record(rows):
        cell += f", plateau {int((rows.plateaued >= 0.5).sum())}/{len(rows)}" + (" (cap)" if _capped(rows) else "")
    elif "late_val_gain" in rows and pd.notna(gain := rows.late_val_gain.median()):
        cell += f", {-100 * gain:.1f} %" + (" (budget)" if gain > PLATEAU else "")
    return cell


def late_gains(frame: pd.DataFrame) -> pd.Series:
    """Median late gain (:func:`ablations.summary.late_gain`) per configuration; empty when none was logged."""
    if "late_val_gain" not in frame:
        return pd.Series(dtype=float)
    return frame.groupby("label").late_val_gain.median().dropna()


def budget_limited(frame: pd.DataFrame) -> list[str]:
    """Configurations whose losses are upper bounds: most of their runs reached the step cap before validation
    plateaued (or, for runs without that record, the median run's best validation loss still fell by more than
    :data:`PLATEAU` over the last quarter of the budget)."""
    if has_plateau_record(frame):
        return sorted(label for label, rows in frame.groupby("label") if _capped(rows))
    gains = late_gains(frame)
    return sorted(gains.index[gains > PLATEAU])


def budget_criterion(frame: pd.DataFrame) -> str:
    """The words for what :func:`budget_limited` tested on ``frame``."""
    if has_plateau_record(frame):
        return "most runs reached the step cap before validation plateaued"
    return f"the median run's best validation loss fell by more than {PLATEAU:.0%} over the last quarter of its steps"


def lr_at_edge(selection: pd.DataFrame | None) -> list[str]:
    """Configurations whose chosen learning rate is the smallest or largest of the (two or more) rates tried for
    them (``lr_selection.csv``): their optimum may lie beyond the rates tried."""
    if selection is None or selection.empty:
        return []
    edge = []
    for label, rows in selection.groupby("label"):
        chosen = rows.lr[rows.chosen]
        if len(rows) > 1 and len(chosen) and chosen.iloc[0] in (rows.lr.min(), rows.lr.max()):
            edge.append(label)
    return sorted(edge)


def read_selection(out: Path) -> pd.DataFrame | None:
    path = Path(out) / "lr_selection.csv"
    return pd.read_csv(path) if path.exists() else None


def main_table(frame: pd.DataFrame, hue: str, fresh: bool, edge: Sequence[str] = ()) -> str:
    columns = [(m, t, d) for m, t, d in COLUMNS if m in frame and (fresh or "rss" not in m)]
    if has_plateau_record(frame):
        late = "best / stop step (median); runs that plateaued before the cap (cap = most did not)"
    else:
        late = f"best / stop step; best val loss change over the last {LATE:.0%} of steps (median; budget = fell > "
        late += f"{PLATEAU:.0%})"
    head = ["configuration", "lr (chosen)", late, "params"] + [t for _, t, _ in columns]
    head += ["equivariance error, f32 / f64 (max)", "diverged"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for label in _ordered_labels(frame, hue):
        rows = frame[frame.label == label]
        cells = [
            f"`{label}`",
            ", ".join(f"{lr:g}" for lr in sorted(rows.lr.unique())) + (" (edge)" if label in edge else "")
            if "lr" in rows
            else "?",
            _steps_cell(rows),
            f"{int(rows.params.iloc[0]):,}",
        ]
        cells += [_cell(rows[m], d) for m, _, d in columns]
        f64 = rows.equivariance_error_f64.max() if "equivariance_error_f64" in rows else float("nan")
        cells += [f"{rows.equivariance_error.max():.1e} / {f64:.1e}", f"{int(rows.diverged.sum())} / {len(rows)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(frame: pd.DataFrame, pairs: list[tuple[str, str, str]], metric: str = LOSS) -> str:
    lines = ["| comparison | a | b | params a / b | a | b | b − a, paired by seed | verdict |", "|---" * 8 + "|"]
    for what, a, b in pairs:
        result = compare(frame, a, b, metric)
        pa, pb = (int(frame[frame.label == x].params.iloc[0]) for x in (a, b))
        lines.append(f"| {what} | `{a}` | `{b}` | {pa:,} / {pb:,} | {result.a_mean:.4g} | {result.b_mean:.4g} | "
                     f"{result.diff.text(3)} | {result.verdict(a.split('@')[0], b.split('@')[0])} |")  # fmt: skip
    return "\n".join(lines)


def size_table(frame: pd.DataFrame) -> str:
    sizes = sorted(frame.train_size.unique())
    lines = ["| model | width | params | " + " | ".join(f"n = {int(n)}" for n in sizes) + " |",
             "|---" * (len(sizes) + 3) + "|"]  # fmt: skip
    for (model, width), rows in sorted(frame.groupby(["model", "width"]), key=lambda kv: (hue_order(
            frame.model).index(kv[0][0]), kv[0][1])):  # fmt: skip
        cells = [_cell(rows[rows.train_size == n][LOSS]) for n in sizes]
        lines.append(f"| `{model}` | {int(width)} | {int(rows.params.iloc[0]):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_table(frame: pd.DataFrame) -> str:
    """Test minus train loss at the best checkpoint, and how far the last evaluation's test loss rose above it."""
    sizes = sorted(frame.train_size.unique())
    lines = ["| model | width | " + " | ".join(f"n = {int(n)}: gap / rise" for n in sizes) + " |",
             "|---" * (len(sizes) + 2) + "|"]  # fmt: skip
    for (model, width), rows in sorted(frame.groupby(["model", "width"]), key=lambda kv: (hue_order(
            frame.model).index(kv[0][0]), kv[0][1])):  # fmt: skip
        cells = []
        for n in sizes:
            r = rows[rows.train_size == n]
            cells.append(f"{(r[LOSS] - r.best_train_loss).mean():.3g} / {(r.test_loss - r[LOSS]).mean():.3g}")
        lines.append(f"| `{model}` | {int(width)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _convergence_lines(frame: pd.DataFrame, out: Path, config: dict) -> list[str]:
    """The converged check's table: each retrained comparison at the grid's cap and to a plateau, and each
    configuration's loss both ways (the check's seeds are fresh, so the two are not paired)."""
    cfg = config.get("config", {})
    found = convergence_results(out, frame)
    sources = ", ".join(f"`{s}`" for s in cfg.get("sources", []))
    lines = [
        f"Each comparison behind an accuracy recommendation of the studies {sources}"
        f" (their best configuration per depth against the runner-up and its affine twin; the equivariant model "
        f"at the {' and '.join(cfg.get('ends', []))} width of the largest training set against its equal-parameter "
        f"plain and augmented partners), retrained with the same settings and chosen learning rate at "
        f"{cfg.get('cap_factor', '?')}× the study's step cap, with patience {cfg.get('patience', '?')} evaluations "
        f"before the decay, on fresh seeds ({cfg.get('first_seed', '?')} on: new data and initialisations). Each "
        "difference is paired by seed within its own runs; a verdict *holds* when it has the same sign (or is within "
        "noise both times).",
        "",
        "## Verdicts", "",
        "| study | comparison | a | b | b − a at the study's cap | b − a trained to plateau | verdict |",
        "|---" * 7 + "|",
    ]  # fmt: skip
    for c in found:
        lines.append(f"| `{c.source}` | {c.what} | `{c.a}` | `{c.b}` | {c.grid.diff.text(3)} "
                     f"({c.grid.verdict('a', 'b')}) | {c.converged.diff.text(3)} ({c.converged.verdict('a', 'b')}) | "
                     f"{c.verdict} |")  # fmt: skip
    lines += ["", "## Configurations", "",
              "| configuration | lr | step cap | best / stop step (median), plateaus | test loss at the study's cap | "
              "trained to plateau (fresh seeds) | change of the mean |", "|---" * 7 + "|"]  # fmt: skip
    grids = {}
    for label, rows in frame.groupby("label", sort=False):
        source, original = label.split(":", 1)
        if source not in grids:
            path = Path(out).parent / source
            grids[source] = runs(load(path)) if (path / "metrics.csv").exists() else None
        grid = grids[source]
        before = grid[grid.label == original][LOSS] if grid is not None else pd.Series(dtype=float)
        change = 100 * (rows[LOSS].mean() / before.mean() - 1) if len(before) else float("nan")
        lines.append(f"| `{label}` | {rows.lr.iloc[0]:g} | {int(rows.steps.iloc[0])} | {_steps_cell(rows)} | "
                     f"{_cell(before)} | {_cell(rows[LOSS])} | {change:+.0f} % |")  # fmt: skip
    return lines + ["", "![verdicts](verdicts.png)", "", "![validation curves](curves.png)", ""]


def write(study: str, data: pd.DataFrame, out: Path, config: dict) -> Path:
    frame = runs(data)
    hue = HUE.get(study, "label")
    fresh = bool(config.get("fresh_process_per_run"))
    cfg = config.get("config", {})
    header = [
        f"# {study.replace('_', ' ')}",
        "",
        f"Generated from `metrics.csv` by `python -m ablations.report {display_path(out)}`; the data by "
        f"`{config.get('command', 'python -m ablations.<study>')}` (profile `{config.get('profile', '?')}`).",
        f"Written at {commit_text(config)} (`ablations/provenance.py`), {config.get('date', '?')}; "
        f"torch {config.get('torch', '?')}, "
        f"{config.get('cpu', '?')}, {config.get('threads_per_job', '?')} torch thread(s) per run, "
        f"{config.get('workers', '?')} runs in parallel ({config.get('backend', '?')} backend). "
        f"{frame.seed.nunique()} seeds; cells are {INTERVAL_TEXT}.",
        "",
        f"Protocol: learning rate per configuration from {{{', '.join(f'{x:g}' for x in cfg.get('lr_grid', []))}}} "
        f"by the mean best validation loss of the first {cfg.get('tune_seeds', '?')} seed(s) (`lr_selection.csv`; "
        f"a single rate means no tuning; with three or more, up to {LR_EXTENSIONS} rates past the grid are tried "
        'while the best is at an edge of those tried; "(edge)" marks a choice still at an edge, whose optimum may '
        "lie beyond); at most "
        + (
            f"{cfg['steps']} steps while tuning and {cfg['final_steps']} in the final runs"
            if cfg.get("final_steps")
            else f"{cfg.get('steps', '?')} steps"
        )
        + f", evaluation every {cfg.get('eval_every', '?')}, "
        + (
            f"a constant rate until {cfg.get('patience', '?')} evaluations bring no improvement (a plateau), then a "
            "cosine decay to a tenth of it over a quarter more steps, then stop (a run without a plateau decays "
            "over the last fifth of the cap)"
            if has_plateau_record(frame)
            else f"early stop after {cfg.get('patience', '?')} evaluations without improvement"
        )
        + "; test loss of the best-validation checkpoint."
        + (
            ""
            if fresh
            else " Memory: parameter + buffer bytes only; the resident-memory growth of a run is not "
            "reported because this study's runs share worker processes (see `MEMORY_IN_FRESH_PROCESS`)."
        ),
        "",
    ]
    if study == CONVERGENCE:
        path = Path(out) / "table.md"
        path.write_text("\n".join([*header[:5], *_convergence_lines(frame, Path(out), config)]))
        return path
    body = []
    if "train_size" in frame and frame.train_size.nunique() > 1 and "model" in frame:
        body += ["## Test loss (best-validation checkpoint) by training-set size", "", size_table(frame), "",
                 "![loss against parameters](loss_vs_params.png)", "", "![loss against data](loss_vs_data.png)", "",
                 "## Generalisation gap", "", "Test − train loss at the best checkpoint / rise of the last "
                 "evaluation's test loss above the best checkpoint's (mean over seeds); a large rise means the run "
                 "overfits and early stopping matters.", "", gap_table(frame), ""]  # fmt: skip
    pairs = comparisons(study, frame)
    if pairs:
        body += ["## Paired comparisons (test loss at the best validation step)", "", paired_table(frame, pairs), ""]
    if "model" in frame and (missing := unpaired(frame)):
        body += [
            "Not compared (no run of that model within 10 % of the parameter count): equivariant widths "
            + "; ".join(f"{', '.join(map(str, w))} against `{m}`" for m, w in missing.items())
            + ".",
            "",
        ]
    if study in (*BASIS_STUDIES, "weight_cache"):
        metric = "time_per_step_ms" if study in BASIS_STUDIES else "infer_ms_per_batch"
        body += [f"Same pairs, `{metric}`:", "", paired_table(frame, pairs, metric), ""]
    body += ["## All configurations", "", main_table(frame, hue, fresh, lr_at_edge(read_selection(out))), ""]
    if "cache_diff_during_training" in frame:
        worst = frame.groupby("label").cache_diff_during_training.max()
        body += ["Largest |cached − uncached| output difference at any evaluation during training: "
                 + ", ".join(f"`{k}` {v:.1e}" for k, v in worst.items()) + ".", ""]  # fmt: skip
    if "model" not in frame:
        body += ["![test loss](results.png)", ""]
    body += ["![validation curves](curves.png)", "", "![costs](costs.png)", ""]
    path = Path(out) / "table.md"
    path.write_text("\n".join(header + body))
    return path
