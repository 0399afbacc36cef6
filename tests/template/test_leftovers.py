"""What a killed stage leaves: `make repro` sweeps its temporaries (never while a stage writes); git ignores them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from src.pipeline import check_params, config, files
from tests.conftest import run


def _project(root, outs=("data/snapshot/snapshot.parquet", "eval/metrics.json")):
    """A folder with a dvc.yaml declaring `outs` and, next to each, a file temporary and a staging folder."""
    (root / ".dvc" / "tmp").mkdir(parents=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"s": {"cmd": "true", "outs": list(outs)}}}))
    made = []
    for out in outs:
        folder = (root / out).parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".{(root / out).name}.k2x9.tmp").write_bytes(b"half")
        (folder / ".live.q8w1.tmp").mkdir()
        (folder / ".live.q8w1.tmp" / "plots.json").write_text("{")
        (folder / "keep.txt").write_text("an output")
        made += [folder / f".{(root / out).name}.k2x9.tmp", folder / ".live.q8w1.tmp"]
    return made


def test_the_output_folders_are_dvc_yamls(tmp_path):
    _project(tmp_path)
    assert check_params.output_folders(tmp_path) == [tmp_path / "data" / "snapshot", tmp_path / "eval"]
    assert {config.MODEL.parent, config.SNAPSHOT.parent, config.EVAL_DIR} <= set(check_params.output_folders())


def test_remove_temporaries_takes_only_dot_tmp_entries_and_never_follows_a_link(tmp_path):
    made = _project(tmp_path, outs=("models/model.pkl",))
    folder = tmp_path / "models"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious").write_text("x")
    (folder / ".link.tmp").symlink_to(outside)
    (folder / ".hidden").write_text("not a temporary")
    assert sorted(files.remove_temporaries(folder)) == sorted(made)
    assert sorted(path.name for path in folder.iterdir()) == [".hidden", ".link.tmp", "keep.txt"]
    assert (outside / "precious").exists()


def test_the_sweep_removes_them_when_no_dvc_writes(tmp_path):
    made = _project(tmp_path)
    assert sorted(check_params.sweep_temporaries(tmp_path)) == sorted(made)
    assert not any(path.exists() for path in made)
    assert (tmp_path / "eval" / "keep.txt").exists()


def test_the_sweep_leaves_them_while_a_dvc_command_writes_there(tmp_path, capsys):
    # DVC's read-write lock, as `dvc repro` holds it while a stage's command runs (the PID is dvc's).
    made = _project(tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"write": {str(tmp_path.resolve() / "eval" / "metrics.json"): {"pid": writer.pid, "cmd": "dvc repro"}}}
        (tmp_path / ".dvc" / "tmp" / "rwlock").write_text(json.dumps(lock))
        assert check_params.sweep_temporaries(tmp_path) == []
        assert all(path.exists() for path in made)
        assert "a DVC command is writing outputs now" in capsys.readouterr().err
    finally:
        writer.kill()
        writer.wait()
    # The writer is gone (a killed dvc): DVC's lock drops its entry, and the sweep goes ahead.
    assert sorted(check_params.sweep_temporaries(tmp_path)) == sorted(made)


@pytest.mark.parametrize("path", [".snapshot.parquet.k2x9.tmp", ".live.q8w1.tmp/plots.json"])
def test_git_status_does_not_show_them(path):
    for folder in check_params.output_folders():
        relative = (folder / path).relative_to(config.ROOT).as_posix()
        result = run(["git", "check-ignore", "--no-index", "-q", relative], cwd=config.ROOT, check=False)
        assert result.returncode == 0, f"git would show {relative}"
