"""Equivariant norms, attention, encoder layer, regressor and MLP against their torch twins (CPU, 1 thread, float32
by default; ``--device cuda``, ``--dtype tf32|bfloat16`` elsewhere).

    python benchmarks/layer_family.py --profile quick --out results/layer_family   # measure, write all outputs
    python benchmarks/layer_family.py --from-raw --out results/layer_family        # re-render table.md only

Every comparison puts equivariant layers next to the torch layer they replace, at the same feature size D, and
times train (forward + backward, the regressor also an AdamW step) and eval (``no_grad``) calls. The torch twin
and the candidates are timed interleaved, round by round in rotating order (``common.interleaved``); each
reports its median over rounds and ratio = candidate median / twin median from the same run. ``table.md`` is
rendered from ``raw.csv`` and ``meta.json`` only. A standalone script, not an asv suite: it defines no names asv
would collect.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from torch import nn

if __package__:  # imported as part of the benchmarks folder (asv discovery)
    from . import common
else:  # run as a script: benchmarks/ is sys.path[0]
    import common

FAMILIES = {  # family -> (section title, groups measured)
    "norm": ("Normalisation: eRMSNorm / eLayerNorm / eBatchNorm vs torch", ("C8", "D8", "ico")),
    "attention": ("Self-attention: eMultiheadAttention vs nn.MultiheadAttention", ("C8", "D8")),
    "encoder": ("Encoder layer: eTransformerEncoderLayer vs nn.TransformerEncoderLayer", ("C8", "D8")),
    "regressor": ("Conditional transformer regressor: equivariant vs plain twin", ("C8",)),
    "mlp": ("MLP: eMLP vs MLP", ("C8",)),
}
MODES = ("train", "eval")
TARGETS = {  # (candidate, metric) -> largest allowed ratio to the torch twin (issue 9's targets where it sets one)
    ("eRMSNorm (spectral layout)", "train"): 1.2,
    ("eRMSNorm (spectral layout)", "eval"): 1.2,
    ("eLayerNorm (spectral layout)", "train"): 1.2,
    ("eLayerNorm (spectral layout)", "eval"): 1.2,
    ("eTransformerEncoderLayer (rmsnorm, spectral layout)", "train"): 1.3,
    ("eTransformerEncoderLayer (rmsnorm, spectral layout)", "eval"): 1.1,
    ("eCondTransformerRegressor (spatial layout)", "train"): 1.2,
    ("eCondTransformerRegressor, embedding 512", "train"): 1.0,
    ("eRMSNorm", "train"): 2.0,
    ("eRMSNorm", "eval"): 2.0,
    ("eLayerNorm", "train"): 2.0,
    ("eLayerNorm", "eval"): 2.0,
    ("eMultiheadAttention", "train"): 1.5,
    ("eMultiheadAttention", "eval"): 1.1,
    ("eTransformerEncoderLayer (rmsnorm)", "train"): 1.3,
    ("eTransformerEncoderLayer (rmsnorm)", "eval"): 1.1,
    ("eTransformerEncoderLayer (layernorm)", "train"): 1.3,
    ("eTransformerEncoderLayer (layernorm)", "eval"): 1.1,
    ("eCondTransformerRegressor", "train"): 1.2,
    ("eRMSNorm (diagonal affine)", "train"): 2.0,
    ("eRMSNorm (diagonal affine)", "eval"): 2.0,
    ("eLayerNorm (diagonal affine)", "train"): 3.0,
    ("eLayerNorm (diagonal affine)", "eval"): 3.0,
    ("eTransformerEncoderLayer (rmsnorm, diagonal affine)", "train"): 1.5,
    ("eTransformerEncoderLayer (rmsnorm, diagonal affine)", "eval"): 1.1,
    ("eTransformerEncoderLayer (layernorm, diagonal affine)", "train"): 1.5,
    ("eTransformerEncoderLayer (layernorm, diagonal affine)", "eval"): 1.1,
    ("eCondTransformerRegressor (diagonal affine)", "train"): 1.3,
}
SETUP = {  # sizes, saved in meta.json; D values are targets, met with round(D / |G|) regular copies
    "norm": {"tokens": 256, "D": 256},
    "seq": {"batch": 32, "tokens": 16, "D": 128, "heads": 4},  # attention and encoder layer
    "regressor": {
        "batch": 32,
        "in_horizon": 16,
        "cond_horizon": 4,
        "features": 16,
        "layers": 2,
        "heads": 4,
        "width": 128,
    },  # fmt: skip
    "mlp": {"batch": 256, "in": 64, "hidden": [256, 256], "out": 64},
}
NORM, SEQ, REGRESSOR, MLP_SHAPE = (SETUP[k] for k in ("norm", "seq", "regressor", "mlp"))


@dataclass(frozen=True)
class Budget:
    rounds: int  # interleaved rounds per (comparison, metric); every implementation is timed once per round
    round_s: float  # time spent on one implementation in one round
    blocks: int  # blocks per round; the round's value is the median of its blocks' mean call times


#: short: a time-boxed run (the one-shot GPU script); smoke: does it run at all (CI), no meaningful figures.
PROFILES = {"quick": Budget(7, 0.05, 5), "full": Budget(25, 0.25, 7), "short": Budget(5, 0.03, 3),
            "smoke": Budget(2, 0.002, 2)}  # fmt: skip


@dataclass
class Config:
    profile: str = "quick"
    out: Path = Path("results/layer_family")
    from_raw: bool = False
    families: tuple[str, ...] = tuple(FAMILIES)
    groups: tuple[str, ...] = ("C8", "D8", "ico")
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

    def command(self) -> str:
        return common.command_line("layer_family.py", self, ("families", "groups", "timer"))


def parse_args(argv: list[str] | None = None) -> Config:
    p = common.base_parser(__doc__, PROFILES, Config, "<= 5 min on 2 cores")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(Config.families))
    p.add_argument("--timer", choices=common.TIMERS, default=Config.timer,
                   help="clock of the timed blocks; auto: thread CPU time on the CPU, wall clock on a GPU")  # fmt: skip
    a = p.parse_args(argv)
    return Config(a.profile, a.out, a.from_raw, tuple(a.families), tuple(a.groups), a.device, a.dtype, a.timer)


# ----------------------------------------------------------------------------------------------- calls
@dataclass
class Subject:
    """One implementation in a comparison: a module, its forward on fixed inputs, how a training call ends."""

    module: nn.Module
    forward: Callable[[], torch.Tensor]
    grad: torch.Tensor  # fixed upstream gradient of the output
    leaves: tuple[torch.Tensor, ...] = ()  # inputs that require grad; their .grad is cleared every call
    optimizer: torch.optim.Optimizer | None = None
    note: str = ""


class Comparison(NamedTuple):
    """Implementations of one layer at one size; the first is the torch twin the others are compared with."""

    D: int
    input: str  # the input's shape, as the table shows it
    subjects: dict[str, Subject]


def role(name: str, first: str) -> str:
    return "twin" if name == first else ("diagnostic" if "plain twin" in name else "candidate")


def train_call(s: Subject) -> Callable[[], None]:
    """``zero_grad(set_to_none=True)``, clear the inputs' grads, forward, backward of ``s.grad``, optimizer step."""

    def step() -> None:
        s.module.zero_grad(set_to_none=True)
        for leaf in s.leaves:
            leaf.grad = None
        s.forward().backward(s.grad)
        if s.optimizer is not None:
            s.optimizer.step()

    return step


