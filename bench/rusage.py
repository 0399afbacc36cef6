"""Run one command and record what it cost: wall time, CPU time, peak memory.

    python bench/rusage.py OUT.json -- COMMAND [ARGS...]

A fresh process per measurement: `getrusage(RUSAGE_CHILDREN)` then covers
exactly the command and every descendant it waited for (dvc's stage
commands included), and `ru_maxrss` is the largest resident set of any one
of them, as the kernel counted it (no polling to miss a short peak). The
command's own output passes through.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    out, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        sys.exit(__doc__)
    started = time.perf_counter()
    returncode = subprocess.call(command)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
                "returncode": returncode,
            },
            handle,
        )
    return returncode


if __name__ == "__main__":
    sys.exit(main())
