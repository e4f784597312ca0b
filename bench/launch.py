"""Run one command and write its wall time, CPU and peak RSS as JSON, measured from a small parent.

    python -m bench.launch --usage-out FILE -- COMMAND [ARGS...]

Why a launcher: on Linux a child's `ru_maxrss` starts at its parent's RSS high-water mark (the
kernel carries the mark across fork and exec). Timing a command straight from the harness would
report the harness's own peak (100+ MB) for every side. Spawned from this small process, the
command's peak is its own, or this launcher's (about 10 MB), whichever is larger. stdin, stdout
and stderr are the launcher's; the exit code is the command's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def own_peak_rss_mb() -> float:
    """This process's own peak RSS (`VmHWM`), free of what the kernel carried from its parent."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.launch")
    parser.add_argument("--usage-out", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    args.usage_out.write_text(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "launcher_peak_rss_mb": own_peak_rss_mb(),
                "exit_code": code,
            }
        )
    )
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
