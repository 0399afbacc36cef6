"""Check params.yaml before any stage deletes its outputs.

DVC deletes a stage's outputs before it starts the stage's command, and does
not bring them back when the command fails. Every stage validates the params
itself, but by then its outputs are gone: `max_iter: lots` caught inside train
would leave no model to serve until a good run.

So this check runs first, twice over:
- as the pipeline's first stage (dvc.yaml: gather depends on its marker file,
  and it depends on the whole of params.yaml), so a bare `dvc repro` or
  `dvc exp run` stops here with every output as it was;
- as `make repro`'s first step, before DVC reads params.yaml at all (`--check`):
  DVC itself cannot read an unquoted date, and then fails with "Unsupported
  value of type 'date'" before any stage runs. With `--recorded` it also checks
  the recorded categories and classes that train and evaluate need.

The marker's text never changes, so a params edit reruns this stage but not,
through the marker, gather. docs/faults.md has the recovery commands.

With `--sweep` (make repro's first step too) it removes the temporaries that a
killed stage left in the output folders: a later `dvc repro` that restores that
stage from the run-cache runs none of its code, so would leave them for good.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from src.pipeline import config, files
from src.pipeline.dataset import check_recorded, load_adapter
from src.pipeline.params import ParamsError, load_params

MARKER = config.PARAMS_CHECKED_MARKER
MARKER_TEXT = (
    "params.yaml passed the schema check of src/pipeline/check_params.py. The pipeline's first stage\n"
    "writes this file and gather depends on it, so DVC runs the check before any stage that\n"
    "deletes outputs. Its text never changes.\n"
)


def check(recorded: bool = False) -> str:
    """Validate params.yaml (and the adapter's section); with `recorded`, the categories and classes too.

    Returns the adapter's name; raises ParamsError naming every bad key.
    """
    params = load_params()
    adapter, _ = load_adapter(params)
    if recorded:
        check_recorded(params, adapter)
    return params.dataset.adapter


def output_folders(root: Path = config.ROOT) -> list[Path]:
    """The folders that hold dvc.yaml's outputs: where the stages write their temporaries."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    entries = [
        entry for stage in stages.values() for key in ("outs", "metrics", "plots") for entry in stage.get(key, [])
    ]
    return sorted({(root / (entry if isinstance(entry, str) else next(iter(entry)))).parent for entry in entries})


def sweep_temporaries(root: Path = config.ROOT) -> list[Path]:
    """Remove the `.*.tmp` entries in the output folders, unless a DVC command is writing there; return them.

    DVC releases its repository lock while a stage's command runs, and marks
    the stage's outputs in its read-write lock (.dvc/tmp/rwlock) instead. The
    sweep takes that same lock on the output folders, so a stage that is
    writing (its `dvc` alive) is never swept; a dead one's entry DVC drops.
    """
    from dvc.fs import localfs
    from dvc.lock import LockError
    from dvc.rwlock import rwlock

    root = Path(root).resolve()
    folders = [folder for folder in output_folders(root) if folder.is_dir()]
    tmp_dir = root / ".dvc" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        with rwlock(
            str(tmp_dir),
            localfs,
            "python -m src.pipeline.check_params --sweep",
            [],
            [str(folder) for folder in folders],
            False,
        ):
            return [entry for folder in folders for entry in files.remove_temporaries(folder)]
    except LockError:
        print(
            "check_params: a DVC command is writing outputs now; stale temporaries are left for later", file=sys.stderr
        )
        return []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.check_params", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check, write no marker (make repro runs this before DVC reads params.yaml)",
    )
    parser.add_argument(
        "--recorded",
        action="store_true",
        help="also check the recorded categories and classes (make categories writes them)",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also remove the temporaries a killed stage left in the output folders"
    )
    args = parser.parse_args(argv)
    name = check(recorded=args.recorded)
    if args.sweep:
        for entry in sweep_temporaries():
            print(f"check_params: removed {entry.relative_to(config.ROOT)}, left by a killed stage", file=sys.stderr)
    if not args.check:
        with files.atomic_open(MARKER) as handle:
            handle.write(MARKER_TEXT)
        print(f"check_params: params.yaml is valid (adapter {name})", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except ParamsError as error:
        sys.exit(f"check_params: error: {error}\nStopped before the pipeline stages: their outputs are as they were.")
