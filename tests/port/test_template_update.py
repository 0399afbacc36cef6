"""A fork made with `copier copy` takes two later template versions with `copier update`.

In temporary folders: a template repository cloned from HEAD (tag v-A); a fork
copied from it without the example and ported to the penguins adapter
(tests/port/penguins/), its pipeline run and committed. The template then moves
twice: v-B changes generic code (a new metric in the evaluate stage), the
Makefile, a doc and the example; v-C adds a params key with its schema entry,
next to a line the fork changed (the case where git's text merge conflicts).
After each `copier update` (docs/updating.md): no conflict; the fork's own
files stay; the new key is in the fork's params.yaml and, after `dvc repro`,
in its dvc.lock; a few template tests pass in the fork; and DVC reruns only
the stages whose dependencies the update changed.
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
from tests.port.porting import PORT, RECORDED_AT, _penguins_csv, _port_params, _with_id_column

# Copies a template, ports a fork and runs its pipeline three times: an end-to-end test.
pytestmark = pytest.mark.long

STAGES = {"check_params", "gather", "featurize", "check_recorded", "train", "evaluate"}
# The fork's own files: an update must leave every byte of them (copier.yml's _skip_if_exists).
FORK_OWNED = [
    "params.yaml",
    "dvc.lock",
    "data/params_checked.txt",
    "data/recorded_checked.txt",
    "models/manifest.json",
    "eval/metrics.json",
    "metrics/featurize.json",
    "README.md",
    "src/datasets/penguins/__init__.py",
    "src/datasets/penguins/source.py",
]
# The fork's own value, on the line before the one where v-C adds its key.
FORK_IMPORTANCE_ROWS = "  importance_rows: 300\n"
NEW_KEY = "  # Bins of the calibration curve (added by the template at v-C).\n  calibration_bins: 10\n"
# Fast template tests that read the fork's own params.yaml and dvc.yaml.
FORK_TESTS = [
    "tests/template/test_template_params.py",
    "tests/template/test_params_layout.py",
    "tests/template/test_config.py",
]


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """A command with this checkout's venv first on PATH (the fork has no venv of its own here)."""
    env = dict(
        os.environ,
        PATH=f"{config.VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(config.VENV),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    env.pop(config.SOURCE_URL_ENV, None)
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True)
    if args[0] != "git":
        print(f"  {' '.join(args[:3])}: {time.perf_counter() - started:.1f} s")
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def _edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in path: a template that no longer has it fails here, not later."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path} has {text.count(old)} occurrences of {old!r}: update this test"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)


def _template_commit(template: Path, message: str, tag: str) -> None:
    _run(["git", "add", "-A"], template)
    _run(["git", "commit", "-q", "-m", message], template)
    _run(["git", "tag", tag], template)


def _snapshot(fork: Path) -> dict[str, bytes]:
    return {name: (fork / name).read_bytes() for name in FORK_OWNED}


def _update(fork: Path, tag: str) -> dict:
    """`copier update` to tag; what it touched, what conflicts, and `dvc status`, before any commit."""
    before = _snapshot(fork)
    started = time.perf_counter()
    result = _run(["copier", "update", "--vcs-ref", tag, "--defaults", "--trust"], fork)
    seen = {"seconds": time.perf_counter() - started, "output": result.stdout + result.stderr, "before": before}
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], fork).stdout.splitlines()
    seen["touched"] = sorted(line[3:] for line in status)
    seen["conflicts"] = sorted(
        {line[3:] for line in status if line[:2] in ("UU", "AA", "DU", "UD")}
        | {path for path in seen["touched"] if path.endswith(".rej")}
        | {
            path
            for path in seen["touched"]
            if (fork / path).is_file()
            and "<<<<<<< before updating" in (fork / path).read_text(encoding="utf-8", errors="replace")
        }
    )
    seen["after"] = _snapshot(fork)
    seen["status"] = json.loads(_run(["dvc", "status", "--json"], fork).stdout or "{}")
    print(
        f"\ncopier update to {tag} ({seen['seconds']:.1f} s) touched: {seen['touched']}\n"
        f"  conflicts: {seen['conflicts'] or 'none'}\n  dvc status names: {sorted(seen['status'])}"
    )
    return seen


