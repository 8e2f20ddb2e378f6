"""Which saved runs the code at HEAD may reuse: those trained at a commit where every file that can change a run's
numbers is byte-identical to HEAD's.

A job function's *training files* are the library (``symm_layers/``), the dependency pins (``requirements.txt``,
``pyproject.toml``) and every module of ``ablations`` its module imports, directly or through another training
module. The modules in :data:`NOT_TRAINING` are left out, with what they import: the sweep driver (scheduling,
resuming, learning-rate selection; the rate a run used is one of its parameters) and the writers of tables, figures
and the guide. Editing a caption or the guide therefore keeps every saved run, editing one study keeps the other
studies' runs, and editing the library or a shared training module (``train.py``, ``common.py``, ...) re-runs all.

A run file's name hashes the commit it was tagged with (:class:`ablations.sweep.Job`), so reuse is a lookup: a job
matches a saved run tagged with any commit of :func:`reusable_commits`.
"""

from __future__ import annotations

import ast
import functools
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ablations"
#: Modules of ``ablations`` that decide how runs are scheduled and shown, never what a run computes.
NOT_TRAINING = frozenset({"sweep", "provenance", "frames", "stats", "plot", "report", "tables", "summary", "guide",
                          "guide_ant", "guide_maps", "run_all"})  # fmt: skip
#: Files outside ``ablations`` that every run depends on.
SHARED = ("symm_layers", "requirements.txt", "pyproject.toml")


def _imported(path: Path) -> set[str]:
    """Names of the ``ablations`` modules that the source at ``path`` imports (anywhere in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGE + "."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + ".")}
    return names


def training_files(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """Paths (relative to ``root``) of the files a job function defined in ``module`` depends on.

    Raises:
        ValueError: when ``module`` is not a training module of ``ablations``.
    """
    package, _, start = module.partition(".")
    if package != PACKAGE or not start or start in NOT_TRAINING:
        raise ValueError(f"{module!r} is not a training module of {PACKAGE}: job functions live in {PACKAGE}.study_*")
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        path = root / PACKAGE / f"{name}.py"
        if name in seen or name in NOT_TRAINING or not path.exists():
            continue  # a subpackage or a name imported from ``ablations/__init__.py``: none exist today
        seen.add(name)
        todo += sorted(_imported(path))
    return (f"{PACKAGE}/__init__.py", *sorted(f"{PACKAGE}/{name}.py" for name in seen), *SHARED)


def job_module(fn: Callable) -> str:
    """The module that defines ``fn`` (through any :func:`functools.partial` around it)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__module__", "") or ""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def reusable_commits(fn: Callable, root: Path = ROOT) -> tuple[str, ...]:
    """Commits whose training files for ``fn`` are identical to HEAD's, newest first: the newest commit that changed
    one of them and every later commit with the same contents.

    Empty (only a run tagged with the exact commit of a job is then reused) when ``fn`` is not defined in a training
    module of ``ablations`` (tests' job functions), outside a git checkout, or when a training file has uncommitted
    changes.
    """
    module = job_module(fn)
    if not module.startswith(PACKAGE + "."):
        return ()
    files = training_files(module, root)
    try:
        if _git(root, "status", "--porcelain", "--untracked-files=no", "--", *files):
            return ()
        newest = _git(root, "rev-list", "-1", "HEAD", "--", *files)
        if not newest:
            return ()
        later = _git(root, "rev-list", "HEAD", "--not", f"{newest}^@").split()
        head = _git(root, "ls-tree", "-r", "HEAD", "--", *files)
        return tuple(c for c in later if c == newest or _git(root, "ls-tree", "-r", c, "--", *files) == head)
    except (OSError, subprocess.CalledProcessError):
        return ()
