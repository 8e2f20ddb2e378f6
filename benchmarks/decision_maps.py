"""Decision maps: which strategy, when, for every choice the library offers, over size (CPU, float32).

    python benchmarks/decision_maps.py --profile quick --out results-quick/decision_maps   # measure, render
    python benchmarks/decision_maps.py --from-raw --out results/decision_maps             # re-render only

Axes (:data:`AXES`; a new value of an axis is one entry there): the basis expansion of eLinear (``auto`` and every
registered strategy), its weight cache, the affine of eRMSNorm/eLayerNorm (isotypic or diagonal) and the feature
layout (``spatial``, ``spectral``; a layer without ``layout`` is measured spatially). Over feature size D, rows
per call, representations (whole copies of the regular representation of C8, D8 and ico, and ``D8-irreps``, a sum of
irreps that is not a permutation representation), train (forward+backward, the input requiring grad) and eval
(``no_grad``), 1 and 2 torch threads. In each cell every candidate, the plain-torch twin (the baseline) and a second,
separately built copy of the twin (the control) are timed interleaved in this one process
(``common.interleaved``); a candidate's ratio is the median over rounds of its time over the baseline's in the same
round, and the control's deviation from 1 shows the noise. A combination a strategy refuses (orbit_gather or the
diagonal affine on a non-permutation representation, a dense basis over the size limit) is recorded as refused with
the library's reason. Cells are built by ``cases.py``, shared with the asv suites.

Writes ``raw.csv`` (one row per candidate and cell) and ``meta.json`` as it goes (a run cut short resumes: finished
blocks of the same profile and commit are kept), then ``table.md`` and one heatmap per axis
(``decision_advice.py``, which also gives the guide its recommendations). A standalone script, not an asv suite.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

if __package__:  # imported as part of the benchmarks folder (asv discovery, tests)
    from . import cases, common, decision_advice
else:  # run as a script: benchmarks/ is sys.path[0]
    import cases
    import common
    import decision_advice

MODES = ("train", "eval")
LAYERS = {"linear": "eLinear", "rmsnorm": "eRMSNorm", "layernorm": "eLayerNorm"}


@dataclass(frozen=True)
class Axis:
    """One choice the library offers.

    Attributes:
        layers: the layers (keys of :data:`LAYERS`) it is measured on.
        values: candidate name -> keyword arguments of the layer that select it.
        implicit: the value a layer has when it does not take the keyword (measured without it).
        aliases: candidates that resolve to another candidate (``auto``): shown, never counted as a winner.
    """

    layers: tuple[str, ...]
    values: Mapping[str, Mapping[str, object]]
    implicit: str | None = None
    aliases: tuple[str, ...] = ()


def _basis_values() -> dict[str, dict[str, object]]:
    from symm_layers.basis import BASIS_STRATEGIES

    return {name: {"basis_expansion_scheme": name} for name in ("auto", *BASIS_STRATEGIES)}


#: axis -> its candidates. Values are keyword arguments, so a new strategy or layout is one entry here.
AXES: dict[str, Axis] = {
    "basis_expansion": Axis(("linear",), {}, aliases=("auto",)),  # values: every registered strategy (filled below)
    "weight_cache": Axis(("linear",), {"cached": {"weight_cache": "cached"}, "uncached": {"weight_cache": "uncached"}}),
    "norm_affine": Axis(cases.AFFINE_NORMS, {"isotypic": {"affine": "isotypic"}, "diagonal": {"affine": "diagonal"}}),
    "layout": Axis(
        ("linear", *cases.AFFINE_NORMS),
        {"spatial": {"layout": "spatial"}, "spectral": {"layout": "spectral"}},
        implicit="spatial",
    ),  # fmt: skip
}


@dataclass(frozen=True)
class Profile:
    groups: tuple[str, ...]
    dims: tuple[int, ...]  # target feature sizes D
    rows: tuple[int, ...]  # rows per call
    threads: tuple[int, ...]
    rounds: int  # interleaved rounds per cell
    round_s: float  # time on one candidate per round
    blocks: int  # blocks per round (a round's sample is the median block)
    max_basis_mib: int  # dense basis stacks (memory_heavy, reference) above this are refused
    axes: tuple[str, ...] = tuple(AXES)
    modes: tuple[str, ...] = MODES
    max_work: int = 0  # rows * D^2 above this is not measured (0: no cap); one such call takes > ~0.1 s here


ALL_REPS = cases.REP_NAMES
#: smoke: does it run (tests); quick: coarse grid at one torch thread, <= 5 min on 2 cores (make results; two
#: threads on a shared 2-core machine time the scheduler more than the code); full: the published grid.
PROFILES = {
    "smoke": Profile(("C8", "D8-irreps"), (64,), (8,), (1,), 2, 0.002, 2, 64, ("basis_expansion", "norm_affine")),
    "quick": Profile(ALL_REPS, (64, 512), (8, 512), (1,), 5, 0.008, 3, 256),
    # 432 cells x 31 timed modules: ~1 h on 2 cores. The corner rows * D^2 > 2^30 (D = 1024 with 4096 rows, D = 2048
    # with 512 or more) is left out: there one train call of a dense layer takes ~0.1-0.5 s and the axes' answers
    # are already settled at the neighbouring cells.
    "full": Profile(
        ALL_REPS, (64, 128, 256, 512, 1024, 2048), (1, 8, 64, 512, 4096), (1, 2), 5, 0.02, 3, 1024, max_work=2**30
    ),  # fmt: skip
}
RAW_KEYS = ["axis", "layer", "group", "D_target"]  # one measured block: resumable unit


@dataclass
class Config:
    profile: str = "quick"
    out: Path = Path("results/decision_maps")
    from_raw: bool = False
    axes: tuple[str, ...] = ()  # empty: the profile's
    groups: tuple[str, ...] = ()
    dims: tuple[int, ...] = ()
    rows: tuple[int, ...] = ()
    threads: tuple[int, ...] = ()
    timer: str = "auto"
    device: str = "cpu"
    dtype: str = "float32"
    grid: Profile = field(init=False)

    def __post_init__(self) -> None:
        base = PROFILES[self.profile]
        override = {k: getattr(self, k) for k in ("axes", "groups", "dims", "rows", "threads") if getattr(self, k)}
        self.grid = Profile(**{**asdict(base), **override})

    def command(self) -> str:
        cmd = f"python benchmarks/decision_maps.py --profile {self.profile} --out {common.display_path(self.out)}"
        for name in ("axes", "groups", "dims", "rows", "threads"):
            if getattr(self, name):
                cmd += f" --{name} " + " ".join(map(str, getattr(self, name)))
        return cmd + (f" --timer {self.timer}" if self.timer != "auto" else "")


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=list(PROFILES), default="quick", help="quick: <= 5 min on 2 cores")
    p.add_argument("--out", type=Path, default=Config.out, help="output directory (default %(default)s)")
    p.add_argument("--from-raw", action="store_true", help="only re-render table.md and figures from raw.csv")
    p.add_argument("--axes", nargs="+", choices=list(AXES), default=[])
    p.add_argument("--groups", nargs="+", choices=list(ALL_REPS), default=[])
    p.add_argument("--dims", nargs="+", type=int, default=[], help="target feature sizes D")
    p.add_argument("--rows", nargs="+", type=int, default=[], help="rows per call")
    p.add_argument("--threads", nargs="+", type=int, default=[], help="torch threads")
    p.add_argument("--timer", choices=common.TIMERS, default="auto",
                   help="auto: thread CPU time at 1 torch thread, wall clock at more")  # fmt: skip
    a = p.parse_args(argv)
    return Config(a.profile, a.out, a.from_raw, tuple(a.axes), tuple(a.groups), tuple(a.dims), tuple(a.rows),
                  tuple(a.threads), a.timer)  # fmt: skip


# ----------------------------------------------------------------------------------------------- candidates
def axis_values(name: str) -> Mapping[str, Mapping[str, object]]:
    return _basis_values() if name == "basis_expansion" else AXES[name].values


def layer_class(layer: str) -> type:
    import symm_layers

    return getattr(symm_layers, LAYERS[layer])


def candidates(name: str, layer: str) -> tuple[dict[str, dict], dict[str, str]]:
    """``(value -> keyword arguments, value -> why it cannot be measured)`` for one axis on one layer."""
    axis, cls, usable, missing = AXES[name], layer_class(layer), {}, {}
    for value, options in axis_values(name).items():
        absent = cases.unsupported_options(cls, options)
        if absent and value == axis.implicit:
            usable[value] = {k: v for k, v in options.items() if k not in absent}
        elif absent:
            missing[value] = f"{cls.__name__} takes no {', '.join(absent)} at this commit"
        else:
            usable[value] = dict(options)
    return usable, missing


def subject(layer: str, impl: str, group: str, d_target: int, options: Mapping[str, object], limit: int):
    if layer == "linear":
        if impl == cases.PLAIN:
            return cases.linear(cases.PLAIN, group, d_target)
        return cases.linear("elinear", group, d_target, max_basis_bytes=limit, **options)
    return cases.norm(impl, layer, group, d_target, **options)


# ----------------------------------------------------------------------------------------------- measuring
def measure_block(cfg: Config, name: str, layer: str, group: str, d_target: int, usable: dict) -> list[dict]:
    """Every (rows, threads, mode) cell of one axis, layer, representation and D, as long-form rows."""
    grid, limit = cfg.grid, cfg.grid.max_basis_mib * 2**20
    specs = {"baseline": (cases.PLAIN, {}), "control": (cases.PLAIN, {})}
    specs.update({v: ("equivariant", o) for v, o in usable.items()})
    subjects, modules, notes, refused = {}, {}, {}, {}
    for key, (impl, options) in specs.items():
        torch.manual_seed(cases.SEED)
        try:
            subjects[key] = subject(layer, impl, group, d_target, options, limit)
            modules[key] = subjects[key].construct()
        except ValueError as err:  # the strategy refuses this representation or size, and says why
            refused[key] = str(err).split("; ")[0]
            continue
        resolved = getattr(getattr(modules[key], "basis", None), "basis_expansion", None)
        if key in AXES[name].aliases and resolved:
            notes[key] = f"resolved to {resolved}"
    d = subjects["baseline"].rep.size
    base = {"axis": name, "layer": layer, "group": group, "D_target": d_target, "D": d}
    out = []
    for rows in grid.rows:
        if grid.max_work and rows * d * d > grid.max_work:
            common.log(f"[{name} {layer} {group} D={d} rows={rows}] over the grid's work cap: not measured")
            continue
        timed = {k: s.case(rows, module=modules[k]) for k, s in subjects.items() if k in modules}
        for threads in grid.threads:
            torch.set_num_threads(threads)
            clock = common.resolve_timer(cfg.timer, "cpu", threads)
            for mode in grid.modes:
                fns = {}
                for k, case in timed.items():
                    case.module.train(mode == "train")
                    fns[k] = case.train_step if mode == "train" else case.eval_forward
                samples = common.interleaved(fns, grid.rounds, grid, clock=common.CLOCKS[clock][0])
                cell = {**base, "rows": rows, "threads": threads, "mode": mode, "timer": clock}
                for k in specs:
                    role = k if k in ("baseline", "control") else "candidate"
                    row = {**cell, "candidate": k, "role": role, "rounds": grid.rounds, "note": notes.get(k, "")}
                    if k in refused:
                        out.append({**row, "status": "refused", "note": refused[k]})
                        continue
                    paired = [t / b for t, b in zip(samples[k], samples["baseline"], strict=True)]
                    q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
                    out.append({**row, "status": "ok", "seconds": statistics.median(samples[k]),
                                "ratio": statistics.median(paired), "ratio_q25": q[0], "ratio_q75": q[2]})  # fmt: skip
                shown = " ".join(f"{r['candidate']}={r['ratio']:.2f}" for r in out[-len(specs) :] if "ratio" in r)
                common.log(f"[{name} {layer} {group} D={d} rows={rows} {threads}t {mode}] {shown}")
    torch.set_num_threads(1)
    return out


def load_finished(cfg: Config, commit: str) -> list[dict]:
    """Rows of an earlier run of the same profile, grid and commit that was cut short (resumed), else none."""
    meta_path, raw_path = cfg.out / "meta.json", cfg.out / "raw.csv"
    if not (meta_path.exists() and raw_path.exists()):
        return []
    import json

    meta = json.loads(meta_path.read_text())
    same = meta.get("partial") and meta.get("commit") == commit and "uncommitted" not in commit
    if not same or meta.get("grid") != asdict(cfg.grid) or meta.get("timer_option") != cfg.timer:
        return []
    rows = pd.read_csv(raw_path, keep_default_na=False).to_dict("records")
    common.log(f"resuming: {len({tuple(r[k] for k in RAW_KEYS) for r in rows})} finished blocks kept")
    return rows


def measure(cfg: Config) -> None:
    grid, start, cpu_start = cfg.grid, time.perf_counter(), time.process_time()
    commit = common.run_commit()
    rows = load_finished(cfg, commit)
    done = {tuple(str(r[k]) for k in RAW_KEYS) for r in rows}
    skipped, blocks = [], []
    for name in grid.axes:
        for layer in AXES[name].layers:
            usable, missing = candidates(name, layer)
            skipped += [{"axis": name, "layer": layer, "candidate": v, "why": why} for v, why in missing.items()]
            if len(usable) < 2:
                common.log(f"[{name} {layer}] only {', '.join(usable)} available: nothing to decide, not measured")
                continue
            blocks += [(name, layer, group, d_target, usable) for group in grid.groups for d_target in grid.dims
                       if (name, layer, group, str(d_target)) not in done]  # fmt: skip
    for index, (name, layer, group, d_target, usable) in enumerate(blocks, 1):
        common.log(f"({index}/{len(blocks)}) {name} {layer} {group} D~{d_target}")
        rows += measure_block(cfg, name, layer, group, d_target, usable)
        gc.collect()
        save(cfg, rows, skipped, start, cpu_start, commit, partial=True)
    save(cfg, rows, skipped, start, cpu_start, commit, partial=False)


def save(cfg: Config, rows: list[dict], skipped: list[dict], start: float, cpu_start: float, commit: str,
         partial: bool) -> None:  # fmt: skip
    wall = time.perf_counter() - start
    meta = common.collect_meta(cfg, cfg.grid, wall, (time.process_time() - cpu_start) / max(wall, 1e-9))
    timers = {t: common.CLOCKS[common.resolve_timer(cfg.timer, "cpu", t)][1] for t in cfg.grid.threads}
    meta.update(commit=commit, grid=asdict(cfg.grid), timer_option=cfg.timer, not_measured=skipped,
                timers={str(t): v for t, v in timers.items()}, partial=partial)  # fmt: skip
    meta.pop("budget", None)
    common.save_run(cfg.out, rows, meta)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    if str(common.REPO) not in sys.path:
        sys.path.insert(0, str(common.REPO))
    if not cfg.from_raw:
        common.log(f"profile {cfg.profile}: {cfg.grid}")
        measure(cfg)
    written = decision_advice.render(cfg.out)
    common.log("wrote " + ", ".join(common.display_path(p) for p in written))


if __name__ == "__main__":
    main()
