"""The eLinear family and escnn.nn.Linear against ``torch.nn.Linear`` (CPU, 1 thread, float32 by default), written to
a results table.

    python benchmarks/linear_family.py --profile quick --out results/linear_family   # measure, write all outputs
    python benchmarks/linear_family.py --from-raw --out results/linear_family        # re-render table.md only
    python benchmarks/linear_family.py --device cuda --dtype bfloat16 --profile short --out results/gpu/...

Per group x feature size D x batch B: train forward+backward (the input requires grad), eval forward (no_grad,
cached weight), resident bytes (parameters + buffers) and cold construction time, for eLinear under every basis
expansion (``auto``, the default, as resolved per representation pair; ``orbit_gather``; ``isotypic_expansion``
cached and uncached; ``memory_heavy``) and the peer ``escnn.nn.Linear``; plus the construction time and peak memory of
the memory_heavy basis for D8 at D~256, in a fresh subprocess (CPU, float32 only). The cells are defined once in
``cases.py`` (shared with the asv suite ``bench_linear.Linear``). Baseline and candidates are timed interleaved,
round by round in rotating order; each reports its median over rounds (on a GPU every timed block ends with a device
synchronisation); ``--timer`` picks the clock (default: CPU time of the calling thread on the CPU). The targets
are CPU targets: checked for ``--device cpu --dtype float32`` only.
``table.md`` is rendered from ``raw.csv`` and ``meta.json`` only. A standalone script, not an asv suite: it defines
no names asv would collect.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

if __package__:  # imported as part of the benchmarks folder (asv discovery)
    from . import cases, common
else:  # run as a script: benchmarks/ is sys.path[0]
    import cases
    import common

BASELINE = cases.PLAIN
#: candidate key (``cases.LINEAR_IMPLS``, the asv suite's ``impl`` values) -> column label
IMPLS = {k: label for k, label in cases.LINEAR_IMPLS.items() if k != BASELINE}
DEFAULT, PEER = "auto/cached", cases.PEER
#: implementation keys of runs saved before cases.py (re-rendered with --from-raw)
OLD_KEYS = {"nn.Linear": BASELINE, "iso_cached": "isotypic_expansion/cached",
            "iso_uncached": "isotypic_expansion/uncached", "mh_cached": "memory_heavy/cached"}  # fmt: skip
METRICS = {  # metric -> (unit, section title)
    "train_fwd_bwd": ("ms", "Train forward+backward, ratio to nn.Linear"),
    "eval_fwd": ("ms", "Eval forward (eval mode, no_grad), ratio to nn.Linear"),
    "resident": ("bytes", "Resident memory (parameters + buffers), ratio to nn.Linear"),
    "construction": ("s", "Construction time (cold caches), seconds"),
}
# Speed targets are checked on the default eLinear; memory and construction on isotypic in both cache modes.
TARGET_IMPLS = {
    "train_fwd_bwd": (DEFAULT,),
    "eval_fwd": (DEFAULT,),
    "resident": ("isotypic_expansion/cached", "isotypic_expansion/uncached"),
    "construction": ("isotypic_expansion/cached", "isotypic_expansion/uncached"),
}
PROBE = ("D8", 256)  # memory_heavy construction probe: group, D_target; targets <= 3 s and peak <= 1.3x the basis
PROBE_MAX_S, PROBE_MAX_PEAK = 3.0, 1.3


@dataclass(frozen=True)
class Budget:
    rounds: int  # interleaved rounds per (cell, metric); every implementation is timed once per round
    stable_rounds: int  # rounds for the eval cells with the 1.03x target (D >= 256, B = 256)
    round_s: float  # time spent on one implementation in one round
    blocks: int  # blocks per round; the round's value is the median of its blocks' mean call times
    probe_runs: int  # fresh subprocesses for the memory_heavy construction probe (median reported)


#: short: a time-boxed run (the one-shot GPU script); smoke: does it run at all (CI), no meaningful figures.
PROFILES = {
    "quick": Budget(5, 9, 0.03, 5, 3),
    "full": Budget(11, 31, 0.2, 7, 5),
    "short": Budget(5, 7, 0.02, 3, 0),
    "smoke": Budget(2, 2, 0.002, 2, 0),
}


@dataclass
class Config:
    profile: str = "quick"
    out: Path = Path("results/linear_family")
    from_raw: bool = False
    groups: tuple[str, ...] = ("C8", "D8", "ico")
    dims: tuple[int, ...] = (64, 128, 256, 1024)
    batches: tuple[int, ...] = (8, 256)
    probe: str | None = None  # internal: "GROUP:D" builds one memory_heavy layer and prints JSON
    device: str = "cpu"
    dtype: str = "float32"
    timer: str = "auto"

    @property
    def placement(self) -> common.Placement:
        return common.Placement(self.device, self.dtype)

    @property
    def clock(self) -> str:
        """The resolved ``timer`` (one torch thread): a key of ``common.CLOCKS``."""
        return common.resolve_timer(self.timer, self.device, 1)

    @property
    def checks_targets(self) -> bool:
        """The targets are CPU float32 targets."""
        return self.device == "cpu" and self.dtype == "float32"

    def command(self) -> str:
        return common.command_line("linear_family.py", self, ("groups", "dims", "batches", "timer"))


def parse_args(argv: list[str] | None = None) -> Config:
    p = common.base_parser(__doc__, PROFILES, Config, "<= 6 min on 2 cores")
    p.add_argument("--dims", nargs="+", type=int, default=list(Config.dims), help="target feature sizes D")
    p.add_argument("--batches", nargs="+", type=int, default=list(Config.batches))
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--timer", choices=common.TIMERS, default=Config.timer,
                   help="clock of the timed blocks; auto: thread CPU time on the CPU, wall clock on a GPU")  # fmt: skip
    a = p.parse_args(argv)
    return Config(a.profile, a.out, a.from_raw, tuple(a.groups), tuple(a.dims), tuple(a.batches), a.probe, a.device,
                  a.dtype, a.timer)  # fmt: skip


# ----------------------------------------------------------------------------------------------- building
def build(impl: str, group: str, d_target: int, place: common.Placement) -> nn.Module:
    """Build one implementation from cold: symm_layers' memoised decompositions and Hom spaces are forgotten first
    (escnn's own caches are not)."""
    cases.clear_layer_memos()
    subject = cases.linear(impl, group, d_target, device=place.device, dtype=place.torch_dtype)
    return subject.construct()


def resident_bytes(m: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in itertools.chain(m.parameters(), m.buffers()))


def proc_bytes(path: str, field: str) -> int:
    """A ``field: N kB`` line of a /proc file, in bytes."""
    with open(path) as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def run_probe(spec: str) -> None:
    """Subprocess body: build one memory_heavy eLinear, print its construction time and peak memory as JSON.

    A one-copy layer is built first, so that one-time costs (lazy imports, first-use paging of torch's kernels)
    are not counted as construction. ``peak_ru_maxrss`` is ru_maxrss after minus RSS before; Linux carries the
    parent's peak RSS into ru_maxrss across fork+exec, so ``peak`` (used for the verdict) is taken from this
    process's own high-water mark VmHWM instead, reset just before the build where the kernel allows it.
    """
    from symm_layers import eLinear

    group, d_target = spec.split(":")
    torch.set_num_threads(1)
    small = common.regular_rep(group, 1)
    eLinear(small, small, basis_expansion_scheme="memory_heavy")
    rep = common.regular_rep(group, int(d_target))
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    rss_before = proc_bytes("/proc/self/status", "VmRSS")
    start = time.perf_counter()
    layer = eLinear(rep, rep, basis_expansion_scheme="memory_heavy")
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "D": rep.size,
                "seconds": seconds,
                "peak": proc_bytes("/proc/self/status", "VmHWM") - rss_before,
                "peak_ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before,
                "basis": layer.basis.dim * rep.size**2 * 4,
            }
        )
    )


