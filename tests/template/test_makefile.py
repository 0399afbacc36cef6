"""`make help` is built from each target's own `## ` line: every target is listed, none by hand."""

from __future__ import annotations

import re
import subprocess

from src.pipeline import config

# A rule's target at the start of a line (not a variable: `NAME := value`, `NAME ?= value`).
TARGET = re.compile(r"^([a-z][a-z-]*):(?![=])", re.M)


def test_make_help_lists_every_target_with_its_own_words():
    makefile = (config.ROOT / "Makefile").read_text(encoding="utf-8")
    targets = TARGET.findall(makefile)
    assert {"help", "setup", "repro", "test", "clean-venv"} <= set(targets)
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=config.ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = dict(re.findall(r"^make (\S+) +(.+)$", shown, re.M))
    assert sorted(listed) == sorted(set(targets)), "a target without a `## ` line above it, or one listed twice"
    for target in targets:
        # The words are the `## ` line right above the target: one source, no list kept apart.
        assert f"## {listed[target]}\n{target}:" in makefile, target