def eval_call(s: Subject) -> Callable[[], torch.Tensor]:
    """One inference call under ``torch.no_grad()`` (the module is put in eval mode by the caller)."""

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return s.forward()

    return forward


def on_input(place: common.Placement, module: nn.Module, x: torch.Tensor, grad: torch.Tensor,
             attention: bool = False) -> Subject:  # fmt: skip
    """A layer fed its own leaf copy of ``x`` (gradients flow to the input); attention attends ``x`` to itself.

    The module, ``x`` and ``grad`` are moved to ``place``'s device and dtype.
    """
    module, grad = place.module(module), place.tensor(grad)
    leaf = place.tensor(x).detach().clone().requires_grad_(True)
    if attention:  # need_weights=False on both sides: torch's default (True) takes a slower path
        return Subject(module, lambda: module(leaf, leaf, leaf, need_weights=False)[0], grad, (leaf,))
    return Subject(module, lambda: module(leaf), grad, (leaf,))


def seeded(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return build()


# ----------------------------------------------------------------------------------------------- building
def norm_comparisons(group: str, place: common.Placement) -> list[Comparison]:
    """RMS and layer norm on (1, T, D); batch norm against nn.BatchNorm1d on the same tokens as (T, D)."""
    from symm_layers import eBatchNorm, eLayerNorm, eRMSNorm

    rep, tokens = common.regular_rep(group, NORM["D"]), NORM["tokens"]
    d, gen = rep.size, torch.Generator().manual_seed(1)
    x, g = torch.randn(1, tokens, d, generator=gen), torch.randn(1, tokens, d, generator=gen)
    flat, shape = (tokens, d), f"1x{tokens}x{d}"
    return [
        Comparison(
            d,
            shape,
            {
                "nn.RMSNorm": on_input(place, nn.RMSNorm(d), x, g),
                "eRMSNorm": on_input(place, eRMSNorm(rep), x, g),
                "eRMSNorm (diagonal affine)": on_input(place, eRMSNorm(rep, affine="diagonal"), x, g),
                "eRMSNorm (spectral layout)": on_input(place, eRMSNorm(rep, layout="spectral"), x, g),
            },
        ),
        Comparison(
            d,
            shape,
            {
                "nn.LayerNorm": on_input(place, nn.LayerNorm(d), x, g),
                "eLayerNorm": on_input(place, eLayerNorm(rep), x, g),
                "eLayerNorm (diagonal affine)": on_input(place, eLayerNorm(rep, affine="diagonal"), x, g),
                "eLayerNorm (spectral layout)": on_input(place, eLayerNorm(rep, layout="spectral"), x, g),
            },
        ),
        Comparison(
            d,
            shape,
            {
                "nn.BatchNorm1d": on_input(place, nn.BatchNorm1d(d), x.reshape(flat), g.reshape(flat)),
                "eBatchNorm": on_input(place, eBatchNorm(rep), x, g),
            },
        ),
    ]


def sequence_inputs(d: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    gen = torch.Generator().manual_seed(2)
    size = (SEQ["batch"], SEQ["tokens"], d)
    return torch.randn(size, generator=gen), torch.randn(size, generator=gen), "x".join(map(str, size))


def heads_for(rep) -> tuple[int, str]:
    """``SEQ["heads"]`` if it keeps every head a subrepresentation, else the largest valid count below it."""
    from symm_layers.attention import valid_num_heads

    valid = valid_num_heads(rep)
    if SEQ["heads"] in valid:
        return SEQ["heads"], ""
    heads = max(h for h in valid if h <= SEQ["heads"])
    return heads, f"{heads} heads ({SEQ['heads']} would split a component)"


def attention_comparisons(group: str, place: common.Placement) -> list[Comparison]:
    from symm_layers import MultiheadAttention, eMultiheadAttention

    rep = common.regular_rep(group, SEQ["D"])
    (heads, note), d = heads_for(rep), rep.size
    x, g, shape = sequence_inputs(d)
    subjects = {
        "nn.MultiheadAttention": on_input(
            place, seeded(lambda: nn.MultiheadAttention(d, heads, batch_first=True)), x, g, True
        ),
        "eMultiheadAttention": on_input(place, seeded(lambda: eMultiheadAttention(rep, heads)), x, g, True),
        "MultiheadAttention (plain twin)": on_input(place, seeded(lambda: MultiheadAttention(d, heads)), x, g, True),
    }
    for s in subjects.values():
        s.note = note
    return [Comparison(d, shape, subjects)]


def encoder_comparisons(group: str, place: common.Placement) -> list[Comparison]:
    """Pre-norm layers, dim_feedforward = 4D, dropout 0, GELU on both sides (ours' default; torch's is ReLU)."""
    from symm_layers import TransformerEncoderLayer, eMultiheadAttention, eTransformerEncoderLayer

    rep = common.regular_rep(group, SEQ["D"])
    (heads, note), d = heads_for(rep), rep.size
    x, g, shape = sequence_inputs(d)
    options = {"dropout": 0.0, "activation": "gelu", "norm_first": True}

    def torch_layer() -> nn.Module:
        return nn.TransformerEncoderLayer(d, heads, 4 * d, batch_first=True, **options)

    def ours(norm: str, affine: str = "isotypic", layout: str = "spatial") -> nn.Module:
        attn = eMultiheadAttention(rep, heads, layout=layout)
        kw = {"norm_module": norm, "norm_affine": affine, "layout": layout}
        return eTransformerEncoderLayer(rep, attn, 4 * d, **kw, **options)

    subjects = {
        "nn.TransformerEncoderLayer": on_input(place, seeded(torch_layer), x, g),
        "eTransformerEncoderLayer (rmsnorm)": on_input(place, seeded(lambda: ours("rmsnorm")), x, g),
        "eTransformerEncoderLayer (layernorm)": on_input(place, seeded(lambda: ours("layernorm")), x, g),
        "eTransformerEncoderLayer (rmsnorm, spectral layout)": on_input(
            place, seeded(lambda: ours("rmsnorm", layout="spectral")), x, g
        ),
        "eTransformerEncoderLayer (rmsnorm, diagonal affine)": on_input(
            place, seeded(lambda: ours("rmsnorm", "diagonal")), x, g
        ),
        "eTransformerEncoderLayer (layernorm, diagonal affine)": on_input(
            place, seeded(lambda: ours("layernorm", "diagonal")), x, g
        ),
        "TransformerEncoderLayer (layernorm, plain twin)": on_input(
            place, seeded(lambda: TransformerEncoderLayer(d, heads, 4 * d, norm_module="layernorm", **options)), x, g
        ),
    }
    for s in subjects.values():
        s.note = note
    return [Comparison(d, shape, subjects)]


def regressor_comparisons(group: str, place: common.Placement) -> list[Comparison]:
    """Equal embedding width; a training call also runs ``AdamW.step()``, inputs need no gradient."""
    from symm_layers import CondTransformerRegressor, eCondTransformerRegressor

    r = REGRESSOR
    rep = common.regular_rep(group, r["features"])
    f = rep.size
    gen = torch.Generator().manual_seed(3)
    X = place.tensor(torch.randn(r["batch"], r["in_horizon"], f, generator=gen))
    Z = place.tensor(torch.randn(r["batch"], r["cond_horizon"], f, generator=gen))
    steps = place.tensor(torch.randint(0, 100, (r["batch"],), generator=gen).float())
    g = place.tensor(torch.randn(r["batch"], r["in_horizon"], f, generator=gen))
    shared = (r["in_horizon"], r["cond_horizon"], r["layers"], r["heads"], r["width"], 0.0, 0.0)
    wide = (*shared[:4], 4 * r["width"], *shared[5:])
    models = {
        "CondTransformerRegressor": seeded(lambda: CondTransformerRegressor(f, f, f, *shared)),
        "eCondTransformerRegressor": seeded(lambda: eCondTransformerRegressor(rep, rep, rep, *shared)),
        "eCondTransformerRegressor (spatial layout)": seeded(
            lambda: eCondTransformerRegressor(rep, rep, rep, *shared, layout="spatial")
        ),
        "eCondTransformerRegressor (diagonal affine)": seeded(
            lambda: eCondTransformerRegressor(rep, rep, rep, *shared, norm_affine="diagonal")
        ),
    }
    wide_models = {
        "CondTransformerRegressor, embedding 512": seeded(lambda: CondTransformerRegressor(f, f, f, *wide)),
        "eCondTransformerRegressor, embedding 512": seeded(lambda: eCondTransformerRegressor(rep, rep, rep, *wide)),
    }
    shape = f"X {'x'.join(map(str, X.shape))}, Z {'x'.join(map(str, Z.shape))}"
    comparisons = []
    for width, group_models in ((r["width"], models), (wide[4], wide_models)):
        subjects = {}
        for name, m in group_models.items():
            m = place.module(m)
            optimizer = torch.optim.AdamW(m.get_optim_groups(1e-3), lr=1e-4)
            subjects[name] = Subject(m, lambda m=m: m(X, steps, Z), g, optimizer=optimizer)
        comparisons.append(Comparison(width, shape, subjects))
    return comparisons


def mlp_comparisons(group: str, place: common.Placement) -> list[Comparison]:
    from symm_layers import MLP, eMLP

    s = MLP_SHAPE
    in_rep, out_rep = common.regular_rep(group, s["in"]), common.regular_rep(group, s["out"])
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(s["batch"], in_rep.size, generator=gen)
    g = torch.randn(s["batch"], out_rep.size, generator=gen)
    subjects = {
        "MLP": on_input(place, seeded(lambda: MLP(in_rep.size, out_rep.size, list(s["hidden"]))), x, g),
        "eMLP": on_input(place, seeded(lambda: eMLP(in_rep, out_rep, list(s["hidden"]))), x, g),
    }
    return [Comparison(in_rep.size, f"{s['batch']}x{in_rep.size}", subjects)]


BUILDERS = {
    "norm": norm_comparisons,
    "attention": attention_comparisons,
    "encoder": encoder_comparisons,
    "regressor": regressor_comparisons,
    "mlp": mlp_comparisons,
}


# ----------------------------------------------------------------------------------------------- measuring
def measure(cfg: Config, family: str, group: str, comparison: Comparison) -> list[dict]:
    """Train and eval of one comparison, as long-form rows."""
    d, subjects = comparison.D, comparison.subjects
    budget, twin, rows, place = PROFILES[cfg.profile], next(iter(subjects)), [], cfg.placement
    for metric in MODES:
        training = metric == "train"
        for s in subjects.values():
            s.module.train(training)
        fns = {k: train_call(s) if training else eval_call(s) for k, s in subjects.items()}
        samples = common.interleaved(fns, budget.rounds, budget, place.sync, common.CLOCKS[cfg.clock][0])
        ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
        for k, s in subjects.items():  # spread: of the twin's samples, of a candidate's per-round ratios
            paired = [t / b for t, b in zip(samples[k], samples[twin], strict=True)]
            rows.append(
                {
                    "family": family,
                    "group": group,
                    "group_order": common.GROUP_ORDERS[group],
                    "D": d,
                    "input": comparison.input,
                    "comparison": twin,
                    "implementation": k,
                    "role": role(k, twin),
                    "metric": metric,
                    "value": ms[k],
                    "unit": "ms",
                    "baseline": ms[twin],
                    "rounds": budget.rounds,
                    "spread": common.relative_iqr(samples[twin] if k == twin else paired),
                    "params": sum(p.numel() for p in s.module.parameters() if p.requires_grad),
                    "note": s.note,
                }
            )
        ratios = " ".join(f"{k}={v / ms[twin]:.3f}x" for k, v in ms.items() if k != twin)
        common.log(f"[{family} {group} D={d}] {metric}: {twin} {ms[twin]:.4f} ms; {ratios}")
    return rows


# ----------------------------------------------------------------------------------------------- rendering
HEADER = """# Equivariant layers vs their torch twins

{verdict}

- machine: {cpu} ({cores} cores), {hardware}, {threads} torch thread(s), {dtype}
- torch {torch}, escnn {escnn}, python {python}; commit `{commit}`
- date {date}; profile `{profile}` {budget}; measured in {wall_s} s, CPU share {cpu_share:.0%}; timer: {timer}
- regenerate: `{command}`; re-render this table only: `python benchmarks/layer_family.py --from-raw --out {out}`
- timing: the torch twin and the candidates alternate block by block in interleaved rounds (order rotated every
  round); a round's sample is its median block; each implementation reports its median over rounds, and ratio =
  candidate median / twin median from the same run. CPU share = process CPU time / wall time over the measurements
  (below ~95%: other processes competed for the cores, so timings are noisier). Ratio IQR = relative interquartile
  range of the per-round ratios: the noise of the ratio.
- train = `zero_grad(set_to_none=True)`, input `.grad` cleared, forward, `backward(g)` of a fixed random g: the
  gradients reach the input and every parameter (regressor: the parameters only, then `AdamW.step()`); eval =
  `m.eval()`, forward under `torch.no_grad()` (torch's attention and encoder layer take their fused inference path
  there).
- representations: D / |G| copies of the regular representation of C8, D8 or ico (|G| = 8, 16, 60); sizes are in
  `setup` in meta.json, input shapes in the tables.
- norms: each with its (equivariant) affine; eBatchNorm (batch statistics in train, running ones in eval) against
  nn.BatchNorm1d(D) on the same tokens flattened to (tokens, D).
- attention and encoder layer: {setup[seq][heads]} heads, self-attention with `need_weights=False` on both sides,
  dropout 0; encoder layers pre-norm, dim_feedforward = 4D, GELU on both sides (ours' default; torch's default is
  ReLU). Our encoder layer is reported with its default RMSNorm and with LayerNorm (like torch's). "plain twin" rows
  are symm_layers' own plain classes (the same code with nn.Linear parts): no target; they split a gap into our
  layer code and the equivariant weights.
- regressor: in = cond = out = 2 regular copies, embedding_dim {setup[regressor][width]} on both sides,
  {setup[regressor][layers]} layers, {setup[regressor][heads]} heads, dropout 0; AdamW over `get_optim_groups(1e-3)`,
  lr 1e-4. MLP: {setup[mlp][in]} -> {setup[mlp][hidden]} -> {setup[mlp][out]}, GELU.

"""


def family_table(raw: pd.DataFrame, family: str, failures: list[str], check: bool = True) -> pd.DataFrame:
    """One row per (group, candidate, mode) in measurement order, with the verdict where a target exists."""
    out = []
    for _, r in raw[(raw.family == family) & (raw.role != "twin")].iterrows():
        ratio = r["value"] / r["baseline"]
        target = TARGETS.get((r["implementation"], r["metric"])) if check else None
        row = {
            "group": r["group"],
            "D": int(r["D"]),
            "input": r["input"],
            "implementation": r["implementation"],
            "vs": r["comparison"],
            "mode": r["metric"],
            "twin": f"{r['baseline']:.4f} ms",
            "ours": f"{r['value']:.4f} ms",
            "ratio": f"{ratio:.3f}×",
            "ratio IQR": f"{100 * r['spread']:.1f}%",
            "target": "—" if target is None else f"≤ {target:g}×",
            "verdict": "—" if target is None else ("pass" if ratio <= target else "FAIL"),
        }
        if target is not None and ratio > target:
            failures.append(
                f"{r['implementation']} {r['metric']} {r['group']} D={int(r['D'])}: {ratio:.3f}× (≤ {target:g}×)"
            )
        if isinstance(r["note"], str) and r["note"]:
            row["implementation"] += f" [{r['note']}]"
        out.append(row)
    return pd.DataFrame(out)


def render(out: Path) -> str:
    raw = pd.read_csv(out / "raw.csv", dtype={"note": str})
    meta = json.loads((out / "meta.json").read_text())
    failures: list[str] = []
    check = meta.get("device", "cpu") == "cpu" and meta.get("dtype", "float32") == "float32"
    sections = []
    for family, (title, _) in FAMILIES.items():
        if (raw.family == family).any():
            table = family_table(raw, family, failures, check).to_markdown(index=False, disable_numparse=True)
            sections.append(f"## {title}\n\n{table}\n")
    return common.page(HEADER, meta, sections, failures, checked=check)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    if str(common.REPO) not in sys.path:
        sys.path.insert(0, str(common.REPO))
    if not cfg.from_raw:
        torch.set_num_threads(1)
        cfg.placement.apply_precision()
        start, cpu_start, rows = time.perf_counter(), time.process_time(), []
        blocks = [(f, g) for f, (_, groups) in FAMILIES.items() if f in cfg.families for g in groups if g in cfg.groups]
        for index, (family, group) in enumerate(blocks, 1):
            common.log(f"({index}/{len(blocks)}) {family} {group}")
            for comparison in BUILDERS[family](group, cfg.placement):
                rows += measure(cfg, family, group, comparison)
            gc.collect()
            wall = time.perf_counter() - start
            partial = common.collect_meta(cfg, PROFILES[cfg.profile], wall, (time.process_time() - cpu_start) / wall)
            common.save_run(cfg.out, rows, {**partial, "setup": SETUP, "partial": True})  # kept if cut short
        cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - start)
        meta = common.collect_meta(cfg, PROFILES[cfg.profile], time.perf_counter() - start, cpu_share)
        meta["timer"] = common.CLOCKS[cfg.clock][1]
        common.save_run(cfg.out, rows, {**meta, "setup": SETUP})
    (cfg.out / "table.md").write_text(render(cfg.out))
    common.log(f"wrote {cfg.out / 'table.md'}")


if __name__ == "__main__":
    main()
