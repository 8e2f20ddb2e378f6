"""Show that ``asv continuous`` catches a regression: slow down one layer in a throwaway clone and compare.

Usage::

    python benchmarks/regression_demo.py [--slowdown 4] [--factor 2] [--log results/asv/regression_demo.txt] [--keep]

Steps, all inside a temporary directory (this repository's history is never touched):

1. ``git clone`` this repository's committed ``HEAD``;
2. commit a deliberate slowdown of ``eRMSNorm.forward`` only (it computes its output ``--slowdown`` times and
   returns the last one);
3. ``asv continuous --no-only-changed BASE SLOWED`` over a subset: the eval forward of every normalisation (the
   equivariant ones and their torch twins), the train step of eRMSNorm and eLayerNorm, and eval forwards of eLinear,
   nn.Linear and eMultiheadAttention, six interleaved rounds per commit (``-a rounds=6``) and ``--factor 2``;
4. parse asv's table: eRMSNorm's eval forward must be marked ``+`` (slower), and no benchmark that does not call
   eRMSNorm ``+``, ``-`` or ``!`` (its train step, which also runs the backward, may go either way). Exits 0 when
   that holds, 1 otherwise.

Why ``--factor 2`` rather than asv's default 1.1: on a 2-core machine shared with a training job, two runs at the
default each flagged one unrelated 20-50 µs torch benchmark as significantly changed (0.72x and 1.46x), while the
4x slowdown measures 2.7-5x. A factor of 2 separates the two; pass ``--factor 1.1`` on a quiet machine.

asv builds one virtualenv in the clone (about a minute; the wheels come from pip's cache or find-links), then runs
every benchmark at both commits in interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = "symm_layers/normalization.py"
PATCH = """

# Regression demo (a throwaway commit): eRMSNorm.forward computes its output {times} times and returns the last.
_demo_forward = eRMSNorm.forward


def _demo_slowed_forward(self, x):
    for _ in range({times} - 1):
        _demo_forward(self, x)
    return _demo_forward(self, x)


