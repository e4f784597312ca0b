"""The launcher measures a command's own peak RSS, not the high-water mark of whoever spawned it,
and passes the command's exit code on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.launch import own_peak_rss_mb

HOLD_MB = 200
CHILD_MB = 40

CHILD = f"""
block = bytearray({CHILD_MB} * 1024 * 1024)
for index in range(0, len(block), 4096):
    block[index] = 1
"""


def _launch(usage: Path, code: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "bench.launch", "--usage-out", str(usage)]
    return subprocess.run([*command, "--", sys.executable, "-c", code], check=False, timeout=60)


def test_a_big_parent_does_not_inflate_the_measured_peak(tmp_path: Path) -> None:
    held = bytearray(HOLD_MB * 1024 * 1024)
    for index in range(0, len(held), 4096):
        held[index] = 1
    assert own_peak_rss_mb() > HOLD_MB
    usage_file = tmp_path / "usage.json"
    assert _launch(usage_file, CHILD).returncode == 0
    usage = json.loads(usage_file.read_text())
    assert CHILD_MB < usage["peak_rss_mb"] < HOLD_MB / 2
    assert usage["exit_code"] == 0
    assert usage["wall_s"] > 0
    assert usage["cpu_s"] > 0
    del held


def test_the_command_exit_code_is_passed_on(tmp_path: Path) -> None:
    usage_file = tmp_path / "usage.json"
    assert _launch(usage_file, "raise SystemExit(3)").returncode == 3
    assert json.loads(usage_file.read_text())["exit_code"] == 3


def test_no_command_is_a_one_line_usage_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.launch", "--usage-out", str(tmp_path / "u.json")]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("error: no command to run")
    assert not (tmp_path / "u.json").exists()
