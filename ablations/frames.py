"""What the figure step (``plot.py``), the table step (``tables.py``) and the guide share at the lowest level, so
that none of them imports another: the final rows of each run, the interval every figure and table shows (and its
wording), and paths as headers print them (relative to the repository, never a machine path).

The per-run frame, colours, captions and paired comparisons built on these live in :mod:`ablations.summary`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .stats import INTERVAL_TEXT, LEVEL

REPO = Path(__file__).resolve().parent.parent
#: seaborn's ``errorbar`` argument for curves over steps: a bootstrap interval over seeds at the level of the tables.
INTERVAL = ("ci", round(100 * LEVEL))
__all__ = ["INTERVAL", "INTERVAL_TEXT", "REPO", "display_path", "finals"]


def finals(data: pd.DataFrame) -> pd.DataFrame:
    """One row per run and final metric (the last logged step of each run)."""
    last = data.groupby("run_id").step.transform("max")
    return data[data.step == last]


def display_path(path: Path | str) -> str:
    """``path`` relative to the repository when inside it, else ``.../<name>``: no machine path in a header."""
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else f".../{path.name}"
