"""Exit 0 when a benchmark folder already holds a finished run of this code commit: make results-full skips it.

    python benchmarks/up_to_date.py results/linear_family --profile full   # exit 0: done at HEAD; 1: (re)measure

Reads ``<folder>/meta.json`` (written by ``linear_family.py``, ``layer_family.py`` and ``asv_tables.py``): the run is
current when its commit is the newest code commit (outside ``results/``, documentation ``*.md`` excluded, so
committing results as they land or editing the README does not restart the run), the tree it ran on had no
uncommitted changes, it was not cut short, and (with ``--profile``) it used that profile. Prints why it is not. A
module under ``benchmarks/`` that asv imports: it defines no benchmark names and works only under ``__main__``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def reason_to_rerun(folder: Path, profile: str | None) -> str | None:
    """``None`` when ``folder`` holds a finished run of HEAD (with ``profile``), else why it does not."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return f"{meta_path} does not exist"
    meta = json.loads(meta_path.read_text())
    code = ["git", "rev-list", "-1", "HEAD", "--", ".", ":!results", ":!*.md"]  # what the writers record
    head = subprocess.run(code, capture_output=True, text=True, check=True).stdout.strip()
    commit = str(meta.get("commit", ""))
    if not commit.startswith(head) or "uncommitted" in commit or "dirty" in commit:
        return f"{folder} was measured at {commit or 'an unknown commit'}, not at HEAD {head[:12]}"
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
    print(f"{args.folder}: " + (reason + ": measuring" if reason else "already measured at HEAD: skipped"))
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
