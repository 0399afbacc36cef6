"""Command line of `make verify` (see src/tools/verify/__init__.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.pipeline import config
from src.pipeline.lockfile import LockError
from src.tools.verify import REPORT, format_explanations, format_table, verify
from src.tools.verify.rebuild import VerifyError, variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.tools.verify", description="Rebuild a commit in a fresh clone and compare its dvc.lock."
    )
    parser.add_argument("--rev", default="HEAD", help="commit or tag to verify (default: HEAD)")
    parser.add_argument("--repo", type=Path, default=config.ROOT, help="repository (default: this checkout)")
    parser.add_argument("--vary", action="store_true", help="also rebuild under every perturbed environment")
    names = [variant.name for variant in variants(vary=True)]
    parser.add_argument(
        "--variant",
        action="append",
        choices=names,
        default=[],
        help="rebuild only under these environments (repeatable)",
    )
    parser.add_argument(
        "--target", action="append", default=[], help="rebuild only this stage and its upstream stages (repeatable)"
    )
    parser.add_argument("--report", type=Path, default=REPORT, help="JSON report (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clones (their path is reported)")
    args = parser.parse_args(argv)

    runs = variants(vary=True)
    if args.variant:
        runs = [variant for variant in runs if variant.name in args.variant]
    elif not args.vary:
        runs = runs[:1]
    try:
        report = verify(args.repo, args.rev, runs, args.target, args.report, args.keep)
    except (VerifyError, LockError, ValueError) as error:
        print(f"verify: error: {error}", file=sys.stderr)
        return 2
    print()
    print(format_table(report))
    explanations = format_explanations(report)
    if explanations:
        print()
        print(explanations)
    print()
    if report.get("workdir"):
        print(f"clones kept in {report['workdir']}")
    verdict = "every rebuilt hash is identical" if report["identical"] else "NOT reproduced: see the differences above"
    print(f"verify: {verdict}. Report: {report['report']}")
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
