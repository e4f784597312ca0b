"""The sweep profiler: a real (tiny) profiled sweep, and the py-spy summary it prints."""

from __future__ import annotations

import pstats
from pathlib import Path

import pytest

from bench.profile_sweep import print_py_spy, profile_sweep


def test_a_profiled_sweep_records_the_sweep_itself(tmp_path: Path) -> None:
    out = tmp_path / "sweep.prof"
    wall = profile_sweep(12, 0.0, out, tmp_path)
    assert wall > 0
    functions = {name for (_file, _line, name) in pstats.Stats(str(out)).stats}  # type: ignore[attr-defined]
    assert "run_sweep" in functions
    assert "send_due_intents" in functions


def test_the_py_spy_summary_counts_inclusive_samples_once_per_stack_and_own_at_the_leaf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    collapsed = tmp_path / "sweep.txt"
    collapsed.write_text(
        "thread;main (worker/cli/__init__.py:10);run_sweep (worker/services/sweep.py:5);"
        "loads (json/__init__.py:3) 6\n"
        "thread;main (worker/cli/__init__.py:10);run_sweep (worker/services/sweep.py:7) 4\n"
        "thread;_bootstrap (threading.py:1) 10\n"
    )
    print_py_spy(collapsed, top=5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("20 samples")
    ours = lines[lines.index("--- inclusive, our functions") + 1 : lines.index("--- own")]
    # Equal counts: their order is not defined, so compare them as a set.
    assert {tuple(line.split()) for line in ours} == {
        ("10", "50.0%", "main", "(worker/cli/__init__.py)"),
        ("10", "50.0%", "run_sweep", "(worker/services/sweep.py)"),
    }
    own = lines[lines.index("--- own") + 1 :]
    assert own[0].split()[:3] == ["10", "50.0%", "_bootstrap"]
    assert {line.split()[2]: int(line.split()[0]) for line in own} == {
        "_bootstrap": 10,
        "loads": 6,
        "run_sweep": 4,
    }
