"""Write ``results/README.md``: which strategy to pick when, every recommendation computed from saved data.

    python -m ablations.guide [--results results]

Opens with one screen, "Decisions at a glance": per axis the recommendation, the condition under which it flips,
the interval it rests on and the table or figure behind it. Reads the studies' ``metrics.csv`` (intervals and
paired comparisons over seeds, :mod:`ablations.stats`) and the benchmark scripts' ``raw.csv`` files (where the
answer flips with size); a row or section whose data is missing says so instead of recommending anything.
Nothing here measures.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import guide_maps
from .common import RESULTS, STUDY_MODULES
from .frames import display_path
from .stats import MIN_SEEDS, bootstrap_ci
from .summary import CONVERGENCE, LOSS, compare, convergence_results, equal_params_pairs, load_config, runs
from .tables import budget_criterion, budget_limited, has_plateau_record, late_gains, lr_at_edge, read_selection


@dataclass
class Decision:
    """One row of the first screen."""

    axis: str
    recommendation: str
    flips: str
    interval: str
    rests_on: str

    def row(self) -> str:
        return f"| {self.axis} | {self.recommendation} | {self.flips} | {self.interval} | {self.rests_on} |"


def _runs(results: Path, study: str) -> pd.DataFrame | None:
    """The per-run frame of a study (a copy: callers may edit it), or None before it has run. Several rows of the
    guide rest on one study, so each file is read once per version (path, modification time and size)."""
    path = results / study / "metrics.csv"
    if not path.exists():
        return None
    stat = path.stat()
    return _read_runs(path.resolve(), stat.st_mtime_ns, stat.st_size).copy()


@functools.lru_cache(maxsize=16)
def _read_runs(path: Path, mtime_ns: int, size: int) -> pd.DataFrame:
    return runs(pd.read_csv(path))


def _raw(results: Path, folder: str) -> pd.DataFrame | None:
    path = results / folder / "raw.csv"
    return pd.read_csv(path) if path.exists() else None


def _missing(axis: str, study: str) -> Decision:
    return Decision(axis, "no data yet", "", "", f"`python -m ablations.run_all` writes `{study}/metrics.csv`")


def _link(study: str, name: str = "table.md") -> str:
    return f"[{study}/{name}]({study}/{name})"


def _ratio_ci(a: pd.Series, b: pd.Series):
    """Per-seed ratio ``b / a`` (index = seed) with its bootstrap interval."""
    seeds = a.index.intersection(b.index)
    return bootstrap_ci(b[seeds] / a[seeds])


def _seedwise(frame: pd.DataFrame, label: str, metric: str) -> pd.Series:
    return frame[frame.label == label].set_index("seed")[metric]


#: linear_family's implementation keys before the strategies were named after the registry.
_LINEAR_KEYS = {"iso_cached": "isotypic_expansion/cached", "iso_uncached": "isotypic_expansion/uncached",
                "mh_cached": "memory_heavy/cached"}  # fmt: skip


def _cells_where(raw: pd.DataFrame | None, candidate: str, reference: str, metric: str,
                 below: float = 1.0) -> list[tuple]:  # fmt: skip
    """Benchmark cells ``(group, D, B, ratio)`` where ``candidate`` runs under ``below`` x ``reference``."""
    if raw is None:
        return []
    raw = raw.assign(implementation=raw.implementation.replace(_LINEAR_KEYS))
    rows = raw[raw.metric == metric].pivot_table(index=["group", "D", "B"], columns="implementation", values="value")
    if candidate not in rows or reference not in rows:
        return []
    ratio = (rows[candidate] / rows[reference]).dropna()
    return [(*key, r) for key, r in ratio.items() if r < below]


def _cells_text(cells: list[tuple], limit: int = 4) -> str:
    shown = sorted(cells, key=lambda c: c[3])[:limit]
    more = f" and {len(cells) - limit} more" if len(cells) > limit else ""
    return "; ".join(f"{g} D={d} B={b} ({r:.2f}×)" for g, d, b, r in shown) + more


# ----------------------------------------------------------------------------------------------- decisions
def basis_decision(results: Path) -> Decision:
    axis = "basis expansion (`basis_expansion_scheme`)"
    frame = _runs(results, "basis_expansion")
    maps = guide_maps.row(results, "basis_expansion")
    if frame is None and maps is None:
        return _missing(axis, "basis_expansion")
    iso, dense = "isotypic_expansion", "memory_heavy"
    regressor = ""
    if frame is not None:
        time = _ratio_ci(_seedwise(frame, iso, "time_per_step_ms"), _seedwise(frame, dense, "time_per_step_ms"))
        width = int(frame.width.iloc[0]) if "width" in frame else "?"
        regressor = (f"the strategies learn the same function (regressor loss difference "
                     f"{compare(frame, iso, dense).diff.text(2)}); train-step time `{dense}`/`{iso}` "
                     f"{time.text(3)}× in the regressor (width {width})")  # fmt: skip
    rests = f"{_link('basis_expansion')}; {guide_maps.source(results)}"
    if maps is not None:
        rec, flips, interval = maps
        return Decision(axis, rec, flips, "; ".join(filter(None, [interval, regressor])), rests)
    raw = _raw(results, "linear_family")
    if raw is not None and "auto/cached" in set(raw.implementation):
        # The default ``auto`` against every named strategy, cell by cell; a win needs a 5 % margin (noise).
        wins = {name: _cells_where(raw, f"{name}/cached", "auto/cached", "train_fwd_bwd", 0.95)
                for name in ("orbit_gather", iso, dense)}  # fmt: skip
        wins = {name: cells for name, cells in wins.items() if cells}
        flips = "; ".join(f"`{name}` trains faster than `auto` in {_cells_text(cells)}" for name, cells in wins.items())
        rec = "`auto` (default: `orbit_gather` for permutation representations up to D≈512, else `isotypic_expansion`)"
        return Decision(axis, rec, flips or "no measured eLinear cell where a named strategy trains ≥ 5 % faster "
                        "than `auto`", regressor, f"{rests}, {_link('linear_family')}")  # fmt: skip
    faster = iso if time.mean >= 1 else dense
    cells = _cells_where(raw, f"{dense}/cached", f"{iso}/cached", "train_fwd_bwd")
    flips = (f"`memory_heavy` trains faster in these eLinear cells: {_cells_text(cells)} (largest D where it "
             f"wins: {max(c[1] for c in cells)})" if cells else "no measured eLinear cell where `memory_heavy` trains "
             "faster")  # fmt: skip
    rec = f"`{faster}`"
    if cells:
        rec += f"; `memory_heavy` for training single layers at D ≤ {max(c[1] for c in cells)}"
    return Decision(axis, rec, flips, regressor, f"{rests}, {_link('linear_family')}")


def cache_decision(results: Path) -> Decision:
    axis = "weight cache (`weight_cache`)"
    frame = _runs(results, "weight_cache")
    maps = guide_maps.row(results, "weight_cache")
    if frame is None and maps is None:
        return _missing(axis, "weight_cache")
    study = ""
    if frame is not None:
        ratio = bootstrap_ci(frame.infer_ms_uncached_interleaved / frame.infer_ms_cached_interleaved)
        study = f"regressor no-grad forward `uncached`/`cached` {ratio.text(3)}× (over runs, interleaved)"
    rests = f"{_link('weight_cache')}; {guide_maps.source(results)}"
    if maps is not None:
        rec, flips, interval = maps
        return Decision(axis, rec + "; training never reads the cache", flips,
                        "; ".join(filter(None, [interval, study])), rests)  # fmt: skip
    choice = "cached" if ratio.mean >= 1 else "uncached"
    cells = _cells_where(_raw(results, "linear_family"), "isotypic_expansion/uncached", "isotypic_expansion/cached",
                         "eval_fwd")  # fmt: skip
    flips = (f"uncached inference is faster in these eLinear cells: {_cells_text(cells)}" if cells else
             "no measured eLinear cell where uncached inference is faster")  # fmt: skip
    rec = f"`{choice}` for inference; training never reads the cache"
    if cells:
        batches = ", ".join(sorted({str(c[2]) for c in cells}))
        rec += f"; `uncached` for inference at D ≥ {min(c[1] for c in cells)} with B = {batches}"
    return Decision(axis, rec, flips, study, f"{rests}, {_link('linear_family')}")


def layout_decision(results: Path) -> Decision:
    """Feature layout (``layout=``): from the decision maps only (no ablation trains it as an axis)."""
    axis = "feature layout (`layout`)"
    maps = guide_maps.row(results, "layout")
    if maps is None:
        return Decision(axis, "no data yet", "", "", "`python benchmarks/decision_maps.py` writes `decision_maps/`")
    rec, flips, interval = maps
    return Decision(axis, rec + "; the same DoFs give the same function in both", flips, interval,
                    guide_maps.source(results))  # fmt: skip


def _tuning_caveat(results: Path, study: str) -> str:
    """A warning for a recommendation resting on learning rates still at an edge of the rates tried, or on
    configurations still improving at their step budget (:func:`ablations.tables.budget_limited`), else ""."""
    parts = []
    selection = read_selection(results / study)
    if edge := lr_at_edge(selection):
        parts.append(f"the chosen learning rate is still at an edge of the rates tried in {len(edge)} of "
                     f"{selection.label.nunique()} configurations")  # fmt: skip
    frame = _runs(results, study)
    if frame is not None and (limited := budget_limited(frame)):
        fall = 100 * late_gains(frame).reindex(limited).max()
        parts.append(f"{len(limited)} of {frame.label.nunique()} configurations still improving at the step budget "
                     f"(best validation loss down by up to {fall:.0f} % in its last quarter)")  # fmt: skip
    return " — provisional: " + "; ".join(parts) if parts else ""


def converged_note(results: Path, source: str, kind: str) -> str:
    """What the converged check says of ``source``'s comparisons named ``kind ...`` (``"best vs runner-up"``,
    ``"affine of the best"``) or ``...: kind`` (``"plain vs equivariant"``, ``"plain/augmented vs plain"``): whether
    each verdict holds when trained to a plateau; "" before the check has run."""
    frame = _runs(results, CONVERGENCE)
    if frame is None:
        return ""
    found = [c for c in convergence_results(results / CONVERGENCE, frame) if c.source == source and (
        c.what.startswith(kind) or c.what.endswith(f": {kind}"))]  # fmt: skip
    if not found:
        return ""
    return (f"; trained to a plateau ({_link(CONVERGENCE)}): "
            + "; ".join(f"{c.what}: {c.verdict} (b − a {c.converged.diff.text(2)})" for c in found))  # fmt: skip


def _norm_best(frame: pd.DataFrame) -> dict:
    """Per depth: the best configuration, the runner-up and their paired comparison."""
    out = {}
    for depth, rows in frame.groupby("num_layers"):
        means = rows.groupby("label")[LOSS].mean().sort_values()
        best, second = means.index[0], means.index[1] if len(means) > 1 else None
        out[int(depth)] = (best, second, compare(rows, best, second) if second else None)
    return out


def norm_decision(results: Path, study: str = "normalization",
                  axis: str = "normalisation (`norm_module`, `norm_first`)") -> Decision:  # fmt: skip
    frame = _runs(results, study)
    if frame is None:
        return _missing(axis, study)
    best = _norm_best(frame)
    recs, intervals = [], []
    for depth, (label, second, result) in best.items():
        noise = result is None or result.within_noise
        recs.append(f"depth {depth}: `{label.rsplit('/', 1)[0]}`" + (" (tied within noise)" if noise else ""))
        if result is not None:
            intervals.append(f"depth {depth}: runner-up `{second.rsplit('/', 1)[0]}` − best {result.diff.text(2)}")
    variants = {label.split("/")[0] + "/" + label.split("/")[1] for label, _, _ in best.values()}
    flips = ("the best norm/placement changes with depth" if len(variants) > 1 else
             "same norm/placement at every depth" if len(best) > 1 else
             f"one depth measured ({', '.join(map(str, best))})")  # fmt: skip
    flips += converged_note(results, study, "best vs runner-up")
    return Decision(axis, "; ".join(recs) + _tuning_caveat(results, study), flips, "; ".join(intervals),
                    f"{_link(study)}, {_link(study, 'results.png')}")  # fmt: skip


def affine_comparisons(frame: pd.DataFrame) -> list[tuple[str, object]]:
    """(configuration without the affine, diagonal − isotypic paired by seed) for every pair the study ran."""
    out = []
    for label in sorted(frame.label.unique()):
        norm, placement, affine, depth = label.split("/")
        twin = f"{norm}/{placement}/diagonal/{depth}"
        if affine == "isotypic" and twin in set(frame.label):
            out.append((f"{norm}/{placement}/{depth}", compare(frame, label, twin)))
    return out


def _affine_time(frame: pd.DataFrame) -> str:
    """Train-step time ``diagonal`` / ``isotypic`` over every (configuration, seed) pair of the study."""
    ratios = []
    for label in sorted(frame.label.unique()):
        if label.split("/")[2] == "isotypic" and (twin := label.replace("/isotypic/", "/diagonal/")) in set(
            frame.label
        ):
            iso, diag = _seedwise(frame, label, "time_per_step_ms"), _seedwise(frame, twin, "time_per_step_ms")
            ratios += list((diag / iso).dropna())
    return f"; train-step time diagonal/isotypic {bootstrap_ci(ratios).text(3)}× (pairs × seeds)" if ratios else ""


def affine_decision(results: Path, study: str = "normalization", axis: str = "norm affine (`norm_affine`)") -> Decision:
    frame = _runs(results, study)
    if frame is None or "norm_affine" not in frame or frame.norm_affine.nunique() < 2:
        return _missing(axis, study)
    pairs = affine_comparisons(frame)
    iso_better = [name for name, r in pairs if not r.within_noise and r.diff.mean > 0]
    diag_better = [name for name, r in pairs if not r.within_noise and r.diff.mean < 0]
    speed = _affine_time(frame)
    layers = _raw(results, "layer_family")
    if layers is not None:
        timed = layers[layers.metric.isin(["train", "eval"]) & (layers.baseline > 0)]
        r = (timed.value / timed.baseline).groupby(timed.implementation).max()
        keys = [k for k in r.index if _diagonal_twin(k) in r.index and k.startswith("eCond")]
        if keys:
            iso, diag = r[keys[0]], r[_diagonal_twin(keys[0])]
            speed += f"; layer_family: regressor vs torch ≤ {iso:.2f}× (isotypic) → ≤ {diag:.2f}×"
    rec = "`diagonal` (faster, no accuracy lost beyond noise)" if not iso_better else (
        "`diagonal` for speed; `isotypic` where accuracy matters: " + ", ".join(iso_better))  # fmt: skip
    flips = (f"`isotypic` more accurate beyond noise in {len(iso_better)} of {len(pairs)} configurations; "
             f"`diagonal` in {len(diag_better)}")  # fmt: skip
    lo = min(r.diff.mean for _, r in pairs)
    hi = max(r.diff.mean for _, r in pairs)
    rec += _tuning_caveat(results, study)
    flips += converged_note(results, study, "affine of the best")
    return Decision(axis, rec, flips, f"test loss diagonal − isotypic, paired: means {lo:.2g} … {hi:.2g}{speed}",
                    f"{_link(study)}, {_link('layer_family')}")  # fmt: skip


def _equivariance_verdicts(frame: pd.DataFrame, other: str) -> dict[int, list]:
    """Per training-set size: the paired results of ``other`` − equivariant at equal parameters (all widths)."""
    out: dict[int, list] = {}
    for pair in equal_params_pairs(frame):
        if pair["other_model"] == other:
            result = compare(frame, pair["equivariant"], pair["other"])
            out.setdefault(int(pair["train_size"]), []).append((pair, result))
    return out


def _range(verdicts: list) -> str:
    """The smallest and the largest paired difference of ``verdicts`` (``(pair, result)``), with their intervals
    and parameter counts: the whole list does not fit the one-screen table (the study's table has every pair)."""

    def one(item) -> str:
        pair, result = item
        return f"{result.diff.text(2)} ({int(pair['eq_params']):,} vs {int(pair['other_params']):,} params)"

    ordered = sorted(verdicts, key=lambda item: item[1].diff.mean)
    if len(ordered) == 1:
        return one(ordered[0])
    return f"{one(ordered[0])} to {one(ordered[-1])} over {len(ordered)} pairs"


def equivariance_decision(results: Path, study: str, axis: str) -> Decision:
    frame = _runs(results, study)
    if frame is None:
        return _missing(axis, study)
    verdicts = _equivariance_verdicts(frame, "plain")
    wins = {n: sum(1 for _, r in v if not r.within_noise and r.diff.mean > 0) for n, v in verdicts.items()}
    losses = {n: sum(1 for _, r in v if not r.within_noise and r.diff.mean < 0) for n, v in verdicts.items()}
    total = {n: len(v) for n, v in verdicts.items()}
    all_win = [n for n in total if wins[n] == total[n]]
    rec = ("equivariant at every size tried" if len(all_win) == len(total) else
           f"equivariant at n ∈ {{{', '.join(map(str, all_win))}}}" if all_win else
           "no size where the equivariant model wins at every width")  # fmt: skip
    mixed = [n for n in sorted(total) if wins[n] < total[n]]
    flips = "; ".join(
        f"n = {n}: equivariant better in {wins[n]}/{total[n]} equal-parameter pairs, plain in {losses[n]}/{total[n]}"
        for n in mixed
    ) or (  # fmt: skip
        f"no flip: equivariant better in all {sum(total.values())} equal-parameter pairs at n = "
        f"{min(total)}…{max(total)}"
    )
    interval = "; ".join(f"n = {n}: plain − equivariant " + _range(verdicts[n]) for n in sorted({min(total),
                         max(total)}))  # fmt: skip
    rests = f"{_link(study)}, {_link(study, 'loss_vs_params.png')}, {_link(study, 'loss_vs_data.png')}"
    rec += " (equal parameters; exact symmetry only with the equivariant model)" + _tuning_caveat(results, study)
    flips += converged_note(results, study, "plain vs equivariant")
    return Decision(axis, rec, flips,
                    interval, rests)  # fmt: skip


def augmentation_decision(results: Path, study: str, axis: str) -> Decision:
    frame = _runs(results, study)
    if frame is None:
        return _missing(axis, study)
    aug = frame[frame.model == "plain/augmented"]
    results_by_n: dict[int, list] = {}
    for label, rows in aug.groupby("label"):
        plain = label.replace("plain/augmented/", "plain/", 1)
        if plain in set(frame.label):
            results_by_n.setdefault(int(rows.train_size.iloc[0]), []).append(compare(frame, plain, label))
    helps = {n: sum(1 for r in v if not r.within_noise and r.diff.mean < 0) for n, v in results_by_n.items()}
    hurts = {n: sum(1 for r in v if not r.within_noise and r.diff.mean > 0) for n, v in results_by_n.items()}
    helped = [n for n in sorted(helps) if helps[n] == len(results_by_n[n])]
    vs_eq = _equivariance_verdicts(frame, "plain/augmented")
    eq_better = sum(1 for v in vs_eq.values() for _, r in v if not r.within_noise and r.diff.mean > 0)
    count = sum(len(v) for v in vs_eq.values())
    rec = (f"augment a plain model at n ∈ {{{', '.join(map(str, helped))}}}" if helped else
           "augmentation does not help at every width of any size")  # fmt: skip
    not_all = [(n, v) for n, v in sorted(results_by_n.items()) if helps[n] < len(v)]
    flips = "; ".join(f"n = {n}: helps {helps[n]}/{len(v)} widths, hurts {hurts[n]}" for n, v in not_all) or (
        "helps at every width and size")  # fmt: skip
    rivals = {n: [f"{int(p['eq_params']):,}" for p, r in v if r.within_noise or r.diff.mean < 0]
              for n, v in sorted(vs_eq.items())}  # fmt: skip
    rivals_text = "; ".join(f"n = {n} at {', '.join(c)} params" for n, c in rivals.items() if c)
    if rivals_text:
        flips += f"; the augmented model matches or beats the equivariant one (equivariant size) at {rivals_text}"
    n_min = min(results_by_n)
    interval = (
        f"n = {n_min}: augmented − plain "
        + ", ".join(r.diff.text(2) for r in results_by_n[n_min])
        + f"; the equivariant model beats the augmented one at equal parameters in {eq_better}/{count} pairs"
    )
    flips += converged_note(results, study, "plain/augmented vs plain")
    return Decision(axis, rec + _tuning_caveat(results, study), flips, interval, _link(study))


def decisions(results: Path) -> list[Decision]:
    seq = "equivariant_vs_plain_sequence"
    return [
        basis_decision(results),
        cache_decision(results),
        layout_decision(results),
        norm_decision(results),
        affine_decision(results),
        equivariance_decision(results, "equivariant_vs_plain", "equivariant vs plain, MLP (ring regression)"),
        equivariance_decision(results, seq, "equivariant vs plain, regressor (ring oscillators)"),
        augmentation_decision(results, "equivariant_vs_plain", "augmentation, MLP"),
        augmentation_decision(results, seq, "augmentation, regressor"),
        *ant_decisions(results),
    ]


def ant_decisions(results: Path) -> list[Decision]:
    from .guide_ant import decisions as ant  # imports this module

    return ant(results)


def profiles(results: Path) -> str:
    """Which profile each study's saved data is (``quick`` or ``full``), in words."""
    found: dict[str, list[str]] = {}
    for study in STUDY_MODULES:
        profile = load_config(results / study).get("profile")
        if profile:
            found.setdefault(profile, []).append(study)
    if len(found) == 1:
        return f"`{next(iter(found))}` (every study with data)"
    return "; ".join(f"`{p}`: " + ", ".join(studies) for p, studies in sorted(found.items())) or "none"


def commits(results: Path) -> str:
    """Which commit wrote each study's data and at which commits its runs were trained, in words."""
    written: dict[str, list[str]] = {}
    trained: dict[str, int] = {}
    for study in STUDY_MODULES:
        config = load_config(results / study)
        if "git_commit" in config:
            written.setdefault(str(config["git_commit"])[:12], []).append(study)
        for commit, count in config.get("trained_at", {}).items():
            trained[commit[:12]] = trained.get(commit[:12], 0) + count
    text = "; ".join(f"`{c}` ({', '.join(studies)})" for c, studies in sorted(written.items())) or "none"
    if trained:
        runs = ", ".join(f"`{c}` ({n} runs)" for c, n in sorted(trained.items()))
        text += (
            f". Their runs were trained at {runs}: a run is reused only where the files that can change it "
            "are identical (`ablations/provenance.py`)"
        )
    return text


def schedules(results: Path) -> str:
    """Which studies' runs trained until validation plateaued (they log ``plateaued``) and which under the earlier
    fixed-budget cosine schedule, in words; "" when every study with data uses the plateau schedule."""
    found: dict[bool, list[str]] = {}
    for study in STUDY_MODULES:
        if (frame := _runs(results, study)) is not None:
            found.setdefault(has_plateau_record(frame), []).append(study)
    if not found.get(False):
        return ""
    until = ", ".join(found.get(True, [])) or "none yet"
    return (f" Trained until validation plateaus (`ablations.train.PlateauThenAnneal`): {until}; still from the "
            f"earlier schedule (cosine over a fixed budget, early stop; `make results-full` retrains them): "
            f"{', '.join(found[False])}.")  # fmt: skip


QUICK_NOTE = (
    " — quick-profile numbers (3 seeds, short budgets) are directions; `make results-full` (5 seeds) replaces them."
)


def glance(results: Path) -> list[str]:
    studies = list(STUDY_MODULES)
    quick = any(load_config(results / s).get("profile") == "quick" for s in studies)
    return [
        "## Decisions at a glance",
        "",
        f'Intervals: 95 % bootstrap over seeds; comparisons paired by seed, "within noise" when the interval of '
        f"the mean difference covers 0, no verdict under {MIN_SEEDS} seeds. Losses are test losses at each run's "
        f"best-validation checkpoint, each configuration at its own learning rate chosen on validation. Profile of "
        f"the data shown: {profiles(results)}" + (QUICK_NOTE if quick else ".") + schedules(results),
        "",
        "| axis | recommendation | flips when | interval | rests on |",
        "|---|---|---|---|---|",
        *[d.row() for d in decisions(results)],
        "",
        *_budget_note(results, studies),
    ]


def _budget_note(results: Path, studies) -> list[str]:
    """Which studies have configurations still improving at their step budget (their losses are upper bounds), and
    which have a chosen learning rate at an edge of the rates tried."""
    parts, quick, criteria = [], False, {}
    for study in studies:
        frame = _runs(results, study)
        if frame is not None and (limited := budget_limited(frame)):
            profile = load_config(results / study).get("profile", "?")
            quick |= profile == "quick"
            worst = late_gains(frame).reindex(limited).max()
            criteria.setdefault(budget_criterion(frame), []).append(f"`{study}`")
            parts.append(f"`{study}` ({profile} profile) {len(limited)} of {frame.label.nunique()} (up to "
                         f"{100 * worst:.0f} %)")  # fmt: skip
    longer = "; the quick profile caps training at a few hundred steps" if quick else ""
    tests = "; ".join(f"{', '.join(names)}: {words}" for words, names in criteria.items())
    lines = [f"Configurations still improving at the step budget ({tests}; their losses are upper bounds{longer}; "
             "in brackets the largest fall of the best validation loss over the last quarter of the steps): "
             + ", ".join(parts) + ".", ""] if parts else []  # fmt: skip
    edges = []
    for study in studies:
        if (selection := read_selection(results / study)) is not None and (edge := lr_at_edge(selection)):
            profile = load_config(results / study).get("profile", "?")
            edges.append(f"`{study}` ({profile} profile) {len(edge)} of {selection.label.nunique()}")
    if edges:
        lines += ["Configurations whose chosen learning rate is still the smallest or largest of the rates tried "
                  "(their optimum may lie beyond; a quick-profile grid of two rates has no interior): "
                  + ", ".join(edges) + ".", ""]  # fmt: skip
    return lines


def detail_section(results: Path) -> list[str]:
    out = ["## Paired comparisons behind the table", ""]
    frame = _runs(results, "normalization")
    if frame is not None and "norm_affine" in frame:
        out += ["Norm affine, test loss `diagonal` − `isotypic` paired by seed:", ""]
        out += [f"- `{name}`: {r.diff.text(3)} — {r.verdict('isotypic', 'diagonal')}" for name, r in
                affine_comparisons(frame)]  # fmt: skip
        out.append("")
    for study in ("equivariant_vs_plain", "equivariant_vs_plain_sequence"):
        out += equivariance_details(results, study)
    return out


def equivariance_details(results: Path, study: str) -> list[str]:
    """Every equal-parameter pair of ``study`` (plain − equivariant, paired by seed) and the equivariance errors."""
    frame = _runs(results, study)
    if frame is None:
        return []
    out = [f"{study.replace('_', ' ')}: plain − equivariant at equal parameters, paired by seed:", ""]
    for n, items in sorted(_equivariance_verdicts(frame, "plain").items()):
        out.append(f"- n = {n}: " + "; ".join(
            f"{int(p['eq_params']):,} vs {int(p['other_params']):,} params: {r.diff.text(3)} "
            f"({r.verdict('equivariant', 'plain')})" for p, r in items))  # fmt: skip
    errors = frame.groupby("model").equivariance_error_f64.max()
    return out + ["- Equivariance error after training (float64, max): " + ", ".join(
        f"`{m}` {e:.1e}" for m, e in errors.items()), ""]  # fmt: skip


def ant_sections(results: Path) -> list[str]:
    from .guide_ant import sections  # imports this module

    return sections(results)


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
        "Generated by `python -m ablations.guide` from the saved data in this folder; every number below is "
        "computed from the studies' `metrics.csv` and the benchmarks' `raw.csv` (figures and tables: "
        f"`python -m ablations.report {display_path(results)}/<study>`). `make results-full` regenerates the "
        "published `results/` from one commit; `make results` writes a quick-profile copy to the git-ignored "
        f"`results-quick/`. Profile of the ablation data here: {profiles(results)}. Written at: {commits(results)}.",
        "",
    ]
    lines += glance(results) + detail_section(results) + ant_sections(results) + benchmark_section(results)
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ablations.guide", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    print(write(parser.parse_args(argv).results))


if __name__ == "__main__":
    _main()
