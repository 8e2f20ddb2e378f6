"""Figures and table of a study from its saved data: :func:`ablations.plot.figures` then
:func:`ablations.tables.write` (the two never import each other).

    python -m ablations.report results/basis_expansion [results/normalization ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import plot, tables
from .summary import load, load_config


def render(study: str, out: Path | str) -> list[Path]:
    """Draw every figure of ``study`` and write its table, from ``out/metrics.csv``; return the files written."""
    out = Path(out)
    written = plot.figures(study, out)
    written.append(tables.write(study, load(out), out, load_config(out)))
    return written


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ablations.report", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study output folders (results/<study>)")
    for folder in parser.parse_args(argv).folders:
        for path in render(load_config(folder).get("study", folder.name), folder):
            print(path)


if __name__ == "__main__":
    _main()
