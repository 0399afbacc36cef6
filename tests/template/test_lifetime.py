"""A stage dies with the `dvc` that started it: kill -9 `dvc`, and the stage is gone too (src/pipeline/lifetime.py).

Real `dvc repro` in a throwaway DVC project whose one stage imports src.pipeline
(as every stage of this pipeline does) and then waits. Both ways DVC starts a
command are tried: bash, which execs it, and dash (`/bin/sh`, what DVC runs
when $SHELL is unset), which forks it and outlives `dvc`. The same stage without
the import is the control: it survives, as every stage did before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from src.pipeline import config, lifetime
from tests.conftest import descendants, project_env, run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

WAIT = (
    "import os, pathlib, time; {imports}pathlib.Path('stage.pid').write_text(str(os.getpid())); "
    "time.sleep(120); pathlib.Path('out.txt').write_text('written after dvc died')"
)


def _gone(pid: int) -> bool:
    """No such process, or a zombie (dead, waiting for whoever adopted it to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _project(folder: Path, imports: str) -> Path:
    folder.mkdir()
    run(["dvc", "init", "--no-scm", "-q"], cwd=folder)
    stage = {"cmd": f'python -c "{WAIT.format(imports=imports)}"', "outs": ["out.txt"]}
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"wait": stage}}))
    return folder


def _stage_after_dvc_is_killed(folder: Path, shell: str | None) -> int:
    """Start `dvc repro`, wait for its stage, kill -9 dvc; return the stage's PID."""
    env = project_env(PYTHONPATH=str(config.ROOT), SHELL=shell)
    dvc = subprocess.Popen(["dvc", "repro"], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = folder / "stage.pid"
    try:
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        assert pid_file.exists(), "the stage did not start"
        time.sleep(0.5)  # the stage is past its start (and its watch is running)
    finally:
        dvc.kill()
        dvc.wait()
    return int(pid_file.read_text())


@pytest.mark.long
@pytest.mark.parametrize("shell", ["/bin/bash", None], ids=["bash execs the stage", "sh forks it"])
def test_a_stage_dies_with_the_dvc_that_started_it(tmp_path, shell):
    if shell and not Path(shell).exists():
        pytest.skip(f"no {shell}")
    stage = _stage_after_dvc_is_killed(_project(tmp_path / "follows", "import src.pipeline; "), shell)
    deadline = time.monotonic() + 5 * lifetime.POLL_SECONDS + 5
    while not _gone(stage) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(stage), f"the stage (PID {stage}) outlived the dvc that started it"
    assert not (tmp_path / "follows" / "out.txt").exists()


@pytest.mark.long
def test_without_it_the_stage_outlives_dvc(tmp_path):
    # The control: what the test above would see if src.pipeline did nothing.
    stage = _stage_after_dvc_is_killed(_project(tmp_path / "orphan", ""), shutil.which("bash"))
    try:
        time.sleep(3 * lifetime.POLL_SECONDS)
        assert not _gone(stage), "the control stage died by itself: the test above proves nothing"
    finally:
        if not _gone(stage):
            os.kill(stage, signal.SIGKILL)


def test_outside_dvc_nothing_is_done(monkeypatch):
    monkeypatch.delenv(lifetime.STAGE_ENV, raising=False)
    assert lifetime.follow_dvc().startswith("nothing")


def _children(pid: int) -> list[int]:
    for _ in range(200):
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if found:
            return [int(child) for child in found]
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started no child")


def test_the_dvc_process_is_the_parent_or_the_parent_of_the_shell_it_runs_the_command_through(tmp_path):
    # sleep under `sh -c`, under a script standing for dvc; and a child of the script with no shell between.
    fake = tmp_path / "dvc"
    fake.write_text("#!/bin/sh\nsh -c 'sleep 30; true' &\nsleep 30\n")
    fake.chmod(0o755)
    parent = subprocess.Popen([str(fake)])
    try:

        def is_shell(pid: int) -> bool:
            with contextlib.suppress(FileNotFoundError):
                return "-c" in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            return False

        # Both children started: the shell and the direct sleep. The background job is first a fork of
        # the script, which then execs `sh -c`: wait for the exec, not only for two children.
        for _ in range(400):
            children = _children(parent.pid)
            if len(children) == 2 and any(is_shell(child) for child in children):
                break
            time.sleep(0.05)
        shell = next(child for child in children if is_shell(child))
        direct = next(child for child in children if child != shell)
        for _ in range(200):  # the shell's own child (sleep) started too: under load it comes later
            if _children(shell):
                break
            time.sleep(0.05)
        assert lifetime.dvc_process(_children(shell)[0])[0] == parent.pid  # through the shell
        assert lifetime.dvc_process(direct)[0] == parent.pid  # no shell between
        assert lifetime.dvc_process()[0] == os.getppid()  # this test's own parent
    finally:
        for pid in descendants(parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
