"""benchmarks/compare_results.py: which tables a rerun reproduces, and by how much the others moved."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "compare_results.py"
PUBLISHED = ROOT / "results" / "ham10000"


def _compare(*args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_an_equal_table_is_identical_and_a_changed_value_is_reported(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir(), after.mkdir()
    for name in ("exp0_classifier.csv", "exp2_2_uap.csv"):
        shutil.copy(PUBLISHED / name, before / name)
        shutil.copy(PUBLISHED / name, after / name)
    lines = (after / "exp2_2_uap.csv").read_text().splitlines()
    first = lines[1].split(",")  # the first data row: bump its value by 0.01
    first[9] = f"{float(first[9]) + 0.01:.6f}"
    lines[1] = ",".join(first)
    (after / "exp2_2_uap.csv").write_text("\n".join(lines) + "\n")
    proc = _compare(before, after)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "exp0_classifier: identical" in out
    assert f"exp2_2_uap: 1 of {len(lines) - 1} values differ, largest change 0.0100" in out


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    proc = _compare(PUBLISHED, tmp_path / "nowhere")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such results folder"
