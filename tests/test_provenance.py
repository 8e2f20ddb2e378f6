"""Reuse of saved runs and measurements across commits (ablations.provenance, ablations.sweep and
benchmarks/up_to_date.py): a run is reused exactly when the files that can change its numbers are identical."""

import ast
import functools
import json
import subprocess
from pathlib import Path

import pytest

from ablations import provenance, sweep
from ablations.common import STUDY_MODULES

#: What training modules may take from the modules left out of the training files, and why it cannot change a run:
#: the job description and driver (the run id hashes every parameter), a path printer, the report step after a sweep,
#: and what the converged check reads to choose which saved configurations it retrains and whether they are current
#: (they pick jobs, whose ids hash the label and every parameter, never what a job computes).
ALLOWED_FROM_NOT_TRAINING = {
    ("sweep", "Job"), ("sweep", "BACKENDS"), ("sweep", "git_commit"), ("sweep", "run_sweep"),
    ("sweep", "tuned_sweep"), ("frames", "display_path"), ("", "report"), ("summary", "CONVERGENCE"),
    ("summary", "CONVERGENCE_SOURCES"), ("summary", "convergence_comparisons"), ("summary", "convergence_label"),
    ("summary", "runs"), ("provenance", "reusable_commits"), ("sweep", "FINAL_STEPS"),
}  # fmt: skip


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("study", sorted(STUDY_MODULES))
def test_training_files_follow_imports(study):
    files = provenance.training_files(STUDY_MODULES[study])
    module_file = STUDY_MODULES[study].replace(".", "/") + ".py"
    assert module_file in files and {"symm_layers", "ablations/train.py", "ablations/common.py"} <= set(files)
    assert not {f"ablations/{name}.py" for name in provenance.NOT_TRAINING} & set(files)
    for path in files:
        assert Path(provenance.ROOT, path).exists(), path
    others = {m.replace(".", "/") + ".py" for m in STUDY_MODULES.values()} - {module_file}
    imported = set()
    for path in files:
        if path.endswith(".py"):
            imported |= {f"ablations/{name}.py" for name in provenance._imported(provenance.ROOT / path)}
    assert others & set(files) <= imported  # another study's module only when this study imports it


