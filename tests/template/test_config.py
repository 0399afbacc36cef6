"""dvc.yaml repeats src/pipeline/config.py's paths as literals and lists each stage's code: both must hold."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import yaml

from src.pipeline import config
from src.pipeline.adapter import PACKAGE as DATASETS
from src.pipeline.params import load_params

DATASETS_DIR = DATASETS.replace(".", "/")  # src/datasets: one folder dep covers every adapter


def _stages() -> dict:
    return yaml.safe_load((config.ROOT / "dvc.yaml").read_text())["stages"]


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def test_dvc_yaml_paths_match_config():
    stages = _stages()
    rel = lambda p: str(p.relative_to(config.ROOT))  # noqa: E731
    outs = {name: set(_paths(stage.get("outs"))) | set(_paths(stage.get("metrics"))) for name, stage in stages.items()}
    assert outs["gather"] == {rel(config.SNAPSHOT)}
    assert outs["featurize"] == {rel(config.TRAIN_FEATURES), rel(config.TEST_FEATURES), rel(config.FEATURIZE_SUMMARY)}
    assert outs["check_recorded"] == {rel(config.RECORDED_CHECKED_MARKER)}
    assert outs["train"] == {rel(config.MODEL), rel(config.MANIFEST), rel(config.VALIDATION_METRICS)}
    assert outs["evaluate"] == {rel(config.PREDICTIONS), rel(config.METRICS), rel(config.EVAL_DIR / "plots")}
    # each stage reads what the one before it writes
    deps = {name: set(stage["deps"]) for name, stage in stages.items()}
    assert rel(config.SNAPSHOT) in deps["featurize"] and rel(config.TRAIN_FEATURES) in deps["train"]
    # train waits for the recorded lists' check, which reads the training features
    assert rel(config.TRAIN_FEATURES) in deps["check_recorded"]
    assert rel(config.RECORDED_CHECKED_MARKER) in deps["train"]
    assert {rel(config.TEST_FEATURES), rel(config.MODEL), rel(config.MANIFEST)} <= deps["evaluate"]


def test_every_stage_runs_its_own_module_and_depends_on_it_the_params_schema_and_the_adapters():
    for name, stage in _stages().items():
        assert stage["cmd"] == f"python -m src.pipeline.{name}"
        assert {f"src/pipeline/{name}.py", "src/pipeline/params.py", DATASETS_DIR} <= set(stage["deps"])
        # the adapter is chosen by dataset.adapter; the stage must rerun when that changes
        # (a stage that depends on the whole params file reruns on any edit)
        whole_file = config.PARAMS_FILE.name in stage["deps"]
        assert whole_file or any(key == "dataset" or key.startswith("dataset.") for key in stage["params"]), name


def _module_file(name: str) -> Path | None:
    path = config.ROOT / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None  # a name imported from a module, not a module


def imported_src_files(module: str) -> set[str]:
    """Files of the src modules that `module` imports, transitively, packages' __init__ included.

    By parsing, not importing; every import counts, also those inside
    functions (a stage may call them), so this errs on the side of a dep too many.
    """
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:end]) for end in range(1, len(parts)))  # parent packages run first
        for node in ast.walk(ast.parse(_module_file(name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "src":
                todo.append(node.module)
                todo.extend(f"{node.module}.{alias.name}" for alias in node.names)  # `from src.x import module`
            elif isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names if alias.name.split(".")[0] == "src")
    return {_module_file(name).relative_to(config.ROOT).as_posix() for name in seen}


def _adapter_modules() -> list[str]:
    """Every module of the active adapter's package: the stages load it by name (importlib), which no parse sees."""
    root = config.ROOT / DATASETS_DIR / load_params().dataset.adapter
    return sorted(
        ".".join(path.relative_to(config.ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in root.rglob("*.py")
    )


def _covered(path: str, deps: set[str]) -> bool:
    return path in deps or any(path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.slow
def test_stage_deps_cover_every_imported_module():
    # A code change DVC does not see would leave stale outputs "up to date".
    for name, stage in _stages().items():
        needed = imported_src_files(f"src.pipeline.{name}")
        for module in _adapter_modules():
            needed |= imported_src_files(module)
        missing = sorted(path for path in needed if not _covered(path, set(stage["deps"])))
        assert not missing, f"stage {name} imports {missing} but does not depend on them"


@pytest.mark.slow
def test_stage_deps_list_no_module_the_stage_does_not_import():
    # A dep too many reruns a stage for an edit it never runs (ingest code rerunning train).
    for name, stage in _stages().items():
        needed = imported_src_files(f"src.pipeline.{name}")
        for module in _adapter_modules():
            needed |= imported_src_files(module)
        extra = sorted(
            dep for dep in stage["deps"] if dep.startswith("src/") and dep != DATASETS_DIR and dep not in needed
        )
        assert not extra, f"stage {name} depends on {extra} but imports none of them"


@pytest.mark.slow
def test_no_stage_depends_on_a_demo_builder():
    # The builders fake a source for `make source`; no stage runs them, so editing one reruns nothing.
    demos = "src/demos"
    for name, stage in _stages().items():
        needed = imported_src_files(f"src.pipeline.{name}")
        for module in _adapter_modules():
            needed |= imported_src_files(module)
        assert not [path for path in needed if path.startswith(f"{demos}/")], name
        assert not [dep for dep in stage["deps"] if _covered(f"{demos}/builder.py", {dep})], name


def test_the_walk_sees_what_a_stage_imports():
    # The check above is only as good as the walk: it must find the obvious.
    found = imported_src_files("src.pipeline.train")
    assert {
        "src/__init__.py",
        "src/pipeline/__init__.py",
        "src/pipeline/train.py",
        "src/pipeline/model.py",
        "src/pipeline/params.py",
        "src/pipeline/adapter.py",
    } <= found
    assert not any(path.startswith(DATASETS_DIR) for path in found)  # adapters are found by name, not import


def test_source_url_from_the_environment_wins(monkeypatch):
    monkeypatch.setenv(config.SOURCE_URL_ENV, "postgresql://reader@db/history")
    assert config.source_url() == "postgresql://reader@db/history"
    monkeypatch.delenv(config.SOURCE_URL_ENV)
    assert config.source_url() == f"sqlite:///{config.SOURCE_DB}"  # this checkout is no experiment copy


def test_threads_are_the_machines_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(config.THREADS_ENV, raising=False)
    assert config.threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})  # a process pinned to three cores
    assert config.threads() == 3
    monkeypatch.setenv(config.THREADS_ENV, " 16 ")
    assert config.threads() == 16
    for bad in ("0", "-2", "1.5", "all"):
        monkeypatch.setenv(config.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=rf"{config.THREADS_ENV}='{re.escape(bad)}': give a whole number"):
            config.threads()


def test_no_stage_records_a_thread_count():
    # The count is the machine's: in params it would enter dvc.lock and make
    # another machine's run look like another experiment.
    for name, stage in _stages().items():
        assert not [key for key in stage.get("params", []) if "thread" in str(key)], name
    assert not [key for key in load_params().train.model_dump() if "thread" in key]


def test_an_experiment_copy_reads_its_origins_source(tmp_path):
    # Where DVC puts a queued (`--queue`) and a `--temp` experiment's copy; and a
    # DVC project in a subfolder of its git repository, whose copy holds the whole repository.
    source = config.SOURCE_DB.relative_to(config.ROOT)
    origin = tmp_path / "project"
    copies = [
        origin / ".dvc/tmp/exps/tmp8x2k",
        origin / ".dvc/tmp/exps/standalone/tmp8x2k",
        origin / ".dvc/tmp/exps/tmp8x2k/project",
    ]
    for copy in copies:
        copy.mkdir(parents=True, exist_ok=True)
        assert config.experiment_origin(copy) == origin
        assert config.default_source_db(copy) == origin / source
    # Not a copy: its own source, present or not.
    assert config.experiment_origin(origin) is None
    assert config.default_source_db(origin) == origin / source
    assert config.experiment_origin(tmp_path / "exps" / "tmp8x2k") is None
    # A copy that has the file uses it.
    (copies[0] / source).parent.mkdir(parents=True)
    (copies[0] / source).touch()
    assert config.default_source_db(copies[0]) == copies[0] / source


@pytest.mark.slow
def test_the_copies_are_where_dvc_makes_them(tmp_path):
    # DVC's own paths (dvc/repo/experiments/executor/local.py): a DVC upgrade that moves them fails here.
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import EXEC_TMP_DIR

    with Repo.init(tmp_path, no_scm=True) as repo:
        copies = Path(repo.tmp_dir, EXEC_TMP_DIR).relative_to(tmp_path)
    assert copies.parts == config.EXPERIMENT_COPIES