# ----------------------------------------------------------------------------------------------- measuring
def measure_cell(cfg: Config, group: str, d_target: int) -> list[dict]:
    """Every metric of one (group, D) for every implementation, as long-form rows."""
    from symm_layers.basis import DEFAULT_MAX_BASIS_BYTES

    rep, place = common.regular_rep(group, d_target), cfg.placement
    d, rows, modules, notes = rep.size, [], {}, {}
    static: dict[str, dict[str, float]] = {"construction": {}, "resident": {}}

    def add(batch: int | str, impl: str, metric: str, value, baseline, rounds: int = 1, spread: float = 0.0):
        rows.append(
            {
                "group": group,
                "group_order": common.GROUP_ORDERS[group],
                "D_target": d_target,
                "D": d,
                "B": str(batch),
                "implementation": impl,
                "metric": metric,
                "value": value,
                "unit": METRICS[metric][0],
                "baseline": baseline,
                "rounds": rounds,
                "spread": spread,
                "note": notes.get(impl, ""),
            }
        )

    for impl in [BASELINE, *IMPLS]:
        if impl == "memory_heavy/cached":  # a stack of dim x D x D floats: never start a build over free RAM
            stack = modules[DEFAULT].basis.dim * d * d * 4
            free = proc_bytes("/proc/meminfo", "MemAvailable")
            if place.device.startswith("cuda"):
                free = min(free, torch.cuda.mem_get_info(torch.device(place.device))[0])
            if stack <= DEFAULT_MAX_BASIS_BYTES and stack * 1.3 > free:
                notes[impl] = "skipped (not enough free RAM)"
                continue
        torch.manual_seed(0)
        start = time.perf_counter()
        try:
            modules[impl] = place.module(build(impl, group, d_target, place))
            place.sync()
        except ValueError as err:  # a strategy that refuses this representation or size says why
            notes[impl] = "refused (over limit)" if "over the limit" in str(err) else f"refused ({err})"
            continue
        if impl == DEFAULT:
            notes[impl] = f"resolved to {modules[impl].basis.basis_expansion}"
        static["construction"][impl] = time.perf_counter() - start
        static["resident"][impl] = resident_bytes(modules[impl])
    for metric, values in static.items():
        for impl in [BASELINE, *IMPLS]:
            add("-", impl, metric, values.get(impl), values[BASELINE])
    common.log(f"[{group} D={d}] built {', '.join(modules)} " + " ".join(f"({k}: {v})" for k, v in notes.items()))

    clock = common.CLOCKS[cfg.clock][0]
    for batch in cfg.batches:
        timed = {}
        for k, m in modules.items():
            subject = cases.linear(k, group, d_target, device=place.device, dtype=place.torch_dtype)
            timed[k] = subject.case(batch, device=place.device, dtype=place.torch_dtype, module=m)
        for metric in ("train_fwd_bwd", "eval_fwd"):
            training = metric == "train_fwd_bwd"
            fns = {}
            for k, case in timed.items():
                case.module.train(training)
                fns[k] = case.train_step if training else case.eval_forward
            stable = not training and d_target >= 256 and batch == 256
            budget = PROFILES[cfg.profile]
            rounds = budget.stable_rounds if stable else budget.rounds
            samples = common.interleaved(fns, rounds, budget, place.sync, clock)
            ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
            for impl in [BASELINE, *IMPLS]:  # spread: of the baseline's samples, of a candidate's per-round ratios
                paired = [t / b for t, b in zip(samples.get(impl, []), samples[BASELINE], strict=False)]
                spread = common.relative_iqr(samples[BASELINE] if impl == BASELINE else paired)
                add(batch, impl, metric, ms.get(impl), ms[BASELINE], rounds, spread)
            ratios = " ".join(f"{k}={v / ms[BASELINE]:.3f}x" for k, v in ms.items() if k != BASELINE)
            common.log(f"[{group} D={d} B={batch}] {metric}: {BASELINE} {ms[BASELINE]:.4f} ms; {ratios}")
    return rows


