"""A study's saved data as the figures, tables and guide read it: one row per run, fixed colours, captions and the
paired comparisons each study makes.

Shared by :mod:`ablations.plot`, :mod:`ablations.tables` and :mod:`ablations.guide` (plot and tables never import
each other). Nothing here trains or measures.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import seaborn as sns

from .frames import finals
from .stats import MIN_SEEDS, Paired, bootstrap_ci, paired

#: Columns of the long-form CSV that are not job parameters.
LONG_COLUMNS = ("run_id", "label", "seed", "step", "wall_time", "metric", "value")
#: The accuracy every table and figure reports: test loss at the best-validation checkpoint.
LOSS = "best_test_loss"

_COLOURS = sns.color_palette("tab10") + sns.color_palette("tab20")  # 10-29: tab20's dark/light pairs
#: label -> colour, for every configuration the studies use; the order is the hue order.
PALETTE = dict(
    zip(
        ["isotypic_expansion", "memory_heavy", "orbit_gather", "auto", "cached", "uncached", "rmsnorm/pre",
         "rmsnorm/post", "layernorm/pre", "layernorm/post", "batchnorm/pre", "batchnorm/post", "equivariant", "plain",
         "plain/augmented"],
        [_COLOURS[i] for i in (0, 1, 4, 7, 0, 3, 10, 11, 12, 13, 14, 15, 0, 1, 2)],
        strict=True,
    )
)  # fmt: skip
#: Study -> the job parameter that picks a configuration's colour (default: the label).
HUE = {"equivariant_vs_plain": "model", "equivariant_vs_plain_sequence": "model", "normalization": "variant",
       "ant_forecast": "model", "ant_dynamics": "model", "ant_norm": "variant"}  # fmt: skip
#: Studies over (norm, placement, affine, depth), labelled ``norm/placement/affine/L<depth>``.
NORM_STUDIES = ("normalization", "ant_norm")
#: Studies over ``basis_expansion_scheme``, labelled by the strategy; the reference strategy comes first.
BASIS_STUDIES = ("basis_expansion", "ant_basis")
BASIS_REFERENCE = "isotypic_expansion"
_RING_REGRESSION = "ring regression (known D8-equivariant map of 2 channels on 8 sites + noise)"
_ANT = "MuJoCo Ant-v5 in the torso frame (random smoothed actions, 50 ms steps)"
_ANT_FORECAST = (f"{_ANT}: 4 past [state, action] tokens -> the next 8 states", "flow-matching velocity MSE (scaled)")
#: Study -> (task, loss, group) for the captions (default: the ring-oscillator sequence task); a study whose
#: ``config.json`` names a ``group`` shows that one.
TASKS = {
    "equivariant_vs_plain": (_RING_REGRESSION, "MSE", "D8"),
    "ant_forecast": (*_ANT_FORECAST, "D4"),
    "ant_norm": (*_ANT_FORECAST, "D4"),
    "ant_basis": (*_ANT_FORECAST, "D4"),
    "ant_dynamics": (f"{_ANT}: [state, action] -> scaled next-state change", "MSE (scaled units)", "D4"),
}
SEQUENCE_TASK = ("ring oscillators (nonlinear pendulum chain on 8 sites, 4 past states -> 8 future states)",
                 "flow-matching velocity MSE", "D8")  # fmt: skip


def hue_order(values) -> list[str]:
    present = set(values)
    unknown = sorted(present - set(PALETTE))
    if unknown:
        raise ValueError(f"no fixed colour for {unknown}: add them to ablations.summary.PALETTE")
    return [label for label in PALETTE if label in present]


def load(out: Path) -> pd.DataFrame:
    path = Path(out) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the study first (python -m ablations.<study>)")
    return pd.read_csv(path)


def load_config(out: Path) -> dict:
    """A study's ``config.json``, with ``trained_at`` (commit -> runs of ``metrics.csv``) from ``provenance.json``."""
    path, record = Path(out) / "config.json", Path(out) / "provenance.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    if record.exists():
        config["trained_at"] = json.loads(record.read_text()).get("metrics.csv", {}).get("trained_at", {})
    return config


def commit_text(config: dict) -> str:
    """The commit that wrote a study's data and, when its runs were trained at earlier commits with the same
    training files (:mod:`ablations.provenance`), those commits and how many runs each trained."""
    commit = str(config.get("git_commit", "?"))
    trained = {c: n for c, n in config.get("trained_at", {}).items() if c != commit}
    if not trained:
        return f"commit `{commit[:12]}`"
    runs = ", ".join(f"`{c[:12]}` ({n} runs)" for c, n in sorted(trained.items(), key=lambda kv: -kv[1]))
    mine = config["trained_at"].get(commit, 0)
    return (
        f"commit `{commit[:12]}`; runs trained at {runs}"
        + (f" and `{commit[:12]}` ({mine} runs)" if mine else "")
        + ", whose training files are identical to this commit's"
    )


