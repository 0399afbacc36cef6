"""The port: docs/adapt.md followed step by step for a second data set, in a clone of HEAD.

The penguins adapter (tests/port/penguins/) is written as a forker would
write it. The clone gets no demo source: its only data is the plain CSV that
ingest brings in. The steps below are the checklist's, in its order; each
asserts what the checklist promises, so a change anywhere in the template that
makes the checklist wrong fails here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from src.pipeline import config
from src.pipeline.params import load_params
from src.tools.clones import working_clone
from tests.conftest import run

# The whole port runs pipelines in a temporary clone: an end-to-end test.
pytestmark = pytest.mark.slow

PORT = Path(__file__).resolve().parent
RECORDED_AT = "2020-06-01"
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
# What a port may change besides its own package and params.yaml: the
# git-tracked pipeline outputs (and any .gitignore DVC writes for an output).
REGENERATED = {"dvc.lock", "models/manifest.json", "eval/metrics.json", "metrics/featurize.json"}


def _penguins_csv() -> Path:
    import palmerpenguins

    return Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


def _in_clone(args: list[str], clone: Path, check: bool = True) -> subprocess.CompletedProcess:
    """A command in the clone, with the clone's venv first on PATH (as its Makefile sets it).

    Without SOURCE_URL: the port ingests into, and reads, the clone's own embedded
    source, never a database that this machine's SOURCE_URL names.
    """
    venv = clone / ".venv"
    started = time.perf_counter()
    result = run(args, cwd=clone, check=check, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                 VIRTUAL_ENV=str(venv), **{config.SOURCE_URL_ENV: None})
    if args[0] != "git":
        print(f"  {' '.join(args[:4])}: {time.perf_counter() - started:.1f} s")
    return result


def _changed_files(clone: Path) -> list[str]:
    """Every path that differs from HEAD, untracked files included (one per file).

    Less the clone's link to the shared venv, which working_clone made: it is
    no part of the port (a real fork has a .venv folder, which git ignores).
    """
    status = _in_clone(["git", "status", "--porcelain", "--untracked-files=all"], clone).stdout
    return sorted(path for path in (line[3:] for line in status.splitlines()) if path != ".venv")


def _port_params(text: str) -> str:
    """Checklist steps 2 and 4 on params.yaml's text: the adapter, empty recorded lists, as_of."""
    edits = [
        (r"^dataset:\n(?:  .*\n)+", "dataset:\n  adapter: penguins\n"),  # penguins has no params of its own
        (r"^classes:\n(?:- .*\n)+", "classes: []\n"),
        (r"^categories:\n(?:  .*\n)+", "categories: {}\n"),
        (r"^  as_of: .*$", f"  as_of: '{RECORDED_AT}'"),
    ]
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"params.yaml at HEAD has no single block matching {pattern!r}: update docs/adapt.md step 2"
    return text


