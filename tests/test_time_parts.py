"""benchmarks/time_parts.py: an experiment's seconds split by the parts it calls (smoke profile)."""

from __future__ import annotations

import pandas as pd


def test_the_parts_add_up_to_the_wall_time_and_name_what_ran(tmp_path, run_benchmark):
    out = tmp_path / "parts.csv"
    proc = run_benchmark("time_parts.py", "--experiment", "exp3_2_llt", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out)
    assert set(table["run"]) == {"smoke/exp3_2_llt/seed-0"}
    wall = table.loc[table["part"] == "wall", "seconds"].item()
    parts = table[table["part"] != "wall"]
    assert (parts["seconds"] >= -0.01).all()
    assert abs(parts["seconds"].sum() - wall) < 0.05  # exclusive seconds plus the untimed glue make the wall
    names = set(parts["part"])
    assert {"fgsm", "uap_art", "uap_fast", "pgd", "predict_labels", "apply_llt", "bootstrap", "step:model",
            "step:uap", "untimed"} <= names
    # the white-box FGSM goes through the LLT; the grey-box one does not
    assert {True, False} == set(parts.loc[parts["part"] == "fgsm", "through_llt"])
    assert {True, False} == set(parts.loc[parts["part"] == "uap_fast", "through_llt"])  # BPDA white box too
    assert (parts.loc[parts["part"] == "pgd", "detail"].str.contains("steps=")).all()
    assert "exp3_2_llt:" in proc.stdout


def test_an_unknown_experiment_is_a_one_line_error(tmp_path, run_benchmark):
    out = tmp_path / "parts.csv"
    proc = run_benchmark("time_parts.py", "--experiment", "exp9", "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --experiment: 'exp9' is not one of exp0_classifier")
    assert not out.exists()
