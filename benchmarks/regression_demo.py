"""Show that ``asv continuous`` catches a regression: slow down one layer in a throwaway clone and compare.

Usage::

    python benchmarks/regression_demo.py [--slowdown 1.3] [--factor 1.15] [--rounds 30] [--repeat 5]
                                         [--log results/asv/regression_demo.txt] [--keep]

Steps, all inside a temporary directory (this repository's history is never touched):

1. ``git clone`` this repository's committed ``HEAD``;
2. commit a deliberate slowdown of ``eRMSNorm.forward`` only: after computing its output it busy-waits until the
   calling thread's CPU clock has advanced ``--slowdown`` times what the computation took, so every call really
   costs 1.3x its own CPU time (on the clock the suites' ``time_*`` benchmarks read, and on the wall clock too);
3. ``asv continuous --no-only-changed --factor 1.15 -a rounds=30 -a repeat=5 BASE SLOWED`` over a subset: the
   eval forward of every normalisation (the equivariant ones and their torch twins), the train step of eRMSNorm and
   eLayerNorm, and the eval forwards of eLinear, nn.Linear, eMultiheadAttention and its plain twin
   ``MultiheadAttention``;
4. parse asv's table: eRMSNorm's eval forward must be marked ``+`` (slower), and no benchmark that does not call
   eRMSNorm ``+``, ``-`` or ``!`` (its train step, which also runs the unchanged backward, may go either way).
   Exits 0 when that holds, 1 otherwise.

Sampling. Each sample is asv's calibrated one (calls per sample chosen to last >= 10 ms; see ``_asv_common``). What
limits the comparison on the shared VMs is not the samples within a process but episodes in which the whole machine
runs 1.4-2x slower for a second or more, on the thread's CPU clock too: the 20 samples of one asv round (~0.3 s) agree
with each other to a few per cent, while rounds of the same benchmark and commit differ by up to 2x (seen in the
saved samples of a run with ``-a rounds=10 -a repeat=20``). asv runs all benchmarks of one commit, then of the other,
within a round, so an episode lands on one commit; with 10 rounds the median of a commit depends on how many rounds
an episode hit. Many short rounds average that out: ``-a rounds=30 -a repeat=5`` puts 150 samples from 30 separate
processes per benchmark and commit into the median asv compares. asv flags a benchmark when its median ratio passes
``--factor`` and a Mann-Whitney test says the samples differ; ``--factor 1.15`` (about the square root of 1.3)
leaves the same margin on both sides.

Measured on the 2-core machine with nothing else running: with ``rounds=30, repeat=5`` (one run, 606 s) the slowed
eval forward 1.37, eRMSNorm's train step 1.17 (flagged; it calls the slowed forward), every unrelated benchmark
0.96-1.06, none flagged. With ``rounds=10, repeat=20`` (two runs) the slowed eval forward measured 0.99 and 1.42,
and five and then two unrelated benchmarks were flagged (ratios 0.65-1.58): too few rounds. (Before asv's samples
were calibrated, each sample was one call, and ``rounds=10, repeat=200`` passed four runs on a loaded machine.)
No ``taskset``: the samples are the thread's CPU time, so waiting for a core is already left out.

asv builds one virtualenv in the clone (about a minute; the wheels come from pip's cache or find-links), then runs
every benchmark at both commits in interleaved rounds (about 10 minutes in all for the twelve benchmarks).
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

# Regression demo (a throwaway commit): eRMSNorm.forward computes its output, then busy-waits until the thread's
# CPU clock has advanced {slowdown} times what the computation took.
import time as _demo_time  # noqa: E402

_demo_forward = eRMSNorm.forward


def _demo_slowed_forward(self, x):
    start = _demo_time.thread_time()
    out = _demo_forward(self, x)
    until = start + {slowdown} * (_demo_time.thread_time() - start)
    while _demo_time.thread_time() < until:
        pass
    return out


eRMSNorm.forward = _demo_slowed_forward
"""
#: The benchmarks run at both commits (asv --bench regular expressions over ``name(param, ...)``).
SUBSET = [
    r"bench_norms\.Norm\.time_eval_forward\('(torch|equivariant)', '\w+', 'D8', 64, 256, 'cpu'\)",
    r"bench_norms\.Norm\.time_train_step\('equivariant', '(rmsnorm|layernorm)', 'D8', 64, 256, 'cpu'\)",
    r"bench_linear\.Linear\.time_eval_forward\('(torch|isotypic_expansion/cached)', 'D8', 64, 256, 'cpu'\)",
    r"bench_attention\.Attention\.time_eval_forward\('(torch|isotypic_expansion/cached)', 'C8', 64, 32, 'cpu'\)",
]
#: The benchmark the slowdown must be flagged in, and every benchmark that calls eRMSNorm.forward.
SLOWED = re.compile(r"^bench_norms\.Norm\.time_eval_forward\('equivariant', 'rmsnorm',")
RELATED = re.compile(r"^bench_norms\.Norm\.time_\w+\('equivariant', 'rmsnorm',")
#: Fewer compared benchmarks than this means asv skipped or failed some of the subset.
MIN_ROWS = 10
ROW = re.compile(r"^\|\s*([-+!x* ]?)\s*\|[^|]*\|[^|]*\|\s*(\S*)\s*\|\s*(\S.*?)\s*\|$")


