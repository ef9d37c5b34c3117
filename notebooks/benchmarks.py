# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Performance benchmarks
#
# Measured by the scripts in `benchmarks/`, side by side in one run on one machine
# (ratios, not absolute times, are what carries over to another machine). Rerun them
# with `python benchmarks/bench_attacks.py`, `python benchmarks/bench_llt.py` and
# `python benchmarks/bench_training.py`.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display

from skinlib import report
from skinlib.paths import results_root

folder = results_root() / "benchmarks"
found = sorted(folder.glob("*.csv")) if folder.is_dir() else []
if not found:
    display(Markdown("No benchmark results yet: run the scripts in `benchmarks/`."))
for csv in found:
    display(Markdown(f"### {csv.stem}"))
    table = pd.read_csv(csv)
    if csv.stem == "uap":
        display(Markdown(report.uap_benchmark_summary(table)))
    display(table)
