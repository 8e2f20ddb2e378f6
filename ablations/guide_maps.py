"""The decision maps' advice for the guide's first screen (the basis-expansion and weight-cache rows).

When ``<results>/decision_maps/raw.csv`` exists (``benchmarks/decision_maps.py``), those rows come from
:func:`benchmarks.decision_advice.recommendations` on it: the candidate that wins the most cells beyond the noise of
the control copy, its margin, and every region where another candidate wins. Without it the guide falls back to
the pairwise cells of ``linear_family/raw.csv`` and says so in the row. Nothing here measures.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = "decision_maps"
#: flip regions shown in a row before "and N more"
FLIPS_SHOWN = 3


def raw_path(results: Path) -> Path:
    return Path(results) / FOLDER / "raw.csv"


def available(results: Path) -> bool:
    return raw_path(results).exists()


def advice(results: Path, axis: str):
    """The :class:`benchmarks.decision_advice.Advice` of ``axis``, or ``None`` when the maps are missing or did not
    measure that axis."""
    if not available(results):
        return None
    from benchmarks.decision_advice import recommendations  # the repository root is on sys.path (python -m)

    return recommendations(raw_path(results)).get(axis)


def row(results: Path, axis: str) -> tuple[str, str, str] | None:
    """``(recommendation, flips, interval)`` cells for ``axis`` from the decision maps, or ``None`` without them."""
    found = advice(results, axis)
    if found is None:
        return None
    (median, low, high), won = found.margin, found.wins.get(found.recommendation, 0)
    recommendation = f"`{found.recommendation}` (decision maps: wins {won} of {found.decided} decided cells)"
    flips = "; ".join(found.flips[:FLIPS_SHOWN]) or "no flip measured"
    if len(found.flips) > FLIPS_SHOWN:
        flips += f"; and {len(found.flips) - FLIPS_SHOWN} more regions ({FOLDER}/table.md)"
    interval = (f"margin over the runner-up where it wins: median {100 * median:.0f} % [{100 * low:.0f}–"
                f"{100 * high:.0f} %]; {found.ties} cells tied within the control's noise")  # fmt: skip
    return recommendation, flips, interval


def source(results: Path) -> str:
    """Which data the basis/cache rows rest on, in words, for the guide."""
    if available(results):
        return f"source: decision maps ([{FOLDER}/table.md]({FOLDER}/table.md), `{FOLDER}/raw.csv`)"
    return f"source: linear_family (no `{FOLDER}/raw.csv` in this folder yet; `make results-full` writes it)"
