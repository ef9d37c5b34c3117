"""The benchmark tables keep one set of rows per profile (or model) side by side."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from results_csv import write_rows  # noqa: E402


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_run_replaces_only_its_own_rows(tmp_path):
    path = tmp_path / "uap.csv"
    write_rows(path, [{"profile": "default", "method": "a", "wall_s": 1.0}], "profile")
    write_rows(path, [{"profile": "ham10000", "method": "a", "wall_s": 2.0},
                      {"profile": "ham10000", "method": "b", "wall_s": 3.0}], "profile")
    write_rows(path, [{"profile": "default", "method": "a", "wall_s": 4.0}], "profile")
    rows = _read(path)
    assert [(r["profile"], r["method"], r["wall_s"]) for r in rows] == [
        ("default", "a", "4.0"), ("ham10000", "a", "2.0"), ("ham10000", "b", "3.0")]


def test_changed_columns_start_a_new_table(tmp_path):
    path = tmp_path / "llt.csv"
    write_rows(path, [{"profile": "default", "old_column": 1}], "profile")
    write_rows(path, [{"profile": "ham10000", "ratio": 1.9}], "profile")
    assert _read(path) == [{"profile": "ham10000", "ratio": "1.9"}]


def test_a_failed_write_leaves_the_old_table(tmp_path):
    path = tmp_path / "fgsm.csv"
    write_rows(path, [{"profile": "default", "wall_s": 1.0}], "profile")
    before = path.read_bytes()
    with pytest.raises(ValueError):  # a row with a column the header lacks
        write_rows(path, [{"profile": "smoke", "wall_s": 1.0}, {"profile": "smoke", "extra": 2}], "profile")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fgsm.csv"]


@pytest.mark.parametrize("script", ["bench_attacks.py", "bench_llt.py"])
def test_a_profile_without_its_data_is_an_error_not_a_stand_in(tmp_path, script):
    """Rows measured on a toy stand-in must never be written under the real profile's name."""
    import os
    import subprocess

    bench = Path(__file__).resolve().parent.parent / "benchmarks" / script
    env = {k: v for k, v in os.environ.items() if k != "SKINLIB_DATA_DIR"}
    out = ["--out-dir", str(tmp_path)] if script == "bench_attacks.py" else ["--out", str(tmp_path / "llt.csv")]
    proc = subprocess.run([sys.executable, str(bench), "--profile", "ham10000", *out], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data.data_dir") and "ham10000" in last
    assert list(tmp_path.iterdir()) == []