def measure_probe(runs: int) -> list[dict]:
    """The memory_heavy construction probe, each run in a fresh interpreter; medians over runs."""
    if runs == 0:
        return []
    group, d_target = PROBE
    cmd = [sys.executable, "-W", "ignore", str(Path(__file__).resolve()), "--probe", f"{group}:{d_target}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(common.REPO), os.environ.get("PYTHONPATH")]))}
    results = []
    for _ in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode != 0:
            common.log(f"[probe] failed:\n{proc.stderr[-2000:]}")
            return []
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        common.log(
            f"[probe {group} D={results[-1]['D']}] {results[-1]['seconds']:.2f} s, "
            f"peak {results[-1]['peak'] / results[-1]['basis']:.2f}x the basis"
        )
    base = {
        "group": group,
        "group_order": common.GROUP_ORDERS[group],
        "D_target": d_target,
        "D": results[0]["D"],
        "B": "-",
        "implementation": "memory_heavy/cached",
        "baseline": None,
        "rounds": runs,
        "note": "fresh subprocess",
    }
    return [
        {
            **base,
            "metric": f"probe_{key}",
            "value": statistics.median(r[key] for r in results),
            "unit": "s" if key == "seconds" else "bytes",
            "spread": common.relative_iqr([r[key] for r in results]),
        }
        for key in ("seconds", "peak", "peak_ru_maxrss", "basis")
    ]


# ----------------------------------------------------------------------------------------------- rendering
HEADER = """# eLinear family and escnn.nn.Linear vs torch.nn.Linear

{verdict}

- machine: {cpu} ({cores} cores), {hardware}, {threads} torch thread(s), {dtype}
- torch {torch}, escnn {escnn}, python {python}; commit `{commit}`
- date {date}; profile `{profile}` {budget}; measured in {wall_s} s, CPU share {cpu_share:.0%}
- regenerate: `{command}`; re-render this table only: `python benchmarks/linear_family.py --from-raw --out {out}`
- timer: {timer}
- timing: nn.Linear and the candidates alternate block by block in interleaved rounds (order rotated every round);
  a round's sample is its median block; each implementation reports its median over rounds, and ratio =
  candidate median / nn.Linear median. CPU share = process CPU time / wall time over the grid (below ~95%: other
  processes competed for the cores; the thread CPU-time timer leaves their share out, the wall clock does not).
  Ratio IQR = relative interquartile range of the per-round ratios of the default eLinear (`auto`): the noise of its
  ratio. Train = `zero_grad(set_to_none=True)`, input `.grad` cleared, `m(x).backward(g)` with a fixed random g and
  the input requiring grad; eval = `m.eval()`, `torch.no_grad()`. Cells are defined once in `benchmarks/cases.py`.
- columns: eLinear under each basis expansion (`auto` is the default, resolved per representation pair: the
  strategy it chose is in raw.csv's note), escnn.nn.Linear (escnn {escnn}, `FieldType` of regular representations
  over `no_base_space(G)`, inputs wrapped in `GeometricTensor`), all as ratios to nn.Linear from the same rounds;
  `auto / escnn` = eLinear auto's median over escnn's (below 1: ahead of escnn).
- speed targets (CPU, float32 only) are checked on the default eLinear (`auto`, cached); memory and construction on
  isotypic in both cache modes. refused = memory_heavy basis over its 2 GiB limit; skipped = not enough free RAM to
  build it.

"""


def target_for(metric: str, d_target: int, batch: str) -> float | None:
    """A ratio to nn.Linear (seconds for construction), or None where the cell has no target.

    Training: issue 9's targets (B=256: <= 1.5x, B=8: <= 2x at D = 64 ... 256; <= 0.5x at D = 1024, B=256) and the
    earlier <= 3x at D = 1024, B=8; eval: <= 1.1x at D = 64, B=8, <= 1.03x at D >= 256 with B=256, else <= 1.3x.
    """
    if metric == "train_fwd_bwd":
        if d_target >= 1024:
            return 0.5 if batch == "256" else 3.0
        return 1.5 if batch == "256" else 2.0
    if metric == "eval_fwd":
        if d_target <= 64 and batch == "8":
            return 1.1
        return 1.03 if d_target >= 256 and batch != "8" else 1.3
    if metric == "resident" and d_target >= 256:
        return 1.3
    if metric == "construction" and d_target >= 1024:
        return 1.0
    return None


def metric_table(raw: pd.DataFrame, metric: str, failures: list[str], check: bool = True) -> pd.DataFrame:
    """Rows (group, D[, B]), one column per implementation, with the verdict on the target."""
    unit, suffix = (" s", "") if metric == "construction" else ("×", "×")
    data = raw[raw.metric == metric].assign(b_num=lambda t: pd.to_numeric(t.B, errors="coerce").fillna(0))
    data = data.assign(implementation=data.implementation.replace(OLD_KEYS))
    out = []
    for _, cell in data.groupby(["group_order", "D", "b_num"], sort=True):
        vals = cell.set_index("implementation")
        base, batch = vals.loc[BASELINE, "value"], cell.B.iloc[0]
        r = {"group": cell.group.iloc[0], "D": int(cell.D.iloc[0])}
        if batch != "-":
            r["B"] = int(batch)
        r[cases.LINEAR_IMPLS[BASELINE]] = {
            "ms": f"{base:.4f} ms",
            "bytes": f"{base / 1024:.1f} KiB",
            "s": f"{base:.4f}",
        }[METRICS[metric][0]]
        ratios = {}
        for k, label in IMPLS.items():
            if k not in vals.index:  # a run saved before this implementation was measured
                continue
            if pd.isna(vals.loc[k, "value"]):
                r[label] = str(vals.loc[k, "note"]).split(" (")[0] if pd.notna(vals.loc[k, "note"]) else "—"
                continue
            ratios[k] = vals.loc[k, "value"] / (1.0 if metric == "construction" else base)
            r[label] = f"{ratios[k]:.3f}{suffix}"
        if metric in ("train_fwd_bwd", "eval_fwd"):
            if DEFAULT in ratios and PEER in ratios:
                r["auto / escnn"] = f"{ratios[DEFAULT] / ratios[PEER]:.3f}×"
                peer_cell = metric == "train_fwd_bwd" and int(cell.D_target.iloc[0]) <= 256 and check
                if peer_cell and ratios[DEFAULT] >= ratios[PEER]:  # issue 9: faster than escnn in these cells
                    failures.append(f"train {r['group']} D={r['D']} B={batch}: auto is not faster than escnn")
            noted = DEFAULT if DEFAULT in ratios else "isotypic_expansion/cached"
            r["ratio IQR"] = f"{100 * vals.loc[noted, 'spread']:.1f}%" if noted in ratios else "—"
        target = target_for(metric, int(cell.D_target.iloc[0]), batch) if check else None
        r["target"], r["verdict"] = ("—", "—") if target is None else (f"≤ {target:g}{unit}", "pass")
        checked = [ratios[k] for k in TARGET_IMPLS[metric] if k in ratios]
        if metric in ("train_fwd_bwd", "eval_fwd") and DEFAULT not in ratios:  # runs saved before "auto" existed
            checked = [ratios[k] for k in ("isotypic_expansion/cached",) if k in ratios]  # the default back then
        if target is not None and not checked:
            r["verdict"] = "not measured"
        elif target is not None and max(checked) > target:
            worst = max(checked)
            r["verdict"] = "FAIL"
            where = f"{r['group']} D={r['D']}" + (f" B={r['B']}" if "B" in r else "")
            failures.append(f"{metric} {where}: {worst:.3f}{unit} (target ≤ {target:g}{unit})")
        out.append(r)
    return pd.DataFrame(out)


def probe_table(raw: pd.DataFrame, failures: list[str]) -> pd.DataFrame | None:
    p = raw[raw.metric.str.startswith("probe_")].set_index("metric").value
    if p.empty:
        return None
    info = raw[raw.metric == "probe_seconds"].iloc[0]
    secs, ratio = p["probe_seconds"], p["probe_peak"] / p["probe_basis"]
    where = f"{info.group} D={info.D}"
    if secs > PROBE_MAX_S:
        failures.append(f"memory_heavy construction {where}: {secs:.2f} s (target ≤ {PROBE_MAX_S:g} s)")
    if ratio > PROBE_MAX_PEAK:
        failures.append(
            f"memory_heavy construction peak {where}: {ratio:.2f}× the basis (target ≤ {PROBE_MAX_PEAK:g}×)"
        )
    ok = secs <= PROBE_MAX_S and ratio <= PROBE_MAX_PEAK
    mib = {k: f"{p[f'probe_{k}'] / 2**20:.0f} MiB" for k in ("peak", "peak_ru_maxrss", "basis")}
    return pd.DataFrame(
        [
            {
                "group": info.group,
                "D": info.D,
                "runs": info.rounds,
                "seconds": f"{secs:.2f} s",
                "peak RSS growth (VmHWM)": mib["peak"],
                "(ru_maxrss)": mib["peak_ru_maxrss"],
                "basis stack": mib["basis"],
                "peak / basis": f"{ratio:.2f}×",
                "target": f"≤ {PROBE_MAX_S:g} s, ≤ {PROBE_MAX_PEAK:g}×",
                "verdict": "pass" if ok else "FAIL",
            }
        ]
    )


def render(out: Path) -> str:
    raw = pd.read_csv(out / "raw.csv", dtype={"B": str, "note": str})
    raw["implementation"] = raw.implementation.replace(OLD_KEYS)
    meta = json.loads((out / "meta.json").read_text())
    failures: list[str] = []
    check = meta.get("device", "cpu") == "cpu" and meta.get("dtype", "float32") == "float32"
    sections = [
        f"## {METRICS[m][1]}\n\n"
        f"{metric_table(raw, m, failures, check).to_markdown(index=False, disable_numparse=True)}\n"
        for m in METRICS
    ]
    probe = probe_table(raw, failures)
    if probe is not None:
        title = (
            "## memory_heavy construction (fresh subprocess per run, medians)\n\nPeak = VmHWM after the build minus "
            "RSS before it. The ru_maxrss-based figure is shown too, but Linux carries the parent's peak RSS into a "
            "child's ru_maxrss across fork+exec, so it overstates the build when the parent is large."
        )
        sections.append(f"{title}\n\n{probe.to_markdown(index=False, disable_numparse=True)}\n")
    return common.page(HEADER, meta, sections, failures, checked=check)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    if str(common.REPO) not in sys.path:
        sys.path.insert(0, str(common.REPO))
    if cfg.probe:
        return run_probe(cfg.probe)
    if not cfg.from_raw:
        torch.set_num_threads(1)
        common.log(f"timer: {common.CLOCKS[cfg.clock][1]}")
        cfg.placement.apply_precision()
        start, cpu_start, rows = time.perf_counter(), time.process_time(), []
        cells = list(itertools.product(cfg.groups, cfg.dims))
        for index, (group, d_target) in enumerate(cells, 1):
            common.log(f"({index}/{len(cells)}) {group} D~{d_target}")
            rows += measure_cell(cfg, group, d_target)
            gc.collect()
            wall = time.perf_counter() - start
            partial = common.collect_meta(cfg, PROFILES[cfg.profile], wall, (time.process_time() - cpu_start) / wall)
            timer = common.CLOCKS[cfg.clock][1]
            common.save_run(cfg.out, rows, {**partial, "timer": timer, "partial": True})  # kept if cut short
        cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - start)  # of the grid, not the probe
        if cfg.checks_targets:  # the probe measures host memory of a CPU float32 build
            rows += measure_probe(PROFILES[cfg.profile].probe_runs)
        meta = common.collect_meta(cfg, PROFILES[cfg.profile], time.perf_counter() - start, cpu_share)
        common.save_run(cfg.out, rows, {**meta, "timer": common.CLOCKS[cfg.clock][1]})
    (cfg.out / "table.md").write_text(render(cfg.out))
    common.log(f"wrote {cfg.out / 'table.md'}")


if __name__ == "__main__":
    main()