def sh(cmd: list[str], cwd: Path, log: list[str]) -> subprocess.CompletedProcess:
    """Run ``cmd``, keep its command line and output in ``log``."""
    shown = ["python" if part == sys.executable else part for part in cmd]  # no machine paths in the log
    log.append("$ " + " ".join(shown))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def git(clone: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=regression demo", "-c", "user.email=demo@localhost", *args]
    return subprocess.run(cmd, cwd=clone, capture_output=True, text=True, check=True).stdout.strip()


def make_clone(workdir: Path, slowdown: float) -> tuple[Path, str, str]:
    """Clone ``HEAD`` into ``workdir`` and commit the slowdown; returns the clone, base and slowed hashes."""
    clone = workdir / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    base = git(clone, "rev-parse", "HEAD")
    target = clone / TARGET
    if "class eRMSNorm(" not in target.read_text():
        sys.exit(f"regression_demo: {TARGET} defines no eRMSNorm")
    with open(target, "a") as f:
        f.write(PATCH.format(slowdown=slowdown))
    git(clone, "commit", "-q", "-am", f"Regression demo: eRMSNorm.forward {slowdown}x slower")
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
    if len(rows) < MIN_ROWS:
        problems.append(f"only {len(rows)} benchmarks compared")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slowdown", type=float, default=1.3, help="eRMSNorm.forward costs this many times its CPU time")
    p.add_argument("--factor", type=float, default=1.15, help="asv continuous --factor (default 1.15; asv's is 1.1)")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds per commit (asv attribute rounds)")
    p.add_argument("--repeat", type=int, default=5, help="calibrated samples per round (asv attribute repeat)")
    p.add_argument("--log", type=Path, help="also write the report (commands, asv's table, verdict) here")
    p.add_argument("--keep", action="store_true", help="keep the temporary clone and print its path")
    args = p.parse_args(argv)
    if args.slowdown <= 1:
        p.error(f"--slowdown must be above 1 (a slowdown), got {args.slowdown}")
    if args.rounds < 1 or args.repeat < 1:
        p.error("--rounds and --repeat must be at least 1")
    start, log = time.perf_counter(), []
    workdir = Path(tempfile.mkdtemp(prefix="symm_regression_demo_"))
    try:
        clone, base, slowed = make_clone(workdir, args.slowdown)
        what = f"slowed commit {slowed[:12]} ({args.slowdown}x eRMSNorm.forward)"
        log.append(f"clone of this repository at {base[:12]}; {what}")
        asv = [sys.executable, "-m", "asv"]
        if not Path(os.path.expanduser("~/.asv-machine.json")).exists():
            sh([*asv, "machine", "--yes"], clone, log)
        bench = [arg for regex in SUBSET for arg in ("--bench", regex)]
        options = ["--no-only-changed", "--factor", str(args.factor), "-a", f"rounds={args.rounds}",
                   "-a", f"repeat={args.repeat}"]  # fmt: skip
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