def _with_id_column(source: Path, destination: Path) -> Path:
    """The package's CSV with `penguin_id` 1..n in file order; every other byte as shipped."""
    header, *rows = source.read_text(encoding="utf-8").splitlines()
    lines = [f"penguin_id,{header}", *(f"{number},{row}" for number, row in enumerate(rows, start=1))]
    destination.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return destination


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A clone of HEAD taken through checklist steps 1-6; the outputs of each step, for the tests."""
    base = tmp_path_factory.mktemp("port")
    clone = working_clone(base / "clone", venv=config.VENV, source_dir=None)
    assert not (clone / config.SOURCE_DB.relative_to(config.ROOT)).exists()
    seen: dict = {"clone": clone}

    # 1. The adapter package.
    shutil.copytree(PORT / "penguins", clone / "src" / "datasets" / "penguins",
                    ignore=shutil.ignore_patterns("__pycache__"))

    # 2 and 4. params.yaml, edited as text as in an editor (a YAML round trip
    # would drop the comments that sit between the replaced blocks).
    params_file = clone / "params.yaml"
    params_file.write_text(_port_params(params_file.read_text(encoding="utf-8")), encoding="utf-8")
    load_params(params_file)  # the stages would accept it

    # 3. Bring in the plain table (from outside the clone), twice: the second adds nothing.
    csv = _with_id_column(_penguins_csv(), base / "penguins.csv")
    ingest = ["python", "-m", "src.tools.ingest", str(csv), "--table", "penguins", "--id", "penguin_id",
              "--recorded-at", RECORDED_AT]
    seen["ingest"] = [_in_clone(ingest, clone).stdout, _in_clone(ingest, clone).stdout]

    # 5. make categories, by the command it runs (make would also check the
    # clone's linked venv against the lock file, which is no part of a port).
    seen["categories"] = _in_clone(["python", "-m", "src.tools.categories"], clone).stdout
    seen["params"] = yaml.safe_load((clone / "params.yaml").read_text(encoding="utf-8"))

    # 6. make repro; the changes are the port's own; commit; a forced rebuild changes no byte of dvc.lock.
    _in_clone(["dvc", "repro"], clone)
    seen["changed"] = _changed_files(clone)
    # Intent-to-add: the new files count in the stat as they will in the commit.
    _in_clone(["git", "add", "--intent-to-add", "--", *seen["changed"]], clone)
    seen["stat"] = _in_clone(["git", "diff", "--stat=100"], clone).stdout
    print(f"\nThe port's changes against HEAD (git diff --stat):\n{seen['stat']}")
    seen["lock"] = (clone / "dvc.lock").read_bytes()
    _in_clone(["git", "add", "--", *seen["changed"]], clone)
    _in_clone(["git", "commit", "-q", "-m", "Port to the penguins data set"], clone)
    _in_clone(["dvc", "repro", "--force"], clone)
    seen["forced_lock"] = (clone / "dvc.lock").read_bytes()
    seen["forced_changes"] = _changed_files(clone)
    return seen


def test_ingest_brings_the_table_in_once(port):
    first, second = port["ingest"]
    assert "344 new versions recorded at 2020-06-01 23:59:59, 0 unchanged rows" in first, first
    assert "0 new versions" in second and "344 unchanged rows" in second, second


def test_categories_records_the_lists_and_classes(port):
    params = port["params"]
    assert params["dataset"] == {"adapter": "penguins"}
    assert params["categories"] == {"island": ["Biscoe", "Dream", "Torgersen"], "sex": ["female", "male"]}
    assert params["classes"] == CLASSES
    assert "island: 3, sex: 2; classes: 3" in port["categories"], port["categories"]


def test_the_port_changes_only_its_own_files(port):
    changed = port["changed"]
    allowed = {"params.yaml", *REGENERATED}
    unexpected = [path for path in changed if path not in allowed and not path.startswith("src/datasets/penguins/")
                  and Path(path).name != ".gitignore"]
    assert not unexpected, f"the port touched files outside its package and params.yaml: {unexpected}\n{port['stat']}"
    assert "src/datasets/penguins/__init__.py" in changed and "params.yaml" in changed, changed
    assert REGENERATED.issubset(changed), f"outputs not regenerated: {sorted(REGENERATED - set(changed))}"


def test_forced_rebuild_leaves_dvc_lock_byte_identical(port):
    assert port["forced_lock"] == port["lock"], "dvc repro --force changed dvc.lock:\n" + subprocess.run(
        ["git", "diff", "dvc.lock"], cwd=port["clone"], capture_output=True, text=True).stdout[:4000]
    assert port["forced_changes"] == [], f"dvc repro --force left changes behind: {port['forced_changes']}"


def test_multiclass_metrics_are_written(port):
    clone = port["clone"]
    metrics = json.loads((clone / "eval" / "metrics.json").read_text(encoding="utf-8"))
    for name in ("accuracy", "f1_macro", "log_loss", "roc_auc_ovr"):
        assert isinstance(metrics.get(name), float), f"eval/metrics.json lacks {name}: {metrics}"
    assert metrics["accuracy"] > 0.8, metrics  # three well-separated species: a broken model scores near 1/3
    assert set(metrics["rows"]["class"]) == set(CLASSES), metrics
    featurize = json.loads((clone / "metrics" / "featurize.json").read_text(encoding="utf-8"))
    assert featurize["snapshot_rows"] == 344 and featurize["excluded_no_species"] == 0, featurize
    manifest = json.loads((clone / "models" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["dataset"] == "penguins" and manifest["classes"] == CLASSES, manifest["dataset"]


def test_template_tests_pass_for_the_port(port):
    """Step 7: the template's own tests, run inside the ported clone."""
    clone = port["clone"]
    if not (clone / "tests" / "template").is_dir():
        pytest.fail("HEAD has no tests/template/: the template tests that must pass for any adapter are not "
                    "committed yet, so the port cannot run them")
    result = _in_clone(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/template",
                        "-m", "not slow"], clone, check=False)
    assert result.returncode == 0, (f"tests/template failed for the penguins adapter (exit {result.returncode}):\n"
                                    f"{result.stdout[-8000:]}\n{result.stderr[-2000:]}")
