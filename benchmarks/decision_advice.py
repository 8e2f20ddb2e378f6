"""What the decision maps say: the winner of every cell, the tables and heatmaps, and the advice per axis.

    from benchmarks.decision_advice import recommendations
    for axis, advice in recommendations("results/decision_maps/raw.csv").items():
        print(advice.summary())   # e.g. "basis_expansion: orbit_gather (wins 40 of 52 decided cells, ...)"

Reads only ``raw.csv`` (and ``meta.json`` for the page header), written by ``decision_maps.py``. A cell's winner is
the candidate with the lowest median ratio to the plain-torch baseline; aliases (``auto``, which resolves to one of
the others) are shown but never win. The winner's margin is the runner-up's ratio over the winner's, minus 1. The
cell's noise is the control copy of the baseline: ``max(|control - 1|, control IQR)``; a cell whose margin is not
above its noise is a tie and decides nothing. A module under ``benchmarks/`` that asv imports: it defines no
benchmark names.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CELL = ["axis", "layer", "group", "D", "rows", "threads", "mode"]
ALIASES = ("auto",)
TIE = "tie"


# ----------------------------------------------------------------------------------------------- winners
def load(source) -> pd.DataFrame:
    """``raw.csv`` of a decision-map run: a path to the file or its folder, or the frame itself."""
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    return pd.read_csv(path / "raw.csv" if path.is_dir() else path, dtype={"note": str})


def winners(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: winner (or ``"tie"``), margin, the control's noise, the alias's gap, refusals."""
    out = []
    for key, cell in raw.groupby(CELL, sort=True):
        ok = cell[cell.status == "ok"].set_index("candidate")
        cands = ok[(ok.role == "candidate") & ~ok.index.isin(ALIASES)].ratio.sort_values()
        if cands.empty:
            continue
        control = ok.loc["control"]
        noise = max(abs(control.ratio - 1), control.ratio_q75 - control.ratio_q25)
        best, best_ratio = cands.index[0], cands.iloc[0]
        margin = cands.iloc[1] / best_ratio - 1 if len(cands) > 1 else float("inf")
        row = dict(zip(CELL, key, strict=True))
        runner_up = cands.index[1] if len(cands) > 1 else ""
        winner = best if margin > noise else TIE  # a lone candidate (the others refused) wins by default
        row.update(best=best, ratio=best_ratio, margin=margin, noise=noise, control=control.ratio, winner=winner,
                   runner_up=runner_up)  # fmt: skip
        for alias in ALIASES:
            if alias in ok.index:
                row[f"{alias}_gap"] = ok.loc[alias, "ratio"] / best_ratio - 1
                row[f"{alias}_note"] = ok.loc[alias, "note"]
        refused = cell[cell.status == "refused"]
        row["refused"] = "; ".join(f"{c}: {n}" for c, n in zip(refused.candidate, refused.note, strict=True))
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------- advice
@dataclass
class Advice:
    """The recommendation for one axis and where it flips.

    Attributes:
        recommendation: the candidate that wins the most decided cells.
        wins: decided cells won, per candidate.
        decided, ties: cells with a winner beyond the noise, and cells without.
        margin: median, min and max margin of the recommendation where it wins.
        flips: one sentence per region where another candidate wins (its D and rows range, where).
    """

    axis: str
    recommendation: str
    wins: dict[str, int]
    decided: int
    ties: int
    margin: tuple[float, float, float]
    flips: list[str] = field(default_factory=list)

    def summary(self) -> str:
        (med, lo, hi), won = self.margin, self.wins.get(self.recommendation, 0)
        head = (f"{self.axis}: {self.recommendation} (wins {won} of {self.decided} decided cells, by {100 * med:.0f} % "
                f"[{100 * lo:.0f}–{100 * hi:.0f} %]; {self.ties} ties)")  # fmt: skip
        return head + "".join(f"\n  - {f}" for f in self.flips) if self.flips else head + "; no flip measured"


def _range(values: list[int], grid: list[int], name: str) -> str:
    lo, hi = min(values), max(values)
    if lo == grid[0] and hi == grid[-1]:
        return f"every {name}"
    if lo == hi:
        return f"{name} = {lo}"
    if lo == grid[0]:
        return f"{name} ≤ {hi}"
    return f"{name} ≥ {lo}" if hi == grid[-1] else f"{lo} ≤ {name} ≤ {hi}"


def _scopes(scopes: list[tuple]) -> str:
    """``[(layer, mode, threads), ...]`` as few words: one phrase when they are a full product of their parts."""
    parts = [sorted({s[i] for s in scopes}) for i in range(3)]
    if len(scopes) == len(parts[0]) * len(parts[1]) * len(parts[2]):
        threads = " and ".join(map(str, parts[2])) + f" thread{'s' * (parts[2] != [1])}"
        return f"{' and '.join(parts[0])}; {' and '.join(parts[1])}; {threads}"
    return "; ".join(f"{layer}, {mode}, {t} thread{'s' * (t > 1)}" for layer, mode, t in scopes)


