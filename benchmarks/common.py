"""What the standalone benchmark scripts share: groups, interleaved timing, logging and the run's provenance.

Used by ``linear_family.py`` and ``layer_family.py``; the asv suites take ``regular_rep`` from here too. Defines no
names asv would collect (no ``time_*``, ``mem_*``, ``peakmem_*``, ``track_*``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
GROUP_ORDERS = {"C8": 8, "D8": 16, "ico": 60}
T0 = time.perf_counter()


class TimingBudget(Protocol):
    round_s: float  # time spent on one implementation in one round
    blocks: int  # blocks per round; the round's value is the median of its blocks' mean call times


class RunConfig(Protocol):
    profile: str
    out: Path
    groups: tuple[str, ...]
    device: str
    dtype: str

    def command(self) -> str: ...


#: ``--dtype`` -> the tensors' dtype; ``tf32`` is float32 tensors with TF32 matmuls and convolutions allowed.
DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass(frozen=True)
class Placement:
    """Where and in which precision a benchmark runs: moves modules and tensors, synchronises the device."""

    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {sorted(DTYPES)}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but torch sees no CUDA device; use --device cpu")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def apply_precision(self) -> None:
        """Allow TF32 matmuls and convolutions for ``dtype="tf32"`` and forbid them otherwise (torch's default)."""
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.dtype == "tf32"

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, self.torch_dtype)

    def module(self, m: torch.nn.Module) -> torch.nn.Module:
        return m.to(self.device, self.torch_dtype)

    def sync(self) -> None:
        """Wait for the device's queued work (a no-op on the CPU): timers must read the clock after it."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def describe(self) -> str:
        """The hardware the timed calls run on, as table headers print it."""
        if self.device.startswith("cuda"):
            return f"GPU {torch.cuda.get_device_name(torch.device(self.device))} ({self.device})"
        return "CPU"


def base_parser(doc: str | None, profiles: dict, default: RunConfig, quick_note: str) -> argparse.ArgumentParser:
    """The options every script has: ``--profile``, ``--out``, ``--from-raw``, ``--groups``, ``--device``,
    ``--dtype``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(profiles), default=default.profile, help=f"quick: {quick_note}")
    p.add_argument("--out", type=Path, default=default.out, help="output directory (default %(default)s)")
    p.add_argument("--from-raw", action="store_true", help="only re-render table.md from raw.csv and meta.json")
    p.add_argument("--groups", nargs="+", choices=list(GROUP_ORDERS), default=list(default.groups))
    p.add_argument("--device", default=default.device, help="cpu (default) or cuda[:N]")
    p.add_argument("--dtype", choices=list(DTYPES), default=default.dtype,
                   help="tensor dtype; tf32 = float32 with TF32 matmuls allowed (default %(default)s)")  # fmt: skip
    return p


def command_line(script: str, cfg: RunConfig, flags: tuple[str, ...]) -> str:
    """The command that regenerates ``cfg``'s outputs; the given flags are named where not default."""
    cmd = f"python benchmarks/{script} --profile {cfg.profile} --out {display_path(cfg.out)}"
    for flag in (*flags, "device", "dtype"):
        value = getattr(cfg, flag)
        if value != getattr(type(cfg), flag):
            cmd += f" --{flag} " + (" ".join(map(str, value)) if isinstance(value, tuple | list) else str(value))
    return cmd


def display_path(path: Path | str) -> str:
    """``path`` relative to the repository when it lies inside it, else its last two parts: never a machine path
    in a published header."""
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else f".../{path.name}"


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


@functools.cache
def build_group(name: str):
    """The escnn group named in ``GROUP_ORDERS`` (``"C8"``, ``"D8"`` or ``"ico"``), built once per process."""
    import escnn.group as eg

    return {"C8": lambda: eg.cyclic_group(8), "D8": lambda: eg.dihedral_group(8), "ico": eg.ico_group}[name]()


