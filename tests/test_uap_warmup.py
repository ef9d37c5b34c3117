"""benchmarks/uap_warmup.py: the fast UAP with and without its warm-up, paired over attack seeds (smoke)."""

from __future__ import annotations

import pandas as pd


def test_the_warmup_comparison_pairs_the_seeds_in_every_setting(tmp_path, run_benchmark):
    out = tmp_path / "uap_warmup.csv"
    proc = run_benchmark("uap_warmup.py", "--seeds", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out)
    models = set(table["model"])
    assert models == {"resnet_tiny", "inception_tiny"} and len(table) == 3 * len(models)
    assert set(table["setting"]) == {"undefended", "llt_greybox", "llt_whitebox"}
    assert (table["seeds"] == 2).all() and (table["warmup_steps"] == 2).all()
    for col in ("accuracy_no_warmup", "accuracy_warmup"):
        assert table[col].between(0, 1).all()
    # the difference is the difference of the means, inside its own interval
    assert ((table["accuracy_warmup"] - table["accuracy_no_warmup"] - table["difference"]).abs() < 2e-4).all()
    assert ((table["ci_low"] <= table["difference"]) & (table["difference"] <= table["ci_high"])).all()
    # each seed's line names both variants in every setting
    assert proc.stderr.count(" seed ") == 2 * len(models)


def test_one_seed_is_a_one_line_error(tmp_path, run_benchmark):
    out = tmp_path / "uap_warmup.csv"
    proc = run_benchmark("uap_warmup.py", "--seeds", "1", "--out", str(out))
    assert proc.returncode == 2 and "--seeds" in proc.stderr and not out.exists()
