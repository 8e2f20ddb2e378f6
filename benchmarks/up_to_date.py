"""Exit 0 when a benchmark folder already holds a finished run of this code commit: make results-full skips it.

    python benchmarks/up_to_date.py results/linear_family --profile full   # exit 0: current; 1: (re)measure

Reads ``<folder>/meta.json`` (written by ``linear_family.py``, ``layer_family.py``, ``decision_maps.py`` and
``asv_tables.py``): the run is current when the files that can change its measurement (:func:`measured_files`: the
library, the build and the dependency pins for every folder, and the benchmark modules that folder's script runs,
by the folder's name) are identical at the commit it ran at and at HEAD, the tree it ran on had no uncommitted
changes, it was not cut short, and (with ``--profile``) it used that profile. Committing results, documentation or
ablation code therefore does not restart a measurement, and neither does a change to another benchmark's modules
(an asv suite does not re-date ``linear_family``); a folder of another name depends on all of ``benchmarks/``
except this file and ``agreement.py`` (it compares two finished runs). The ``Makefile`` counts without its blank
and comment lines and without the rules of :data:`UNMEASURED_RULES` (the quick pipeline, which writes
``results-quick/`` and never runs in ``make results-full``): retuning the quick run's grids does not re-date the
published measurements. Prints why a run is not current. A module under ``benchmarks/`` that asv imports: it
defines no benchmark names and works only under ``__main__``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: What every benchmark measurement depends on (git pathspecs relative to the repository root): the library, the
#: commands that run it, the dependency pins, and the helpers every script imports.
COMMON_FILES = ("symm_layers", "requirements.txt", "pyproject.toml", "benchmarks/__init__.py", "benchmarks/common.py")
#: Benchmark folder name -> the further files its script runs (asv: the suites, their shared cases, asv's
#: configuration and the table writer, whose ``raw.csv`` is what the folder holds).
MEASURED_BY = {
    "linear_family": ("benchmarks/linear_family.py", "benchmarks/cases.py"),
    "layer_family": ("benchmarks/layer_family.py",),
    "decision_maps": ("benchmarks/decision_maps.py", "benchmarks/decision_advice.py", "benchmarks/cases.py"),
    "asv": (
        "benchmarks/bench_*.py",
        "benchmarks/_asv_common.py",
        "benchmarks/cases.py",
        "benchmarks/asv_tables.py",
        "asv.conf.json",
    ),
}
#: A folder of another name: all of ``benchmarks/`` but the decider and the comparison of finished runs.
MEASURED_FILES = ("symm_layers", "benchmarks", ":!benchmarks/up_to_date.py", ":!benchmarks/agreement.py",
                  "asv.conf.json", "requirements.txt", "pyproject.toml")  # fmt: skip
#: Every folder also depends on the Makefile (set-up and ``results-full`` recipes), compared by
#: :func:`measured_makefile`: without comments and without these rules, which no published measurement runs.
UNMEASURED_RULES = ("results",)


def measured_files(folder: Path) -> tuple[str, ...]:
    """The pathspecs whose contents the measurement in ``folder`` depends on (by the folder's name)."""
    own = MEASURED_BY.get(folder.name)
    return MEASURED_FILES if own is None else (*COMMON_FILES, *own)


def measured_makefile(text: str) -> str:
    """The part of a Makefile a published measurement depends on: ``text`` without blank and comment lines and
    without the rules named in :data:`UNMEASURED_RULES` (their target line and its tab-indented recipe)."""
    kept, skipping = [], False
    for line in text.splitlines():
        if not line.startswith("\t"):  # a recipe line belongs to the rule above it; any other line ends that rule
            skipping = ":" in line and line.split(":", 1)[0].strip() in UNMEASURED_RULES
        if not skipping and line.strip() and not line.lstrip().startswith("#"):
            kept.append(line)
    return "\n".join(kept)


def _makefile_at(commit: str, root: Path | None) -> str | None:
    shown = subprocess.run(["git", "show", f"{commit}:Makefile"], cwd=root, capture_output=True, text=True)
    return measured_makefile(shown.stdout) if shown.returncode == 0 else None


def reason_to_rerun(folder: Path, profile: str | None, root: Path | None = None) -> str | None:
    """``None`` when ``folder`` holds a finished run whose measured files equal HEAD's (with ``profile``), else why
    it does not. ``root``: the repository (default: the current directory)."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return f"{meta_path} does not exist"
    meta = json.loads(meta_path.read_text())
    commit = str(meta.get("commit", ""))
    if not commit or "uncommitted" in commit or "dirty" in commit:
        return f"{folder} was measured at {commit or 'an unknown commit'} (not a clean commit)"
    diff = ["git", "diff", "--quiet", commit, "HEAD", "--", *measured_files(folder)]
    changed = subprocess.run(diff, cwd=root, capture_output=True, text=True).returncode
    if changed or _makefile_at(commit, root) != _makefile_at("HEAD", root):
        return f"{folder} was measured at {commit[:12]}, and the measured files differ at HEAD (or it is unknown)"
    if meta.get("partial"):
        return f"{folder} holds a run that was cut short"
    if profile is not None and meta.get("profile") != profile:
        return f"{folder} holds profile {meta.get('profile')!r}, not {profile!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--profile", help="also require this profile (linear_family / layer_family)")
    args = p.parse_args(argv)
    reason = reason_to_rerun(args.folder, args.profile)
    print(f"{args.folder}: " + (reason + ": measuring" if reason else "measured files unchanged since: skipped"))
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