def _repro_and_commit(fork: Path, message: str, tests: bool = False) -> dict:
    """dvc repro in the fork; the stages it ran; then (if asked) the fork's tests; everything committed."""
    output = _run(["dvc", "repro"], fork).stdout
    ran = sorted(set(re.findall(r"Running stage '([^']+)'", output)))
    print(f"  dvc repro ran: {ran}")
    status = json.loads(_run(["dvc", "status", "--json"], fork).stdout or "{}")
    if tests:
        tests = _run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *FORK_TESTS], fork, check=False)
    _run(["git", "add", "-A"], fork)
    _run(["git", "commit", "-q", "-m", message], fork)
    lock = yaml.safe_load((fork / "dvc.lock").read_text(encoding="utf-8"))
    return {"ran": ran, "status_after_repro": status, "tests": tests, "lock": lock}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    started = time.perf_counter()
    base = tmp_path_factory.mktemp("template_update")
    template, fork = base / "template", base / "fork"
    _run(["git", "clone", "-q", "--no-hardlinks", str(config.ROOT), str(template)], base)
    _run(["git", "tag", "v-A"], template)

    # The fork: copied at v-A without the example (an absolute source path:
    # copier's update needs one), then ported as docs/adapt.md says.
    _run(
        [
            "copier",
            "copy",
            "--vcs-ref",
            "v-A",
            "--defaults",
            "--data",
            "keep_example=false",
            str(template.resolve()),
            str(fork),
        ],
        base,
    )
    seen: dict = {
        "answers": yaml.safe_load((fork / ".copier-answers.yml").read_text(encoding="utf-8")),
        "copied_example": (fork / "src" / "datasets" / "flights").exists() or (fork / "tests" / "example").exists(),
    }
    _run(["git", "init", "-q"], fork)
    _run(["git", "add", "-A"], fork)
    _run(["git", "commit", "-q", "-m", "Fork of the template at v-A"], fork)
    shutil.copytree(
        PORT / "penguins", fork / "src" / "datasets" / "penguins", ignore=shutil.ignore_patterns("__pycache__")
    )
    params = fork / "params.yaml"
    params.write_text(_port_params(params.read_text(encoding="utf-8")), encoding="utf-8")
    _edit(params, "  importance_rows: 5000\n", FORK_IMPORTANCE_ROWS)  # the fork's own tuning
    csv = _with_id_column(_penguins_csv(), base / "penguins.csv")
    _run(
        [
            "python",
            "-m",
            "src.tools.ingest",
            str(csv),
            "--table",
            "penguins",
            "--id",
            "penguin_id",
            "--recorded-at",
            RECORDED_AT,
        ],
        fork,
    )
    _run(["python", "-m", "src.tools.categories"], fork)
    seen["port"] = _repro_and_commit(fork, "Port to the penguins data set")

    # v-B: generic code, the Makefile, a doc and the example change; params do not.
    # In evaluate's own code (the metrics themselves are in scoring.py, which train's folds share).
    _edit(
        template / "src/pipeline/evaluate.py",
        '    live.log_metric("rows/test", int(len(y)), plot=False)\n',
        "    from sklearn.metrics import balanced_accuracy_score  # v-B\n"
        "    predicted = np.asarray(classes)[np.argmax(probabilities, axis=1)]\n"
        '    live.log_metric("balanced_accuracy", float(balanced_accuracy_score(y, predicted)), plot=False)\n'
        '    live.log_metric("rows/test", int(len(y)), plot=False)\n',
    )
    _edit(template / "Makefile", "# The front door.", "# The front door (v-B).")
    _append(template / "docs/adapt.md", "\nTemplate v-B was here.\n")
    _append(template / "src/datasets/flights/__init__.py", "# The example at v-B.\n")
    _template_commit(template, "v-B: a new metric, a Makefile and a doc change, the example moves", "v-B")
    seen["B"] = _update(fork, "v-B")
    seen["B"].update(_repro_and_commit(fork, "Update from the template to v-B"))

    # v-C: a params key with its schema entry, on the line after one the fork changed.
    _edit(
        template / "src/pipeline/params.py",
        "    importance_rows: int = Field(gt=0)\n",
        "    importance_rows: int = Field(gt=0)\n    calibration_bins: int = Field(ge=2)\n",
    )
    _edit(template / "params.yaml", "  importance_rows: 5000\n", "  importance_rows: 5000\n" + NEW_KEY)
    _template_commit(template, "v-C: evaluate.calibration_bins", "v-C")
    seen["C"] = _update(fork, "v-C")
    seen["C"]["params_diff"] = _run(["git", "diff", "--numstat", "--", "params.yaml"], fork).stdout
    seen["C"].update(_repro_and_commit(fork, "Update from the template to v-C", tests=True))
    seen["fork"], seen["template"] = fork, template
    print(f"\ntemplate update test: {time.perf_counter() - started:.0f} s in all")
    return seen