@functools.cache
def regular_rep(group: str, features: int):
    """``n = max(1, round(features / |G|))`` copies of the regular representation (one object per argument pair).

    Shared by the standalone scripts and the asv suites (``_asv_common`` re-exports it).
    """
    from escnn.group import directsum

    G = build_group(group)
    copies = max(1, round(features / G.order()))
    return directsum([G.regular_representation] * copies, name=f"{copies}x_regular")


# ----------------------------------------------------------------------------------------------- timing
def _no_sync() -> None:
    pass


#: ``--timer`` -> (clock, description for table headers). ``thread`` counts only the calling thread's CPU time: with
#: one torch thread every CPU op (the backward too) runs on it, and time the process spends waiting for a core
#: while other processes run is left out, so ratios are far steadier on a loaded machine. It misses work on other
#: threads and on a GPU, so ``auto`` takes it only on the CPU with one torch thread and the wall clock otherwise.
CLOCKS: dict[str, tuple[Callable[[], float], str]] = {
    "thread": (time.thread_time, "CPU time of the calling thread (time.thread_time)"),
    "process": (time.process_time, "CPU time of the process, all threads (time.process_time)"),
    "wall": (time.perf_counter, "wall clock (time.perf_counter)"),
}
TIMERS = ("auto", *CLOCKS)


def resolve_timer(timer: str, device: str = "cpu", threads: int = 1) -> str:
    """The clock ``--timer`` means for a run: ``auto`` is ``thread`` on the CPU with one torch thread, else ``wall``."""
    if timer == "auto":
        return "thread" if device == "cpu" and threads == 1 else "wall"
    if timer not in CLOCKS:
        raise ValueError(f"unknown timer {timer!r}; choose one of {', '.join(TIMERS)}")
    if timer != "wall" and not device.startswith("cpu"):
        raise ValueError(f"timer {timer!r} measures CPU time and misses GPU work; use --timer wall on {device}")
    return timer


def block_mean(fn: Callable[[], object], number: int, sync: Callable[[], None] = _no_sync,
               clock: Callable[[], float] = time.perf_counter) -> float:  # fmt: skip
    """Mean seconds per call over ``number`` calls; ``sync`` waits for the device before each clock reading."""
    sync()
    start = clock()
    for _ in range(number):
        fn()
    sync()
    return (clock() - start) / number


def seconds_per_call(fn: Callable[[], object], sync: Callable[[], None] = _no_sync,
                     clock: Callable[[], float] = time.perf_counter) -> float:  # fmt: skip
    """Warm up once, then estimate one call's duration with blocks doubling up to >= 5 ms (or 4096 calls)."""
    fn()
    number = 1
    while (per_call := block_mean(fn, number, sync, clock)) * number < 0.005 and number < 4096:
        number *= 2
    return max(per_call, 1e-9)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, budget: TimingBudget,
                sync: Callable[[], None] = _no_sync,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:  # fmt: skip
    """Seconds per call of every implementation, one sample per round.

    Within a round the implementations alternate block by block (in an order rotated every round), so slow drifts
    of the machine hit all of them alike; a round's sample is the median of its block means, the statistic asv and
    ``torch.utils.benchmark`` report. (The fastest block, used until December 2026, picks the machine's fast spells:
    on the shared VMs, whose speed changes by 1.4-1.7x for seconds at a time, it sat 1.2-1.4x below asv's median of
    the same cell in back-to-back runs, while asv and a plain median of 10 ms blocks in a fresh process scattered
    around each other without an offset; ``agreement.py`` compares the two harnesses.) On a GPU, ``sync``
    (``Placement.sync``) makes each block include its queued kernels. ``clock`` reads the time (see :data:`CLOCKS`).
    """
    per_call = {k: seconds_per_call(fn, sync, clock) for k, fn in fns.items()}
    blocks = {k: max(1, min(budget.blocks, int(budget.round_s / t))) for k, t in per_call.items()}
    number = {k: max(1, round(budget.round_s / (blocks[k] * t))) for k, t in per_call.items()}
    keys, samples = list(fns), {k: [] for k in fns}
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order, means = keys[r % len(keys) :] + keys[: r % len(keys)], {k: [] for k in keys}
            for b in range(budget.blocks):
                for k in order:
                    if b < blocks[k]:
                        means[k].append(block_mean(fns[k], number[k], sync, clock))
            for k in keys:
                samples[k].append(statistics.median(means[k]))
    finally:
        gc.enable()
    return samples