def test_training_modules_take_nothing_that_changes_a_run_from_the_rest():
    taken = set()
    training = {f for m in STUDY_MODULES.values() for f in provenance.training_files(m) if f.endswith(".py")}
    for path in training:
        for node in ast.walk(ast.parse((provenance.ROOT / path).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                module = (node.module or "").split(".")[0]
                for alias in node.names:
                    if module in provenance.NOT_TRAINING or (not module and alias.name in provenance.NOT_TRAINING):
                        taken.add((module, alias.name))
    assert taken <= ALLOWED_FROM_NOT_TRAINING, taken - ALLOWED_FROM_NOT_TRAINING


def test_training_files_reject_modules_outside_the_studies():
    for module in ("tests.test_provenance", "ablations.plot", "ablations", "numpy"):
        with pytest.raises(ValueError, match="not a training module"):
            provenance.training_files(module)


def _job_fn(module: str):
    def fn(job):
        return []

    fn.__module__ = module
    return functools.partial(fn)


@pytest.fixture
def repo(tmp_path):
    """A tiny checkout: one study importing a training module, a figure writer, the library and the pins."""
    root = tmp_path
    (root / "ablations").mkdir()
    (root / "symm_layers").mkdir()
    (root / "ablations" / "__init__.py").write_text("")
    (root / "ablations" / "study_x.py").write_text("from .train import fit\nfrom .sweep import Job\n")
    (root / "ablations" / "study_y.py").write_text("from .train import fit\n")
    (root / "ablations" / "train.py").write_text("def fit():\n    return 1\n")
    (root / "ablations" / "sweep.py").write_text("Job = object\n")
    (root / "ablations" / "plot.py").write_text("from .study_x import fit\n")
    (root / "symm_layers" / "__init__.py").write_text("")
    (root / "requirements.txt").write_text("torch==2.13.0\n")
    (root / "pyproject.toml").write_text("[project]\n")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "ci@example.com"), _git(root, "config", "user.name", "ci")
    return root


def _commit(root: Path, path: str, text: str) -> str:
    (root / path).write_text(text)
    _git(root, "add", "-A"), _git(root, "commit", "-qm", f"edit {path}")
    return _git(root, "rev-parse", "HEAD")


def test_reusable_commits_follow_the_training_files(repo):
    fn_x, fn_y = _job_fn("ablations.study_x"), _job_fn("ablations.study_y")
    first = _commit(repo, "README.md", "start\n")
    assert provenance.reusable_commits(fn_x, repo) == (first,)
    figure = _commit(repo, "ablations/plot.py", "from .study_x import fit\nWIDTH = 3\n")
    driver = _commit(repo, "ablations/sweep.py", "Job = object  # scheduling only\n")
    assert provenance.reusable_commits(fn_x, repo) == (driver, figure, first)
    other_study = _commit(repo, "ablations/study_y.py", "from .train import fit\nSTEPS = 3\n")
    assert provenance.reusable_commits(fn_x, repo) == (other_study, driver, figure, first)
    assert provenance.reusable_commits(fn_y, repo) == (other_study,)
    library = _commit(repo, "symm_layers/__init__.py", "VERSION = 2\n")
    assert provenance.reusable_commits(fn_x, repo) == (library,)
    pins = _commit(repo, "requirements.txt", "torch==2.14.0\n")
    assert provenance.reusable_commits(fn_x, repo) == (pins,)
    reverted = _commit(repo, "requirements.txt", "torch==2.13.0\n")
    assert provenance.reusable_commits(fn_x, repo) == (reverted,)  # same contents as `library`, but not searched
    (repo / "ablations" / "train.py").write_text("def fit():\n    return 2\n")
    assert provenance.reusable_commits(fn_x, repo) == ()  # uncommitted training change: exact commit only
    assert provenance.reusable_commits(_job_fn("tests.test_x"), repo) == ()


def test_a_revert_of_the_training_files_reuses_the_runs_of_the_same_contents(repo):
    fn = _job_fn("ablations.study_x")
    before = _commit(repo, "ablations/train.py", "def fit():\n    return 1\n")
    _commit(repo, "ablations/train.py", "def fit():\n    return 5\n")
    back = _commit(repo, "ablations/train.py", "def fit():\n    return 1\n")
    after = _commit(repo, "ablations/plot.py", "from .study_x import fit\nWIDTH = 4\n")
    # only the commits since the newest change are searched: `before` had the same contents but is not listed
    assert provenance.reusable_commits(fn, repo) == (after, back)
    assert before not in provenance.reusable_commits(fn, repo)


def _rows(job):
    return [{"step": 0, "wall_time": 0.0, "metric": "loss", "value": float(job.seed)}]


def _jobs(commit):
    return [sweep.Job("study", "a", seed, {"width": 4}, commit) for seed in range(3)]


def test_run_sweep_reuses_runs_of_an_equivalent_commit_and_records_it(tmp_path, monkeypatch):
    calls = []

    def fn(job):
        calls.append(job.seed)
        return _rows(job)

    monkeypatch.setattr(sweep, "reusable_commits", lambda fn: ())
    sweep.run_sweep(_jobs("old")[:2], fn, tmp_path, backend="serial", progress=False)
    assert calls == [0, 1]
    monkeypatch.setattr(sweep, "reusable_commits", lambda fn: ("new", "old"))
    frame = sweep.run_sweep(_jobs("new"), fn, tmp_path, backend="serial", progress=False)
    assert calls == [0, 1, 2] and sorted(frame.value.unique()) == [0.0, 1.0, 2.0]
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["metrics.csv"] == {"runs": 3, "trained_at": {"new": 1, "old": 2}}
    monkeypatch.setattr(sweep, "reusable_commits", lambda fn: ())  # the training files changed: run everything
    sweep.run_sweep(_jobs("newer"), fn, tmp_path, backend="serial", progress=False)
    assert calls == [0, 1, 2, 0, 1, 2]
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["metrics.csv"]["trained_at"] == {"newer": 3}


def test_a_benchmark_is_current_while_its_measured_files_are_unchanged(repo):
    from benchmarks import up_to_date

    (repo / "benchmarks").mkdir()
    (repo / "benchmarks" / "bench.py").write_text("N = 1\n")
    measured = _commit(repo, "asv.conf.json", "{}\n")
    folder = repo / "results" / "bench"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"commit": measured, "profile": "full"}))
    assert up_to_date.reason_to_rerun(folder, "full", repo) is None
    _commit(repo, "ablations/plot.py", "WIDTH = 9\n")  # ablation figures, docs and the decider itself: still current
    _commit(repo, "README.md", "more\n")
    (repo / "benchmarks" / "up_to_date.py").write_text("# decides only\n")
    _git(repo, "add", "-A"), _git(repo, "commit", "-qm", "decider")
    assert up_to_date.reason_to_rerun(folder, "full", repo) is None
    assert "profile" in up_to_date.reason_to_rerun(folder, "quick", repo)
    _commit(repo, "benchmarks/bench.py", "N = 2\n")
    assert "differ" in up_to_date.reason_to_rerun(folder, "full", repo)
    (folder / "meta.json").write_text(json.dumps({"commit": measured + " + uncommitted changes"}))
    assert "not a clean commit" in up_to_date.reason_to_rerun(folder, None, repo)
    (folder / "meta.json").write_text(json.dumps({"commit": "0" * 40, "profile": "full"}))
    assert "differ" in up_to_date.reason_to_rerun(folder, "full", repo)