def runs(data: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its parameters and every final metric as columns, plus ``late_train_loss_sd`` (spread of
    the last quarter of its logged training losses), ``late_val_gain`` (see :func:`late_gain`) and
    ``cache_diff_during_training`` where logged."""
    params = [c for c in data.columns if c not in LONG_COLUMNS]
    keys = ["run_id", "label", "seed", *params]
    wide = finals(data).pivot_table(index="run_id", columns="metric", values="value", aggfunc="last")
    info = data.drop_duplicates("run_id").set_index("run_id")[keys[1:]]
    train = data[data.metric == "train_loss"]
    late = train[train.step >= 0.75 * train.groupby("run_id").step.transform("max")]
    wide["late_train_loss_sd"] = late.groupby("run_id").value.std()
    if "val_loss" in set(data.metric):
        wide["late_val_gain"] = late_gain(data)
    if "cache_output_max_abs_diff" in set(data.metric):
        diffs = data[data.metric == "cache_output_max_abs_diff"]
        wide["cache_diff_during_training"] = diffs.groupby("run_id").value.max()
    return info.join(wide).reset_index()


#: Fraction of the step budget at whose end :func:`late_gain` measures the progress still being made.
LATE = 0.25


def late_gain(data: pd.DataFrame) -> pd.Series:
    """Per run, how much its best validation loss still fell over the last :data:`LATE` of its step budget, relative
    to the final best: ``(best up to 75 % of steps - best) / best``. Zero for a run that stopped before that point;
    NaN for one with no validation loss logged by then.

    This is the plateau test: a run that reached its best loss at the last step only by a hair (cosine decay makes
    that common) gains almost nothing here, while one still falling fast does, whichever step its best landed on.
    The budget is the ``steps`` column where logged, else the run's last logged step. A run of the plateau schedule
    (it logs ``anneal_step``) is measured over the constant-rate phase only, up to the step its decay began: the
    decay itself always lowers the loss, plateau or not.
    """
    val = data[data.metric == "val_loss"].sort_values(["run_id", "step"])
    last = val.groupby("run_id").step.transform("max")
    budget = pd.to_numeric(val["steps"], errors="coerce").fillna(last) if "steps" in val else last
    anneal = data[data.metric == "anneal_step"].groupby("run_id").value.last()
    if len(anneal):
        decay = val.run_id.map(anneal)
        budget = decay.fillna(budget)
        val, budget = val[decay.isna() | (val.step <= decay)], budget[decay.isna() | (val.step <= decay)]
    best = val.groupby("run_id").value.cummin()
    final = best.groupby(val.run_id).last()
    before = best[val.step <= (1 - LATE) * budget].groupby(val.run_id).last()
    return (before.reindex(final.index) - final) / final.abs()


def per_seed(frame: pd.DataFrame, label: str, metric: str = LOSS) -> pd.Series:
    """``metric`` of configuration ``label``, indexed by seed."""
    rows = frame[frame.label == label]
    return rows.set_index("seed")[metric]


def interval(frame: pd.DataFrame, label: str, metric: str = LOSS):
    return bootstrap_ci(per_seed(frame, label, metric))


def compare(frame: pd.DataFrame, a: str, b: str, metric: str = LOSS):
    """``b - a`` paired by seed (see :func:`ablations.stats.paired`)."""
    return paired(per_seed(frame, a, metric), per_seed(frame, b, metric))


#: Largest ratio of parameter counts that still counts as "equal parameters" (10 %).
PARAMS_TOLERANCE = 1.10


def matched(frame: pd.DataFrame, model: str, params: float, train_size) -> str | None:
    """Label of ``model`` at ``train_size`` whose parameter count is closest to ``params`` (on a log scale), or
    ``None`` when there is none within :data:`PARAMS_TOLERANCE` of it."""
    rows = frame[(frame.model == model) & (frame.train_size == train_size)]
    if rows.empty:
        return None
    distance = rows.groupby("label").params.first().apply(lambda count: abs(math.log(count / params)))
    return distance.idxmin() if distance.min() <= math.log(PARAMS_TOLERANCE) else None


def equal_params_pairs(frame: pd.DataFrame) -> list[dict]:
    """For every training-set size and equivariant width, the plain and augmented runs at the closest parameter
    count within 10 % (:func:`matched`): one dict per (size, width, other model) with the two labels and their
    parameter counts. A width without a partner of a model within 10 % has no pair with that model."""
    pairs = []
    eq = frame[frame.model == "equivariant"]
    for (n, label), rows in eq.groupby(["train_size", "label"]):
        params = rows.params.iloc[0]
        for other in ("plain", "plain/augmented"):
            match = matched(frame, other, params, n)
            if match is not None:
                pairs.append({"train_size": n, "equivariant": label, "other_model": other, "other": match,
                              "eq_params": params, "other_params": frame[frame.label == match].params.iloc[0],
                              "width": int(rows.width.iloc[0])})  # fmt: skip
    return pairs


def unpaired(frame: pd.DataFrame) -> dict[str, list[int]]:
    """Per plain model, the equivariant widths with no run of it within 10 % of their parameter count."""
    pairs = equal_params_pairs(frame)
    widths = sorted({int(w) for w in frame[frame.model == "equivariant"].width})
    missing = {}
    for other in ("plain", "plain/augmented"):
        if (frame.model == other).any():
            have = {p["width"] for p in pairs if p["other_model"] == other}
            missing[other] = [w for w in widths if w not in have]
    return {model: widths for model, widths in missing.items() if widths}


# ----------------------------------------------------------------------------------------------- captions
def caption(study: str, frame: pd.DataFrame, config: dict, extra: str = "") -> str:
    """Task, loss, model sizes, steps, group, hardware and commit of a study's figure, from its saved data."""
    task, loss, group = TASKS.get(study, SEQUENCE_TASK)
    params = frame.params.dropna()
    sizes = f"{int(params.min()):,}" + (f"-{int(params.max()):,}" if params.max() != params.min() else "")
    cfg = config.get("config", {})
    group = cfg.get("group", group)
    stopped = frame.stopped_step.median() if "stopped_step" in frame else float("nan")
    grid = [float(x) for x in cfg.get("lr_grid", [])]
    lr = ", ".join(f"{x:g}" for x in grid) or "?"
    beyond = sorted(x for x in frame.lr.unique() if grid and x not in grid) if "lr" in frame else []
    if beyond:  # tuning tried rates past an edge of the grid (``sweep.tuned_sweep``) and chose some of them
        lr += "} and past it {" + ", ".join(f"{x:g}" for x in beyond)
    text = (
        f"Task: {task}; group {group}; loss: {loss}, test loss at the best-validation checkpoint. Models: {sizes} "
        f"trainable parameters. Training: AdamW, at most {cfg.get('steps', '?')} steps (median stop "
        f"{stopped:.0f}), "
        + ("until validation plateaus, then a short decay" if "plateaued" in frame else "early stopping")
        + f" with patience {cfg.get('patience', '?')} evaluations, lr per "
        f"configuration from {{{lr}}}; {frame.seed.nunique()} seeds, profile {config.get('profile', '?')}. "
        f"Hardware: {config.get('cpu', '?')}, {config.get('threads_per_job', '?')} torch thread(s) per run, "
        f"{config.get('workers', '?')} runs in parallel; {commit_text(config)}. {extra}"
    )
    return "\n".join(textwrap.wrap(text, 190))


# ----------------------------------------------------------------------------------------------- comparisons
def comparisons(study: str, frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The paired comparisons a study's table reports: ``(what, a, b)``, read as "b against a"."""
    labels = set(frame.label)
    if study in BASIS_STUDIES:
        others = sorted(labels - {BASIS_REFERENCE}) if BASIS_REFERENCE in labels else []
        return [("strategy", BASIS_REFERENCE, other) for other in others]
    if study == "weight_cache":
        return [("cache mode", "cached", "uncached")] if {"cached", "uncached"} <= labels else []
    if study in NORM_STUDIES:
        pairs = []
        for label in sorted(labels):
            norm, placement, affine, depth = label.split("/")
            if affine == "isotypic" and (twin := f"{norm}/{placement}/diagonal/{depth}") in labels:
                pairs.append(("norm affine", label, twin))
            if placement == "pre" and (twin := f"{norm}/post/{affine}/{depth}") in labels:
                pairs.append(("placement", label, twin))
        for depth, rows in frame.groupby("num_layers"):
            best = rows.groupby("label")[LOSS].mean().idxmin()
            pairs += [(f"vs best at depth {depth}", best, other) for other in sorted(set(rows.label) - {best})]
        return pairs
    if "model" in frame:
        return [(f"n = {int(p['train_size'])}, equal params", p["equivariant"], p["other"])
                for p in equal_params_pairs(frame)]  # fmt: skip
    return []


# ----------------------------------------------------------------------------------------------- the converged check
#: The study that retrains, to a plateau, the configurations behind each accuracy recommendation (``tier 2``).
CONVERGENCE = "convergence"
#: Studies whose recommendations the converged check retests, in the order it runs them.
CONVERGENCE_SOURCES = ("normalization", "ant_norm", "equivariant_vs_plain_sequence", "ant_forecast")


def convergence_comparisons(source: str, frame: pd.DataFrame, ends: tuple = ("smallest", "largest")) -> list[tuple]:
    """The comparisons ``(what, a, b)`` behind a study's accuracy recommendations, read as "b against a", that the
    converged check retrains (labels of ``source``'s configurations).

    A norm study: per depth, the best configuration by mean test loss against the runner-up and against its own
    affine twin (what the norm and affine advice rest on). A model study: at the largest training set, the
    equivariant model at the ``ends`` of its widths (``"smallest"``, ``"largest"``) against each plain model at
    equal parameters (:func:`equal_params_pairs`), and the augmented plain model against the plain one there.
    """
    out = []
    if source in NORM_STUDIES:
        for depth, rows in frame.groupby("num_layers"):
            means = rows.groupby("label")[LOSS].mean().sort_values()
            best = means.index[0]
            if len(means) > 1:
                out.append((f"best vs runner-up at depth {int(depth)}", best, means.index[1]))
            norm, placement, affine, rest = best.split("/")
            twin = f"{norm}/{placement}/{'diagonal' if affine == 'isotypic' else 'isotypic'}/{rest}"
            if twin in means.index:
                out.append((f"affine of the best at depth {int(depth)}", best, twin))
        return out
    pairs = [p for p in equal_params_pairs(frame) if p["train_size"] == frame.train_size.max()]
    if not pairs:
        return out
    ordered = sorted({p["eq_params"] for p in pairs})
    chosen = {ordered[0] if end == "smallest" else ordered[-1] for end in ends}
    for params in sorted(chosen):
        mine = {p["other_model"]: p for p in pairs if p["eq_params"] == params}
        where = f"n = {int(frame.train_size.max())}, {int(params):,} params"
        out += [(f"{where}: {model} vs equivariant", p["equivariant"], p["other"]) for model, p in sorted(mine.items())]
        if {"plain", "plain/augmented"} <= set(mine):
            out.append((f"{where}: plain/augmented vs plain", mine["plain"]["other"], mine["plain/augmented"]["other"]))
    return out


def convergence_label(source: str, label: str) -> str:
    """The converged check's label of configuration ``label`` of ``source``."""
    return f"{source}:{label}"


def convergence_verdict(grid: Paired, converged: Paired) -> str:
    """Whether a comparison's verdict at the grid's step cap survives training to a plateau, in words."""
    if converged.diff.n < MIN_SEEDS or grid.diff.n < MIN_SEEDS:
        return "too few seeds"
    before = 0 if grid.within_noise else math.copysign(1, grid.diff.mean)
    after = 0 if converged.within_noise else math.copysign(1, converged.diff.mean)
    if before == after:
        return "holds" if before else "holds (within noise both times)"
    if before and after:
        return "flips"
    return "within noise when converged" if before else "emerges when converged (within noise at the cap)"


@dataclass(frozen=True)
class Converged:
    """One comparison of a source study, at the grid's step cap and retrained to a plateau (``b - a`` both)."""

    source: str
    what: str
    a: str
    b: str
    grid: Paired
    converged: Paired

    @property
    def verdict(self) -> str:
        return convergence_verdict(self.grid, self.converged)


def convergence_results(out: Path, converged: pd.DataFrame | None = None) -> list[Converged]:
    """Every comparison the converged check at ``out`` retrained, against the same comparison in the source
    studies' data beside it (``out/../<source>``); a comparison with a side missing from either is left out."""
    out = Path(out)
    frame = runs(load(out)) if converged is None else converged
    ends = tuple(load_config(out).get("config", {}).get("ends", ("smallest", "largest")))
    found = []
    for source in [s for s in CONVERGENCE_SOURCES if s in set(frame.source)]:
        if not (out.parent / source / "metrics.csv").exists():
            continue
        grid = runs(load(out.parent / source))
        for what, a, b in convergence_comparisons(source, grid, ends):
            ca, cb = convergence_label(source, a), convergence_label(source, b)
            if {ca, cb} <= set(frame.label):
                found.append(Converged(source, what, a, b, compare(grid, a, b), compare(frame, ca, cb)))
    return found
