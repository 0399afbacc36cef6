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
"""
from __future__ import annotations

import argparse
import sys

from src.pipeline import config, files
from src.pipeline.dataset import check_recorded, load_adapter
from src.pipeline.params import ParamsError, load_params

MARKER = config.PARAMS_CHECKED_MARKER
MARKER_TEXT = ("params.yaml passed the schema check of src/pipeline/check_params.py. The pipeline's first stage\n"
               "writes this file and gather depends on it, so DVC runs the check before any stage that\n"
               "deletes outputs. Its text never changes.\n")


def check(recorded: bool = False) -> str:
    """Validate params.yaml (and the adapter's section); with `recorded`, the categories and classes too.

    Returns the adapter's name; raises ParamsError naming every bad key.
    """
    params = load_params()
    adapter, _ = load_adapter(params)
    if recorded:
        check_recorded(params, adapter)
    return params.dataset.adapter


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.check_params", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only check, write no marker (make repro runs this before DVC reads params.yaml)")
    parser.add_argument("--recorded", action="store_true",
                        help="also check the recorded categories and classes (make categories writes them)")
    args = parser.parse_args(argv)
    name = check(recorded=args.recorded)
    if not args.check:
        with files.atomic_open(MARKER) as handle:
            handle.write(MARKER_TEXT)
        print(f"check_params: params.yaml is valid (adapter {name})", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except ParamsError as error:
        sys.exit(f"check_params: error: {error}\nStopped before the pipeline stages: their outputs are as they were.")
