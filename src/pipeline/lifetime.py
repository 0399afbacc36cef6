"""A stage process dies with the `dvc` that started it (Linux).

Killing `dvc` itself (kill -9, a closed terminal, a CI job timeout) does not
kill the stage it runs: the stage goes on, reparented to PID 1, and may later
write an output that `dvc.lock` never records (a model no lock vouches for,
while DVC's next run treats the stage as never run). So every stage process,
at its start (src/pipeline/__init__.py, only under DVC: DVC sets DVC_STAGE
for each command), asks to die with it:

- `prctl(PR_SET_PDEATHSIG, SIGTERM)`: the kernel signals the stage when its
  parent dies. DVC runs a command through `$SHELL -c`; bash execs a single
  command, so its parent is `dvc` itself.
- dash (`/bin/sh` on Debian, what DVC runs when $SHELL is unset) forks the
  command instead, and the shell lives on when `dvc` dies. So when the parent
  is that shell, a daemon thread also checks once a second that the shell's
  parent, the DVC process, is still there (by PID and start time, so a reused
  PID does not count).
- If DVC died before the stage got this far (the shell, or the stage, already
  adopted by init), the stage ends at once.

Not covered: a machine whose orphans go to a subreaper other than PID 1 (a
systemd user manager, say) when DVC dies in the stage's first instant; the
watch then follows the subreaper.

What is left is the killed writer's temporary (`.<name>.<random>.tmp`), which
the stage's next run or `make repro` removes (docs/faults.md). Elsewhere than
Linux nothing is done: PR_SET_PDEATHSIG and /proc are Linux's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STAGE_ENV = "DVC_STAGE"  # set by DVC for every stage command (dvc/stage/run.py)
POLL_SECONDS = 1.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent PID, start time in clock ticks) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return int(fields[1]), int(fields[19])


def _argv(pid: int) -> list[str]:
    try:
        return [arg.decode(errors="replace") for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return []


def _runs_dvc(pid: int) -> bool:
    names = [os.path.basename(arg) for arg in _argv(pid)[:3]]
    return "dvc" in names[:2] or names[1:3] == ["-m", "dvc"]  # a `dvc` script, or `python -m dvc`


def dvc_process(pid: int | None = None) -> tuple[int, int] | None:
    """(PID, start time) of the process that runs the stage `pid` (default: this process), or None.

    That is the parent; or, when the parent is the shell DVC runs a command
    through (`$SHELL [options] -c <cmd>`), the shell's parent. Either way the
    DVC process, whether the `dvc` command or a program using DVC's API.
    """
    stat = _stat(os.getpid() if pid is None else pid)
    if stat is None:
        return None
    starter = stat[0]
    if "-c" in _argv(starter)[1:4]:
        shell = _stat(starter)
        if shell is None:
            return None
        starter = shell[0]
    started = _stat(starter)
    return None if started is None else (starter, started[1])


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == started


def _watch(pid: int, started: int) -> None:
    while _alive(pid, started):
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def follow_dvc() -> str:
    """Make this process die when the DVC process that runs it dies; return what was done (for tests and logs)."""
    if not sys.platform.startswith("linux") or STAGE_ENV not in os.environ:
        return "nothing: not a DVC stage on Linux"
    parent = os.getppid()
    starter = dvc_process()
    if starter is None:
        return "nothing: no parent process found"
    if starter[0] == 1 and not _runs_dvc(1):  # adopted by init already: DVC died before this line
        os.kill(os.getpid(), signal.SIGTERM)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return f"nothing: prctl failed ({os.strerror(ctypes.get_errno())})"
    if os.getppid() != parent:  # the parent died before the request: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
    if starter[0] == parent:
        return "parent death signal"
    threading.Thread(target=_watch, args=starter, name="follow-dvc", daemon=True).start()
    return f"parent death signal, and a watch on the DVC process (PID {starter[0]})"