def test_the_fork_is_copied_without_the_example(history):
    assert history["answers"]["keep_example"] is False and history["answers"]["_commit"] == "v-A", history["answers"]
    assert not history["copied_example"]
    assert {"train", "evaluate"} <= set(history["port"]["ran"]), history["port"]["ran"]


@pytest.mark.parametrize("step", ["port", "B", "C"])
def test_the_pipeline_is_up_to_date_after_repro(history, step):
    assert history[step]["status_after_repro"] == {}, history[step]["status_after_repro"]


@pytest.mark.parametrize("version", ["B", "C"])
def test_an_update_has_no_conflict(history, version):
    assert history[version]["conflicts"] == [], history[version]["output"][-4000:]


def test_generic_changes_arrive_and_the_example_stays_out(history):
    fork = history["fork"]
    assert set(history["B"]["touched"]) == {
        ".copier-answers.yml",
        "Makefile",
        "docs/adapt.md",
        "src/pipeline/evaluate.py",
    }, history["B"]["touched"]
    assert "balanced_accuracy" in (fork / "src/pipeline/evaluate.py").read_text(encoding="utf-8")
    assert not (fork / "src" / "datasets" / "flights").exists()


@pytest.mark.parametrize("version", ["B", "C"])
def test_the_forks_own_files_are_untouched(history, version):
    # params.yaml only gains lines at v-C (the next test).
    own = [name for name in FORK_OWNED if not (version == "C" and name == "params.yaml")]
    changed = [name for name in own if history[version]["before"][name] != history[version]["after"][name]]
    assert changed == [], f"the update to v-{version} changed the fork's own files {changed}"


def test_the_new_key_reaches_params_yaml_as_added_lines_only(history):
    fork = history["fork"]
    assert set(history["C"]["touched"]) == {".copier-answers.yml", "params.yaml", "src/pipeline/params.py"}, history[
        "C"
    ]["touched"]
    assert history["C"]["params_diff"].split()[:2] == ["2", "0"], history["C"]["params_diff"]  # 2 added, 0 removed
    text = (fork / "params.yaml").read_text(encoding="utf-8")
    assert FORK_IMPORTANCE_ROWS + NEW_KEY in text
    assert "added evaluate.calibration_bins" in history["C"]["output"], history["C"]["output"][-2000:]
    params = yaml.safe_load(text)
    assert params["dataset"] == {"adapter": "penguins"} and params["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_dvc_reruns_only_the_stages_whose_code_changed(history):
    # v-B changed evaluate.py, a dependency of the evaluate stage alone.
    assert sorted(history["B"]["status"]) == ["evaluate"], history["B"]["status"]
    assert history["B"]["ran"] == ["evaluate"], history["B"]["ran"]
    metrics = json.loads((history["fork"] / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert isinstance(metrics.get("balanced_accuracy"), float), metrics
    # v-C changed params.py, which every stage imports.
    assert set(history["C"]["status"]) == STAGES and history["C"]["ran"] == sorted(STAGES), history["C"]["status"]


def test_the_new_key_is_recorded_in_dvc_lock(history):
    recorded = history["C"]["lock"]["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]
    assert recorded["calibration_bins"] == 10 and recorded["importance_rows"] == 300, recorded


def test_the_forks_template_tests_pass_after_the_updates(history):
    # Once, at the end (30 s a run here): the fork's params.yaml, dvc.yaml and code as both updates left them.
    tests = history["C"]["tests"]
    assert tests.returncode == 0, f"{' '.join(FORK_TESTS)} failed in the fork:\n{tests.stdout[-6000:]}"
