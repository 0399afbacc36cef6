"""dvc.yaml repeats src/config.py's paths as literals; they must agree."""
from __future__ import annotations

import yaml

from src.pipeline import config


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def test_dvc_yaml_paths_match_config():
    stages = yaml.safe_load((config.ROOT / "dvc.yaml").read_text())["stages"]
    rel = lambda p: str(p.relative_to(config.ROOT))  # noqa: E731
    outs = {name: set(_paths(stage.get("outs"))) | set(_paths(stage.get("metrics"))) for name, stage in stages.items()}
    assert outs["gather"] == {rel(config.SNAPSHOT)}
    assert outs["featurize"] == {rel(config.TRAIN_FEATURES), rel(config.TEST_FEATURES), rel(config.FEATURIZE_SUMMARY)}
    assert outs["train"] == {rel(config.MODEL), rel(config.MANIFEST)}
    assert outs["evaluate"] == {rel(config.PREDICTIONS), rel(config.METRICS), rel(config.EVAL_DIR / "plots")}


def test_every_stage_depends_on_its_own_script_and_the_params_schema():
    stages = yaml.safe_load((config.ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m src.{name}"
        assert f"src/{name}.py" in stage["deps"] and "src/params.py" in stage["deps"]


def _imported_src_modules(module: str) -> set[str]:
    """src modules that `module` imports, transitively (by parsing, not importing)."""
    import ast

    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((config.ROOT / "src" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "src":
                todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("src."):
                todo.append(node.module.split(".")[1])
    return seen


def test_stage_deps_cover_every_imported_module():
    # A code change DVC does not see would leave stale outputs "up to date".
    stages = yaml.safe_load((config.ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        needed = {f"src/{module}.py" for module in _imported_src_modules(name)} | {"src/__init__.py"}
        missing = needed - set(stage["deps"])
        assert not missing, f"stage {name} imports {sorted(missing)} but does not depend on them"