def relative_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


# ----------------------------------------------------------------------------------------------- provenance
#: What results depend on: tracked files outside ``results/`` except documentation (``*.md``); the same pathspec
#: as ``ablations.sweep.CODE_PATHSPEC`` (committing results, the README or a note keeps the commit of a run).
CODE_PATHSPEC = ("--", ".", ":!results", ":!*.md")


def run_commit() -> str:
    """The newest commit that changed code (:data:`CODE_PATHSPEC`), marked ``" + uncommitted changes"`` when
    tracked files there differ from it.

    Without a git checkout (a copied working tree, e.g. on a GPU machine) it is ``$SYMM_COMMIT`` when set (the
    caller's ``git rev-parse HEAD``), else ``"unknown"``.
    """
    try:
        git = {"cwd": REPO, "capture_output": True, "text": True, "check": True}
        commit = subprocess.run(["git", "rev-list", "-1", "HEAD", *CODE_PATHSPEC], **git).stdout.strip()
        status = ["git", "status", "--porcelain", "--untracked-files=no", *CODE_PATHSPEC]
        if subprocess.run(status, **git).stdout.strip():
            commit += " + uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("SYMM_COMMIT", "unknown")
    return commit


START_COMMIT = run_commit()


def collect_meta(cfg: RunConfig, budget: Any, wall_s: float, cpu_share: float) -> dict:
    """Date, versions, machine, device and precision, commit (marked when tracked files differ from it) and the
    run, for ``meta.json``. No machine paths: ``out`` is relative to the repository.

    ``budget`` is the profile's dataclass; ``cpu_share`` is process CPU time over wall time while measuring.
    """
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    commit = START_COMMIT  # the code this process imported, not what the tree holds when the run ends
    try:
        escnn = importlib.metadata.version("escnn")
    except importlib.metadata.PackageNotFoundError:
        escnn = "unknown"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "escnn": escnn,
        "python": sys.version.split()[0],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": cfg.device,
        "hardware": Placement(cfg.device, cfg.dtype).describe(),
        "dtype": cfg.dtype,
        "cuda": torch.version.cuda if cfg.device.startswith("cuda") else None,
        "commit": commit,
        "profile": cfg.profile,
        "budget": asdict(budget),
        "command": cfg.command(),
        "out": display_path(cfg.out),
        "wall_s": round(wall_s, 1),
        "cpu_share": round(cpu_share, 3),
    }


def page(header: str, meta: dict, sections: list[str], failures: list[str], checked: bool = True) -> str:
    """``table.md``: ``header`` filled from ``meta`` and the verdict line (failing targets first), then the sections.

    ``checked=False``: the targets were not checked (they are CPU float32 targets), and the verdict says so.
    """
    verdict = ("**Failing targets:** " + "; ".join(failures)) if failures else "**All targets met.**"
    if not checked:
        verdict = "**Targets not checked:** they are CPU float32 targets; this run measured another device or dtype."
    if meta.get("partial"):
        verdict = "**Partial run:** it was cut short; only the cells below were measured.\n\n" + verdict
    meta = {"hardware": "CPU", "dtype": "float32", "timer": CLOCKS["wall"][1], **meta}  # runs saved before the options
    return header.format(verdict=verdict, **meta) + "\n".join(sections)


def save_run(out: Path, rows: list[dict], meta: dict) -> None:
    """Write ``raw.csv`` (long form, one row per measurement) and ``meta.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "raw.csv", index=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if not meta.get("partial"):
        log(f"measured in {meta['wall_s']} s")
