"""The eLinear family against ``torch.nn.Linear`` on CPU (1 thread, float32), written to a results table.

    python benchmarks/linear_family.py --profile quick --out results/linear_family   # measure, write all outputs
    python benchmarks/linear_family.py --from-raw --out results/linear_family        # re-render table.md only

Per group x feature size D x batch B: train forward+backward, eval forward (no_grad, cached weight), resident
bytes (parameters + buffers) and cold construction time; plus the construction time and peak memory of the
memory_heavy basis for D8 at D~256, in a fresh subprocess. Baseline and candidates are timed interleaved, round
by round in rotating order; each reports its median over rounds. ``table.md`` is rendered from ``raw.csv`` and
``meta.json`` only. A standalone script, not an asv suite: it defines no names asv would collect.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
GROUP_ORDERS = {"C8": 8, "D8": 16, "ico": 60}
BASELINE = "nn.Linear"
IMPLS = {  # key -> (basis_expansion_scheme, weight_cache, column label)
    "iso_cached": ("isotypic_expansion", "cached", "isotypic (cached)"),
    "iso_uncached": ("isotypic_expansion", "uncached", "isotypic (uncached)"),
    "mh_cached": ("memory_heavy", "cached", "memory_heavy (cached)"),
}
METRICS = {  # metric -> (unit, section title)
    "train_fwd_bwd": ("ms", "Train forward+backward, ratio to nn.Linear"),
    "eval_fwd": ("ms", "Eval forward (eval mode, no_grad), ratio to nn.Linear"),
    "resident": ("bytes", "Resident memory (parameters + buffers), ratio to nn.Linear"),
    "construction": ("s", "Construction time (cold caches), seconds"),
}
# Speed targets are checked on the default eLinear; memory and construction on isotypic in both cache modes.
TARGET_IMPLS = {"train_fwd_bwd": ("iso_cached",), "eval_fwd": ("iso_cached",),
                "resident": ("iso_cached", "iso_uncached"), "construction": ("iso_cached", "iso_uncached")}
PROBE = ("D8", 256)  # memory_heavy construction probe: group, D_target; targets <= 3 s and peak <= 1.3x the basis
PROBE_MAX_S, PROBE_MAX_PEAK = 3.0, 1.3


@dataclass(frozen=True)
class Budget:
    rounds: int  # interleaved rounds per (cell, metric); every implementation is timed once per round
    stable_rounds: int  # rounds for the eval cells with the 1.03x target (D >= 256, B = 256)
    round_s: float  # time spent on one implementation in one round
    blocks: int  # blocks per round; the round's value is the median of the blocks' mean call times


PROFILES = {"quick": Budget(5, 11, 0.05, 5), "full": Budget(11, 31, 0.2, 7)}


@dataclass
class Config:
    profile: str = "quick"
    out: Path = Path("results/linear_family")
    from_raw: bool = False
    groups: tuple[str, ...] = ("C8", "D8", "ico")
    dims: tuple[int, ...] = (64, 256, 1024)
    batches: tuple[int, ...] = (8, 256)
    probe: str | None = None  # internal: "GROUP:D" builds one memory_heavy layer and prints JSON

    def command(self) -> str:
        cmd = f"python benchmarks/linear_family.py --profile {self.profile} --out {self.out}"
        for flag in ("groups", "dims", "batches"):
            if getattr(self, flag) != getattr(Config, flag):
                cmd += f" --{flag} " + " ".join(map(str, getattr(self, flag)))
        return cmd


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default=Config.profile, help="quick: <= 6 min on 2 cores")
    p.add_argument("--out", type=Path, default=Config.out, help="output directory (default %(default)s)")
    p.add_argument("--from-raw", action="store_true", help="only re-render table.md from raw.csv and meta.json")
    p.add_argument("--groups", nargs="+", choices=list(GROUP_ORDERS), default=list(Config.groups))
    p.add_argument("--dims", nargs="+", type=int, default=list(Config.dims), help="target feature sizes D")
    p.add_argument("--batches", nargs="+", type=int, default=list(Config.batches))
    p.add_argument("--probe", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    return Config(a.profile, a.out, a.from_raw, tuple(a.groups), tuple(a.dims), tuple(a.batches), a.probe)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- building
def regular_rep(group: str, d_target: int):
    """``n`` copies of the regular representation, ``n = max(1, round(D_target / |G|))``."""
    import escnn.group as eg
    from escnn.group import directsum

    G = {"C8": lambda: eg.cyclic_group(8), "D8": lambda: eg.dihedral_group(8), "ico": eg.ico_group}[group]()
    return directsum([G.regular_representation] * max(1, round(d_target / G.order())))


def build(impl: str, rep) -> nn.Module:
    """Build one implementation from cold: memoised decompositions and Hom spaces are forgotten first."""
    if impl == BASELINE:
        return nn.Linear(rep.size, rep.size)
    import symm_layers.basis.space as space
    import symm_layers.reps as reps
    from symm_layers import eLinear

    for memo in (getattr(reps, "_decompose", None), getattr(space, "_hom_space", None)):
        if hasattr(memo, "cache_clear"):
            memo.cache_clear()
    scheme, cache, _ = IMPLS[impl]
    return eLinear(rep, rep, basis_expansion_scheme=scheme, weight_cache=cache)


def resident_bytes(m: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in itertools.chain(m.parameters(), m.buffers()))


def available_ram_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def run_probe(spec: str) -> None:
    """Subprocess body: build one memory_heavy eLinear, print its construction time and peak memory as JSON."""
    from symm_layers import eLinear

    group, d_target = spec.split(":")
    torch.set_num_threads(1)
    rep = regular_rep(group, int(d_target))
    gc.collect()
    with open("/proc/self/statm") as f:
        rss_before = int(f.read().split()[1]) * resource.getpagesize()
    start = time.perf_counter()
    layer = eLinear(rep, rep, basis_expansion_scheme="memory_heavy")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before  # ru_maxrss: KiB on Linux
    print(json.dumps({"D": rep.size, "seconds": seconds, "peak": peak, "basis": layer.basis.dim * rep.size**2 * 4}))


# ----------------------------------------------------------------------------------------------- timing
def seconds_per_call(fn: Callable[[], object]) -> float:
    """Warm up once, then estimate one call's duration with a doubling loop (>= 5 ms or 4096 calls)."""
    fn()
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > 0.005 or number >= 4096:
            return elapsed / number
        number *= 2


