"""The harder attack battery (benchmarks/stress_defences.py) on the smoke profile."""

from __future__ import annotations

import pandas as pd


def test_the_cascade_only_lowers_accuracy_and_reports_the_drop(tmp_path, run_benchmark):
    out = tmp_path / "stress.csv"
    proc = run_benchmark("stress_defences.py", "--out", str(out), "--systems", "retraining+llt", "--factor", "2",
                         "--square-queries", "50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out)
    for (model, defence), rows in table.groupby(["model", "defence"]):
        attacks = rows[rows["stage"] != "summary"]
        assert {"headline", "harder"} == set(attacks["stage"])
        assert "pgd_codec" in set(attacks["attack"])  # the system has the LLT: the codec attacks ran
        acc = attacks["accuracy"].to_numpy()
        assert (acc[1:] <= acc[:-1] + 1e-12).all()  # each attack only breaks images, never mends them
        assert (attacks["attacked"].to_numpy()[1:] <= attacks["attacked"].to_numpy()[:-1]).all()
        summary = rows[rows["stage"] == "summary"].iloc[0]
        headline = attacks[attacks["stage"] == "headline"]["accuracy"].iloc[-1]
        assert abs(summary["accuracy"] - (acc[-1] - headline)) < 1e-9
        assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"] <= 1e-12
        assert summary["newly_broken"] == attacks[attacks["stage"] == "harder"]["newly_broken"].sum()


def test_an_unknown_system_is_a_one_line_error(tmp_path, run_benchmark):
    out = tmp_path / "stress.csv"
    proc = run_benchmark("stress_defences.py", "--out", str(out), "--systems", "webp")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("stress_defences: --systems: unknown webp")
    assert not out.exists()