def _flip_regions(w: pd.DataFrame, value: str) -> list[str]:
    """Where ``value`` wins: per slice (layer, group, mode, threads) the D x rows box of its wins, merged."""
    boxes: dict[str, list[str]] = {}
    for (layer, mode, threads, group), s in w.groupby(["layer", "mode", "threads", "group"]):
        won = s[s.winner == value]
        if won.empty:
            continue
        d_grid, r_grid = sorted(s.D.unique()), sorted(s.rows.unique())
        box = s[s.D.between(won.D.min(), won.D.max()) & s.rows.between(won.rows.min(), won.rows.max())]
        against = int(((box.winner != value) & (box.winner != TIE)).sum())
        where = f"{_range(list(won.D), d_grid, 'D')} at {_range(list(won.rows), r_grid, 'rows')}"
        if against:
            where += f" (but not in {against} cell{'s' * (against > 1)} of that range)"
        boxes.setdefault((where, layer, mode, int(threads)), []).append(group)
    merged: dict[str, list[tuple]] = {}
    for (where, *scope), groups in boxes.items():
        where = "the whole measured range" if where == "every D at every rows" else where
        merged.setdefault(f"{value} wins for {where} ({', '.join(groups)}", []).append(tuple(scope))
    return [f"{head}; {_scopes(scopes)})" for head, scopes in merged.items()]


def recommendations(source) -> dict[str, Advice]:
    """Per axis of a decision-map run (``raw.csv`` path, its folder or the frame): the recommendation, its margin
    and the conditions under which another candidate wins (the boundaries where the answer flips)."""
    w = winners(load(source))
    advice = {}
    for axis, a in w.groupby("axis", sort=False):
        lone = a[a.runner_up == ""]  # every other candidate refused: no choice to make there
        a = a[a.runner_up != ""]
        decided = a[a.winner != TIE]
        wins = decided.winner.value_counts().to_dict()
        if wins:
            best = max(wins, key=lambda v: (wins[v], -a[a.best == v].ratio.median()))
        else:
            best = a.best.value_counts().idxmax()
        margins = list(decided[decided.winner == best].margin.clip(upper=1e9)) or [0.0]
        flips = [f for v in wins if v != best for f in _flip_regions(a, v)]
        for (value, group), cells in lone.groupby(["best", "group"]):
            dims = sorted(w[(w.axis == axis) & (w.group == group)].D.unique())
            where = _range(list(cells.D), dims, "D").replace("every D", "every D measured")
            flips.append(f"{value} is the only candidate on {group} at {where} (the others refuse it there)")
        spread = (statistics.median(margins), min(margins), max(margins))
        ties = int((a.winner == TIE).sum())
        advice[axis] = Advice(axis, best, {k: int(v) for k, v in wins.items()}, len(decided), ties, spread, flips)
    return advice


# ----------------------------------------------------------------------------------------------- rendering
def _cell_text(r: pd.Series) -> str:
    if r.winner == TIE:
        return f"tie ({r.best} +{100 * r.margin:.0f}%, noise ±{100 * r.noise:.0f}%)"
    margin = "only one" if r.margin == float("inf") else f"+{100 * r.margin:.0f}%"
    return f"**{r.winner}** {r.ratio:.2f}× {margin} (±{100 * r.noise:.0f}%)"


def axis_table(w: pd.DataFrame) -> str:
    """Rows (layer, group, D, rows); one column per (mode, threads): winner, its ratio to torch, margin, noise."""
    w = w.assign(col=w["mode"] + ", " + w.threads.astype(str) + "t", text=w.apply(_cell_text, axis=1))
    table = w.pivot_table(index=["layer", "group", "D", "rows"], columns="col", values="text", aggfunc="first")
    return table.reset_index().to_markdown(index=False, disable_numparse=True)


def _label(r: pd.Series) -> str:
    if r.runner_up == "":
        return "only"
    return "≈" if r.winner == TIE else f"+{min(100 * r.margin, 999):.0f}%"


