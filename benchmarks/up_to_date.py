"""Exit 0 when a benchmark folder already holds a finished run of this code commit: make results-full skips it.

    python benchmarks/up_to_date.py results/linear_family --profile full   # exit 0: current; 1: (re)measure

Reads ``<folder>/meta.json`` (written by ``linear_family.py``, ``layer_family.py``, ``decision_maps.py`` and
``asv_tables.py``): the run is current when the files that can change a measurement (:data:`MEASURED_FILES`: the
library, the benchmarks, asv's and the build's configuration, the dependency pins) are identical at the commit it
ran at and at HEAD, the tree it ran on had no uncommitted changes, it was not cut short, and (with ``--profile``)
it used that profile. Committing results, documentation or ablation code therefore does not restart a
measurement; this file and ``agreement.py`` (it compares two finished runs) are not in the list. Prints why a run
is not current. A module under ``benchmarks/`` that asv imports: it defines no benchmark names and works only under
``__main__``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: What a benchmark measurement depends on (paths relative to the repository root).
MEASURED_FILES = ("symm_layers", "benchmarks", ":!benchmarks/up_to_date.py", ":!benchmarks/agreement.py",
                  "asv.conf.json", "Makefile", "requirements.txt", "pyproject.toml")  # fmt: skip


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
    diff = ["git", "diff", "--quiet", commit, "HEAD", "--", *MEASURED_FILES]
    changed = subprocess.run(diff, cwd=root, capture_output=True, text=True).returncode
    if changed:
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