eRMSNorm.forward = _demo_slowed_forward
"""
#: The benchmarks run at both commits (asv --bench regular expressions over ``name(param, ...)``).
SUBSET = [
    r"bench_norms\.Norm\.time_eval_forward\('(torch|equivariant)', '\w+', 'D8', 64, 256, 'cpu'\)",
    r"bench_norms\.Norm\.time_train_step\('equivariant', '(rmsnorm|layernorm)', 'D8', 64, 256, 'cpu'\)",
    r"bench_linear\.Linear\.time_eval_forward\('(torch|isotypic_expansion/cached)', 'D8', 64, 256, 'cpu'\)",
    r"bench_attention\.Attention\.time_eval_forward\('isotypic_expansion/cached', 'C8', 64, 32, 'cpu'\)",
]
#: The benchmark the slowdown must be flagged in, and every benchmark that calls eRMSNorm.forward.
SLOWED = re.compile(r"^bench_norms\.Norm\.time_eval_forward\('equivariant', 'rmsnorm',")
RELATED = re.compile(r"^bench_norms\.Norm\.time_\w+\('equivariant', 'rmsnorm',")
ROW = re.compile(r"^\|\s*([-+!x* ]?)\s*\|[^|]*\|[^|]*\|\s*(\S*)\s*\|\s*(\S.*?)\s*\|$")


def sh(cmd: list[str], cwd: Path, log: list[str]) -> subprocess.CompletedProcess:
    """Run ``cmd``, keep its command line and output in ``log``."""
    log.append("$ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def git(clone: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=regression demo", "-c", "user.email=demo@localhost", *args]
    return subprocess.run(cmd, cwd=clone, capture_output=True, text=True, check=True).stdout.strip()


def make_clone(workdir: Path, times: int) -> tuple[Path, str, str]:
    """Clone ``HEAD`` into ``workdir`` and commit the slowdown; returns the clone, base and slowed hashes."""
    clone = workdir / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    base = git(clone, "rev-parse", "HEAD")
    target = clone / TARGET
    if "class eRMSNorm(" not in target.read_text():
        sys.exit(f"regression_demo: {TARGET} defines no eRMSNorm")
    with open(target, "a") as f:
        f.write(PATCH.format(times=times))
    git(clone, "commit", "-q", "-am", f"Regression demo: eRMSNorm.forward {times}x slower")
    return clone, base, git(clone, "rev-parse", "HEAD")


def parse_table(output: str) -> list[tuple[str, str, str]]:
    """``(mark, ratio, benchmark)`` for every benchmark ``asv continuous`` measured at both commits.

    With ``--no-only-changed`` asv also lists the parameter cells outside ``--bench`` (ratio ``n/a``): left out.
    """
    rows = []
    for line in output.splitlines():
        match = ROW.match(line.strip())
        if match and not match.group(3).startswith(("Benchmark", "-")) and match.group(2) != "n/a":
            rows.append(match.groups())
    return rows


def verdict(rows: list[tuple[str, str, str]]) -> list[str]:
    """What contradicts "eRMSNorm's eval forward is flagged slower and nothing unrelated changed" (empty: holds)."""
    problems = []
    slowed = [(mark, name) for mark, _, name in rows if SLOWED.match(name)]
    if len(slowed) != 1:
        problems.append(f"asv reported {len(slowed)} eval forwards of eRMSNorm, expected 1")
    problems += [f"not flagged slower: {name}" for mark, name in slowed if mark != "+"]
    problems += [f"unrelated benchmark flagged {mark!r}: {name}" for mark, _, name in rows
                 if mark in ("+", "-", "!") and not RELATED.match(name)]  # fmt: skip
    if len(rows) < 6:
        problems.append(f"only {len(rows)} benchmarks compared")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slowdown", type=int, default=4, help="eRMSNorm.forward runs this many times (default 4)")
    p.add_argument("--factor", type=float, default=2.0, help="asv continuous --factor (default 2; asv's is 1.1)")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds per commit (asv attribute rounds)")
    p.add_argument("--log", type=Path, help="also write the report (commands, asv's table, verdict) here")
    p.add_argument("--keep", action="store_true", help="keep the temporary clone and print its path")
    args = p.parse_args(argv)
    start, log = time.perf_counter(), []
    workdir = Path(tempfile.mkdtemp(prefix="symm_regression_demo_"))
    try:
        clone, base, slowed = make_clone(workdir, args.slowdown)
        log.append(f"clone of {REPO} at {base[:12]}; slowed commit {slowed[:12]} ({args.slowdown}x eRMSNorm.forward)")
        asv = [sys.executable, "-m", "asv"]
        if not Path(os.path.expanduser("~/.asv-machine.json")).exists():
            sh([*asv, "machine", "--yes"], clone, log)
        bench = [arg for regex in SUBSET for arg in ("--bench", regex)]
        options = ["--no-only-changed", "--factor", str(args.factor), "-a", f"rounds={args.rounds}"]
        out = sh([*asv, "continuous", *options, *bench, base, slowed], clone, log)
        table = [line for line in out.stdout.splitlines()
                 if line.isupper() or line.startswith("|") and not re.search(r"\|\s*n/a\s*\|", line)]  # fmt: skip
        log += table + [f"(asv continuous exit status {out.returncode}: 1 means it found a regression)"]
        rows = parse_table(out.stdout)
        problems = verdict(rows)
        if not rows:
            problems.append(f"no comparison table in asv's output:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    wall = time.perf_counter() - start
    if problems:
        log += ["FAILED:"] + [f"  - {problem}" for problem in problems]
    else:
        unrelated = sum(not RELATED.match(name) for _, _, name in rows)
        log.append(f"OK: eRMSNorm's eval forward is flagged slower; none of the {unrelated} unrelated benchmarks "
                   "is flagged.")  # fmt: skip
    log.append(f"wall time {wall:.0f} s")
    report = "\n".join(log) + "\n"
    print(report, end="")
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text(report)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