def heatmap(w: pd.DataFrame, axis: str, path: Path, order: list[str]) -> None:
    """Winner per cell (colour; grey: tie) with its margin, faceted by (layer, group) x (mode, threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    values = list(order)  # every candidate of the axis, in raw.csv's order: a colour always means one candidate
    colours = sns.color_palette("colorblind", len(values))
    code = {v: i for i, v in enumerate(values)} | {TIE: len(values)}
    cmap = ListedColormap([*colours, (0.85, 0.85, 0.85)])
    facets_r = list(w.groupby(["layer", "group"], sort=True).groups)
    facets_c = list(w.groupby(["mode", "threads"], sort=True).groups)
    fig, axes = plt.subplots(len(facets_r), len(facets_c), squeeze=False,
                             figsize=(3.2 * len(facets_c) + 1, 2.4 * len(facets_r) + 1))  # fmt: skip
    for i, (layer, group) in enumerate(facets_r):
        for j, (mode, threads) in enumerate(facets_c):
            ax = axes[i][j]
            s = w[(w.layer == layer) & (w.group == group) & (w["mode"] == mode) & (w.threads == threads)]
            codes = (
                s.assign(c=s.winner.map(code)).pivot(index="D", columns="rows", values="c").sort_index(ascending=False)
            )
            text = s.assign(t=s.apply(_label, axis=1))
            labels = text.pivot(index="D", columns="rows", values="t").sort_index(ascending=False)
            sns.heatmap(codes, ax=ax, cmap=cmap, vmin=-0.5, vmax=len(values) + 0.5, annot=labels, fmt="", cbar=False,
                        linewidths=0.5, annot_kws={"fontsize": 7})  # fmt: skip
            ax.set_title(f"{layer} {group} | {mode}, {threads} thread{'s' * (threads > 1)}", fontsize=8)
            ax.set_xlabel("rows per call" if i == len(facets_r) - 1 else "")
            ax.set_ylabel("D" if j == 0 else "")
    handles = [Patch(color=colours[code[v]], label=v) for v in values] + [Patch(color=cmap(len(values)), label=TIE)]
    top = 1 - 0.9 / fig.get_figheight()
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, top), ncol=len(handles), frameon=False,
               fontsize=8)  # fmt: skip
    fig.suptitle(f"{axis}: fastest candidate per cell (label: margin over the runner-up; ≈: within the control's "
                 "noise)", y=1 - 0.1 / fig.get_figheight(), fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=110)
    plt.close(fig)


HEADER = """# Decision maps: which strategy, when

- machine: {cpu} ({cores} cores), CPU, float32; torch {torch}, escnn {escnn}, python {python}; commit `{commit}`
- date {date}; profile `{profile}`, grid {grid}; measured in {wall_s} s, CPU share {cpu_share:.0%}
- regenerate: `{command}`; re-render only: `python benchmarks/decision_maps.py --from-raw --out {out}`
- timer: {timers}
- method: in each cell every candidate, the plain-torch twin (baseline: nn.Linear, nn.RMSNorm, nn.LayerNorm) and a
  separately built control copy of the twin are timed interleaved in one process; ratio = median over rounds of the
  candidate's time over the baseline's in the same round. Winner = lowest ratio; margin = runner-up / winner - 1;
  noise (±) = max(|control - 1|, control IQR); a margin within the noise is a tie. `auto` resolves to one of the
  strategies: it is shown by its gap to the winner, never as a winner. Train: forward + backward with the input
  requiring grad; eval: `no_grad`. Representations: regular copies of C8, D8, ico; D8-irreps = copies of the sum
  of all irreps of D8 (not a permutation representation).
"""


def render(out: Path) -> list[Path]:
    """``table.md`` and ``<axis>.png`` from ``out/raw.csv`` and ``out/meta.json``; returns the paths written."""
    raw, meta = load(out), json.loads((out / "meta.json").read_text())
    w = winners(raw) if not raw.empty else pd.DataFrame(columns=CELL)
    timers = "; ".join(f"{t} thread(s): {v}" for t, v in meta.get("timers", {}).items())
    parts = [HEADER.format(**{**meta, "timers": timers})]
    if meta.get("partial"):
        parts.append("**Partial run:** it was cut short; only the cells below were measured.\n")
    advice = recommendations(raw) if not w.empty else {}
    lines = [f"- {a.summary()}" for a in advice.values()]
    lines += [f"- not measured: {i['axis']} = {i['candidate']} on {i['layer']} ({i['why']})"
              for i in meta.get("not_measured", [])]  # fmt: skip
    parts.append("## Advice\n\n" + "\n".join(lines))
    written = []
    for axis, a in w.groupby("axis", sort=False) if not w.empty else []:
        png = out / f"{axis}.png"
        cands = raw[(raw.axis == axis) & (raw.role == "candidate") & ~raw.candidate.isin(ALIASES)]
        heatmap(a, axis, png, list(dict.fromkeys(cands.candidate)))
        written.append(png)
        refused = sorted({x for x in a.refused if x})
        section = f"## {axis}\n\n![{axis}]({png.name})\n\n{axis_table(a)}\n"
        if "auto_gap" in a and a.auto_gap.notna().any():
            gaps = a.auto_gap.dropna()
            worst = f"{100 * gaps.max():+.0f}%"
            section += (f"\n`auto` vs the winner: median gap {100 * gaps.median():+.0f}% (worst {worst}, over "
                        f"{len(gaps)} cells; positive = slower than the winner).\n")  # fmt: skip
        if refused:
            section += "\nRefused (not measured):\n\n" + "\n".join(f"- {x}" for x in refused[:20]) + "\n"
        parts.append(section)
    (out / "table.md").write_text("\n\n".join(parts) + "\n")
    return [out / "table.md", *written]