def one_round(fn: Callable[[], object], per_call: float, budget: Budget) -> float:
    """Seconds per call in one round: the median over blocks of the mean call time in each block."""
    blocks = max(1, min(budget.blocks, int(budget.round_s / per_call)))
    number = max(1, round(budget.round_s / (blocks * per_call)))
    means = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(blocks):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            means.append((time.perf_counter() - start) / number)
    finally:
        gc.enable()
    return statistics.median(means)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, budget: Budget) -> dict[str, list[float]]:
    """Time every implementation once per round, rotating the order so that none always runs first."""
    per_call = {k: seconds_per_call(fn) for k, fn in fns.items()}
    keys, samples = list(fns), {k: [] for k in fns}
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            samples[k].append(one_round(fns[k], per_call[k], budget))
    return samples


def train_step(m: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        m.zero_grad(set_to_none=True)
        m(x).backward(grad)

    return step


def eval_forward(m: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def forward() -> torch.Tensor:
        with torch.no_grad():
            return m(x)

    return forward


def relative_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


# ----------------------------------------------------------------------------------------------- measuring
def measure_cell(cfg: Config, group: str, d_target: int) -> list[dict]:
    """Every metric of one (group, D) for every implementation, as long-form rows."""
    rep = regular_rep(group, d_target)
    d, rows, modules, notes = rep.size, [], {}, {}
    static: dict[str, dict[str, float]] = {"construction": {}, "resident": {}}

    def add(batch: int | str, impl: str, metric: str, value, baseline, rounds: int = 1, spread: float = 0.0):
        rows.append({"group": group, "group_order": GROUP_ORDERS[group], "D_target": d_target, "D": d,
                     "B": str(batch), "implementation": impl, "metric": metric, "value": value,
                     "unit": METRICS[metric][0], "baseline": baseline, "rounds": rounds, "spread": spread,
                     "note": notes.get(impl, "")})

    for impl in [BASELINE, *IMPLS]:
        if impl == "mh_cached":  # the stack is dim x D x D floats; never start a build that cannot fit in RAM
            stack = modules["iso_cached"].basis.dim * d * d * 4
            if stack * 1.3 > available_ram_bytes():
                notes[impl] = "skipped (not enough free RAM)"
                continue
        torch.manual_seed(0)
        start = time.perf_counter()
        try:
            modules[impl] = build(impl, rep)
        except ValueError as err:
            if "over the limit" not in str(err):
                raise
            notes[impl] = "refused (over limit)"
            continue
        static["construction"][impl] = time.perf_counter() - start
        static["resident"][impl] = resident_bytes(modules[impl])
    for metric, values in static.items():
        for impl in [BASELINE, *IMPLS]:
            add("-", impl, metric, values.get(impl), values[BASELINE])
    log(f"[{group} D={d}] built {', '.join(modules)} " + " ".join(f"({k}: {v})" for k, v in notes.items()))

    for batch in cfg.batches:
        gen = torch.Generator().manual_seed(batch)
        x, grad = torch.randn(batch, d, generator=gen), torch.randn(batch, d, generator=gen)
        for metric in ("train_fwd_bwd", "eval_fwd"):
            training = metric == "train_fwd_bwd"
            fns = {}
            for k, m in modules.items():
                m.train(training)
                fns[k] = train_step(m, x, grad) if training else eval_forward(m, x)
            stable = not training and d_target >= 256 and batch == 256
            budget = PROFILES[cfg.profile]
            rounds = budget.stable_rounds if stable else budget.rounds
            samples = interleaved(fns, rounds, budget)
            ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
            for impl in [BASELINE, *IMPLS]:
                add(batch, impl, metric, ms.get(impl), ms[BASELINE], rounds, relative_iqr(samples.get(impl, [])))
            ratios = " ".join(f"{k}={v / ms[BASELINE]:.3f}x" for k, v in ms.items() if k != BASELINE)
            log(f"[{group} D={d} B={batch}] {metric}: {BASELINE} {ms[BASELINE]:.4f} ms; {ratios}")
    return rows


def measure_probe() -> list[dict]:
    """Run the memory_heavy construction probe in a fresh interpreter (clean ru_maxrss)."""
    group, d_target = PROBE
    cmd = [sys.executable, "-W", "ignore", str(Path(__file__).resolve()), "--probe", f"{group}:{d_target}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        log(f"[probe] failed:\n{proc.stderr[-2000:]}")
        return []
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"[probe {group} D={res['D']}] {res['seconds']:.2f} s, peak {res['peak'] / res['basis']:.2f}x the basis")
    base = {"group": group, "group_order": GROUP_ORDERS[group], "D_target": d_target, "D": res["D"], "B": "-",
            "implementation": "mh_cached", "baseline": None, "rounds": 1, "spread": 0.0, "note": "fresh subprocess"}
    return [{**base, "metric": f"probe_{key}", "value": res[key], "unit": "s" if key == "seconds" else "bytes"}
            for key in ("seconds", "peak", "basis")]


def collect_meta(cfg: Config, wall_s: float) -> dict:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    try:
        git = ["git", "rev-parse", "HEAD"]
        commit = subprocess.run(git, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        escnn = importlib.metadata.version("escnn")
    except importlib.metadata.PackageNotFoundError:
        escnn = "unknown"
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "escnn": escnn, "python": sys.version.split()[0], "cpu": cpu,
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "commit": commit, "profile": cfg.profile,
            "budget": asdict(PROFILES[cfg.profile]), "command": cfg.command(), "out": str(cfg.out),
            "wall_s": round(wall_s, 1)}


# ----------------------------------------------------------------------------------------------- rendering
def target_for(metric: str, d_target: int, batch: str) -> float | None:
    """A ratio to nn.Linear (seconds for construction), or None where the cell has no target."""
    if metric == "train_fwd_bwd" and d_target >= 1024:
        return 1.3 if batch == "256" else 3.0
    if metric == "eval_fwd":
        return 1.03 if d_target >= 256 and batch != "8" else 1.3
    if metric == "resident" and d_target >= 256:
        return 1.3
    if metric == "construction" and d_target >= 1024:
        return 1.0
    return None


def metric_table(raw: pd.DataFrame, metric: str, failures: list[str]) -> pd.DataFrame:
    """Rows (group, D[, B]), one column per implementation, with the verdict on the target."""
    unit, suffix = (" s", "") if metric == "construction" else ("×", "×")
    data = raw[raw.metric == metric].assign(b_num=lambda t: pd.to_numeric(t.B, errors="coerce").fillna(0))
    out = []
    for _, cell in data.groupby(["group_order", "D", "b_num"], sort=True):
        vals = cell.set_index("implementation")
        base, batch = vals.loc[BASELINE, "value"], cell.B.iloc[0]
        r = {"group": cell.group.iloc[0], "D": int(cell.D.iloc[0])}
        if batch != "-":
            r["B"] = int(batch)
        r[BASELINE] = {"ms": f"{base:.4f} ms", "bytes": f"{base / 1024:.1f} KiB", "s": f"{base:.4f}"}[
            METRICS[metric][0]]
        ratios = {}
        for k, (_, _, label) in IMPLS.items():
            if pd.isna(vals.loc[k, "value"]):
                r[label] = str(vals.loc[k, "note"]).split(" (")[0] if pd.notna(vals.loc[k, "note"]) else "—"
                continue
            ratios[k] = vals.loc[k, "value"] / (1.0 if metric == "construction" else base)
            r[label] = f"{ratios[k]:.3f}{suffix}"
        if metric in ("train_fwd_bwd", "eval_fwd"):
            r["noise (IQR)"] = f"{100 * max(vals.loc[BASELINE, 'spread'], vals.loc['iso_cached', 'spread']):.1f}%"
        target = target_for(metric, int(cell.D_target.iloc[0]), batch)
        r["target"], r["verdict"] = ("—", "—") if target is None else (f"≤ {target:g}{unit}", "pass")
        if target is not None and max(ratios[k] for k in TARGET_IMPLS[metric]) > target:
            worst = max(ratios[k] for k in TARGET_IMPLS[metric])
            r["verdict"] = "FAIL"
            where = f"{r['group']} D={r['D']}" + (f" B={r['B']}" if "B" in r else "")
            failures.append(f"{metric} {where}: {worst:.3f}{unit} (target ≤ {target:g}{unit})")
        out.append(r)
    return pd.DataFrame(out)


def probe_table(raw: pd.DataFrame, failures: list[str]) -> pd.DataFrame | None:
    p = raw[raw.metric.str.startswith("probe_")].set_index("metric")
    if p.empty:
        return None
    secs, peak, basis = (float(p.loc[f"probe_{k}", "value"]) for k in ("seconds", "peak", "basis"))
    where = f"{p.group.iloc[0]} D={int(p.D.iloc[0])}"
    if secs > PROBE_MAX_S:
        failures.append(f"memory_heavy construction {where}: {secs:.2f} s (target ≤ {PROBE_MAX_S:g} s)")
    if peak / basis > PROBE_MAX_PEAK:
        failures.append(f"memory_heavy construction peak {where}: {peak / basis:.2f}× the basis "
                        f"(target ≤ {PROBE_MAX_PEAK:g}×)")
    ok = secs <= PROBE_MAX_S and peak / basis <= PROBE_MAX_PEAK
    return pd.DataFrame([{"group": p.group.iloc[0], "D": int(p.D.iloc[0]), "seconds": f"{secs:.2f}",
                          "peak RSS growth": f"{peak / 2**20:.0f} MiB", "basis stack": f"{basis / 2**20:.0f} MiB",
                          "peak / basis": f"{peak / basis:.2f}×", "target": f"≤ {PROBE_MAX_S:g} s, ≤ "
                          f"{PROBE_MAX_PEAK:g}×", "verdict": "pass" if ok else "FAIL"}])


def render(out: Path) -> str:
    raw = pd.read_csv(out / "raw.csv", dtype={"B": str, "note": str})
    meta = json.loads((out / "meta.json").read_text())
    failures: list[str] = []
    sections = [f"## {METRICS[m][1]}\n\n{metric_table(raw, m, failures).to_markdown(index=False)}\n" for m in METRICS]
    probe = probe_table(raw, failures)
    if probe is not None:
        sections.append(f"## memory_heavy construction (fresh subprocess)\n\n{probe.to_markdown(index=False)}\n")
    return "\n".join([
        "# eLinear family vs torch.nn.Linear", "",
        ("**Failing targets:** " + "; ".join(failures)) if failures else "**All targets met.**", "",
        f"- machine: {meta['cpu']} ({meta['cores']} cores), CPU, {meta['threads']} torch thread(s), float32",
        f"- torch {meta['torch']}, escnn {meta['escnn']}, python {meta['python']}; commit `{meta['commit']}`",
        f"- date {meta['date']}; profile `{meta['profile']}` {meta['budget']}; measured in {meta['wall_s']} s",
        f"- regenerate: `{meta['command']}`; re-render this table only: "
        f"`python benchmarks/linear_family.py --from-raw --out {meta['out']}`",
        "- timing: nn.Linear and the candidates are timed in interleaved rounds (rotating order); each reports its "
        "median over rounds and ratio = candidate median / nn.Linear median. Noise = the larger relative IQR over "
        "rounds of nn.Linear and isotypic (cached). Train = `zero_grad; m(x).backward(g)` with a fixed random g.",
        "- speed targets are checked on the default eLinear (isotypic, cached); memory and construction on isotypic "
        "in both cache modes. refused = memory_heavy basis over its 2 GiB limit.", "", *sections])


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if cfg.probe:
        return run_probe(cfg.probe)
    if not cfg.from_raw:
        torch.set_num_threads(1)
        start, rows = time.perf_counter(), []
        for group in cfg.groups:
            for d_target in cfg.dims:
                rows += measure_cell(cfg, group, d_target)
                gc.collect()
        rows += measure_probe()
        cfg.out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(cfg.out / "raw.csv", index=False)
        meta = collect_meta(cfg, time.perf_counter() - start)
        (cfg.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"measured in {meta['wall_s']} s")
    (cfg.out / "table.md").write_text(render(cfg.out))
    log(f"wrote {cfg.out / 'table.md'}")


if __name__ == "__main__":
    main()