def test_a_benchmark_folder_is_re_dated_only_by_the_modules_its_script_runs(repo):
    from benchmarks import up_to_date

    (repo / "benchmarks").mkdir()
    _commit(repo, "benchmarks/cases.py", "N = 1\n")
    measured = _commit(repo, "benchmarks/bench_linear.py", "N = 1\n")
    folders = {}
    for name in ("asv", "linear_family", "elsewhere"):
        folders[name] = repo / "results" / name
        folders[name].mkdir(parents=True)
        (folders[name] / "meta.json").write_text(json.dumps({"commit": measured}))

    def stale():
        return {name for name, folder in folders.items() if up_to_date.reason_to_rerun(folder, None, repo)}

    _commit(repo, "benchmarks/regression_demo.py", "N = 2\n")  # runs no published measurement's code
    assert stale() == {"elsewhere"}  # an unknown folder depends on all of benchmarks/
    _commit(repo, "benchmarks/bench_linear.py", "N = 2\n")  # an asv suite: not linear_family's
    assert stale() == {"asv", "elsewhere"}
    _commit(repo, "benchmarks/cases.py", "N = 2\n")  # the cells both define
    assert stale() == {"asv", "linear_family", "elsewhere"}


MAKEFILE = """# set-up and the two pipelines
$(STAMP): requirements.txt
\tpip install -r requirements.txt

results: $(STAMP)
\tpython benchmarks/linear_family.py --profile quick --out results-quick/linear_family

results-full: $(STAMP)
\tpython benchmarks/linear_family.py --profile full --out results/linear_family
"""


def test_the_quick_rule_and_comments_of_the_makefile_do_not_re_date_a_measurement(repo):
    from benchmarks import up_to_date

    measured = _commit(repo, "Makefile", MAKEFILE)
    folder = repo / "results" / "linear_family"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"commit": measured, "profile": "full"}))
    quick = MAKEFILE.replace("--profile quick", "--profile quick --dims 64 256").replace("# set-up", "# Set-up")
    _commit(repo, "Makefile", quick + "\n# the quick grid is narrower\n")
    assert up_to_date.reason_to_rerun(folder, "full", repo) is None
    _commit(repo, "Makefile", quick.replace("--profile full", "--profile full --dims 64"))
    assert "differ" in up_to_date.reason_to_rerun(folder, "full", repo)
    _commit(repo, "Makefile", quick.replace("pip install", "pip install -U"))  # the set-up re-dates too
    assert "differ" in up_to_date.reason_to_rerun(folder, "full", repo)


def _frame(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["label", "model", "width", "params", "train_size"])


def test_equal_params_pairs_refuse_partners_more_than_ten_percent_apart():
    from ablations.summary import equal_params_pairs, unpaired

    frame = _frame([
        ("eq32", "equivariant", 32, 381, 64), ("eq224", "equivariant", 224, 8013, 64),
        ("p16", "plain", 16, 361, 64), ("p64", "plain", 64, 8090, 64),
        ("a16", "plain/augmented", 16, 361, 64), ("a74", "plain/augmented", 74, 10090, 64),
    ])  # fmt: skip
    pairs = {(p["equivariant"], p["other"]) for p in equal_params_pairs(frame)}
    assert pairs == {("eq32", "p16"), ("eq32", "a16"), ("eq224", "p64")}  # a74 is 26 % above eq224
    assert unpaired(frame) == {"plain/augmented": [224]}


def test_commit_text_names_the_commits_that_trained_the_runs():
    from ablations.summary import commit_text

    assert commit_text({"git_commit": "a" * 40}) == f"commit `{'a' * 12}`"
    assert commit_text({"git_commit": "a" * 40, "trained_at": {"a" * 40: 3}}) == f"commit `{'a' * 12}`"
    text = commit_text({"git_commit": "a" * 40, "trained_at": {"b" * 40: 5, "a" * 40: 2}})
    assert f"`{'b' * 12}` (5 runs)" in text and f"`{'a' * 12}` (2 runs)" in text and "identical" in text


def test_log_tick_labels_are_compact():
    from ablations.plot import _compact

    assert [_compact(v) for v in (0.05, 300, 1000, 2000, 30000, 1.5e6)] == ["0.05", "300", "1k", "2k", "30k", "1.5M"]
