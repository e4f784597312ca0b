"""The metric files of a worker's process tree: what a start clears, what it keeps."""

from __future__ import annotations

import os
from pathlib import Path

from worker.metrics_files import clear_other_processes, remove_files


def touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"")


def test_a_start_drops_other_processes_files_and_keeps_its_own(tmp_path: Path) -> None:
    me = os.getpid()
    touch(tmp_path, "counter_1.db", "histogram_2.db", "gauge_livesum_3.db", f"counter_{me}.db")
    touch(tmp_path, "notes.txt", "counter_x.db")
    assert clear_other_processes(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{me}.db", "counter_x.db", "notes.txt"]
    )


def test_files_of_a_reused_pid_are_the_ones_removed_at_bootstrap(tmp_path: Path) -> None:
    me = os.getpid()
    touch(tmp_path, f"counter_{me}.db", f"histogram_{me}.db", "counter_1.db")
    assert remove_files(tmp_path, keep=lambda pid: pid != me) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["counter_1.db"]
