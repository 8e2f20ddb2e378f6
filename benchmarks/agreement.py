"""Do asv and the family script agree on the cells both measure? Prints and writes the comparison.

    python benchmarks/agreement.py --asv results-quick/asv --family results-quick/linear_family

The cells both measure are the CPU train step and eval forward of ``nn.Linear`` and ``eLinear`` (each strategy) at
the same group, feature size D and batch B: asv's ``bench_linear.Linear.time_{train_step,eval_forward}`` and
``linear_family.py``'s ``train_fwd_bwd``/``eval_fwd``. Both time the same calls (one torch thread, float32;
``zero_grad(set_to_none=True)``, forward, ``backward`` of a fixed gradient; eval mode under ``no_grad``). Writes
``agreement.md`` beside the family table; exits 1 (a loud failure) only when some cell differs by more than the
tolerance (±25 % by default), 0 otherwise, also when the two runs share no cell (it says so). A module under
``benchmarks/`` that asv imports: it defines no benchmark names and works only under ``__main__``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

#: asv ``impl`` -> linear_family ``implementation``.
IMPLS = {
    "torch": "nn.Linear",
    "isotypic_expansion/cached": "iso_cached",
    "isotypic_expansion/uncached": "iso_uncached",
    "memory_heavy/cached": "mh_cached",
}
METRICS = {"time_train_step": "train_fwd_bwd", "time_eval_forward": "eval_fwd"}


def asv_cells(folder: Path) -> dict[tuple, float]:
    """``(metric, impl, group, D_target, B) -> ms`` of asv's Linear suite on the CPU."""
    cells = {}
    with open(folder / "raw.csv", newline="") as f:
        for row in csv.DictReader(f):
            if (row["suite_file"], row["suite"]) != ("bench_linear", "Linear") or row["metric"] not in METRICS:
                continue
            p = json.loads(row["params"])
            if p.get("device") != "cpu" or row["status"] != "ok" or p["impl"] not in IMPLS:
                continue
            key = (METRICS[row["metric"]], IMPLS[p["impl"]], p["group"], int(p["features"]), int(p["batch"]))
            cells[key] = float(row["value"]) * 1e3
    return cells


def family_cells(folder: Path) -> dict[tuple, float]:
    """``(metric, implementation, group, D_target, B) -> ms`` of linear_family.py."""
    cells = {}
    with open(folder / "raw.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["metric"] not in METRICS.values() or not row["value"]:
                continue
            key = (row["metric"], row["implementation"], row["group"], int(row["D_target"]), int(row["B"]))
            cells[key] = float(row["value"])
    return cells


def compare(asv: dict[tuple, float], family: dict[tuple, float], tolerance: float) -> tuple[list[str], list[str]]:
    """Markdown rows of every shared cell and the descriptions of those outside the tolerance."""
    rows, off = [], []
    for key in sorted(asv.keys() & family.keys()):
        ratio = asv[key] / family[key]
        ok = abs(ratio - 1) <= tolerance
        metric, impl, group, d, b = key
        rows.append(f"| {metric} | {impl} | {group} | {d} | {b} | {asv[key]:.4g} | {family[key]:.4g} | {ratio:.2f} | "
                    f"{'agree' if ok else '**DISAGREE**'} |")  # fmt: skip
        if not ok:
            off.append(f"{metric} {impl} {group} D={d} B={b}: asv/family = {ratio:.2f}")
    return rows, off


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--asv", type=Path, required=True, help="folder with asv_tables' raw.csv")
    p.add_argument("--family", type=Path, required=True, help="folder with linear_family.py's raw.csv")
    p.add_argument("--tolerance", type=float, default=0.25, help="largest allowed |asv/family - 1| (default 0.25)")
    args = p.parse_args(argv)
    rows, off = compare(asv_cells(args.asv), family_cells(args.family), args.tolerance)
    if not rows:
        verdict = "The two runs share no cell: nothing to compare."
    elif off:
        shown = "; ".join(off[:5]) + (f"; and {len(off) - 5} more (table below)" if len(off) > 5 else "")
        verdict = f"**{len(off)} of {len(rows)} shared cells disagree by more than ±{args.tolerance:.0%}:** {shown}"
    else:
        verdict = f"All {len(rows)} shared cells agree within ±{args.tolerance:.0%}."
    text = "\n".join([
        "# asv vs linear_family.py on the cells both measure",
        "",
        verdict,
        "",
        "Times in ms per call (CPU, one torch thread, float32); ratio = asv / family. Regenerate: "
        f"`python benchmarks/agreement.py --asv {args.asv.as_posix()} --family {args.family.as_posix()}`.",
        "",
        "| metric | implementation | group | D (target) | B | asv (ms) | family (ms) | ratio | verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
        *rows,
    ])  # fmt: skip
    (args.family / "agreement.md").write_text(text + "\n")
    print(verdict)
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
