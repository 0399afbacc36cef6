"""The environment of a command run "inside" a venv, as `make` runs the stages.

dvc.yaml's commands call `python`, so whichever `python` comes first on PATH
runs the stages. verify, the benchmark and the tests start dvc from other
processes; they all build its environment here, so the stages run with the
locked venv and never with whatever `python` the caller's shell found first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def venv_env(venv: Path, base: Mapping[str, str] | None = None, **extra: str | None) -> dict[str, str]:
    """`base` (default: this process's environment) with `venv`'s bin/ first on PATH.

    Each `extra` variable is set, or removed when its value is None (e.g. to
    drop a SOURCE_URL that would point a clone at another source).
    """
    venv = Path(venv)
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join(filter(None, [str(venv / "bin"), env.get("PATH")]))
    # Only a real venv is announced as one: an interpreter outside any venv
    # (a container's system Python) has no VIRTUAL_ENV.
    if (venv / "pyvenv.cfg").is_file():
        env["VIRTUAL_ENV"] = str(venv)
    else:
        env.pop("VIRTUAL_ENV", None)
    # PYTHONHOME would make the venv's python load another installation's stdlib.
    env.pop("PYTHONHOME", None)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
