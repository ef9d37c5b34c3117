# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
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
# with `python benchmarks/bench_attacks.py`, `python benchmarks/bench_llt.py`,
# `python benchmarks/bench_training.py` and `python benchmarks/bench_grid.py` (the whole
# profile run by Snakemake on every core against `skinlib run`, each from nothing).
# `python benchmarks/uap_warmup.py` is not about speed: it checks, paired over attack
# seeds, that the fast UAP's warm-up (which brings it to ART's flip rate sooner) leaves
# the finished perturbation as strong.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import report
from skinlib.pages import benchmark_banner, benchmark_tables, benchmark_uap_note, benchmark_view
from skinlib.paths import results_root

folder = results_root() / "benchmarks"
found = benchmark_tables(folder)
display(Markdown(benchmark_banner(found, profile)))
if not found:
    display(Markdown("No benchmark results yet: run the scripts in `benchmarks/`."))
for bench, prof, table in found:
    display(Markdown(f"### {bench}" + (f" · profile `{prof}`" if prof else "")))
    if bench == "uap" and prof is not None:
        rows = table.assign(profile=prof)
        display(Markdown(report.uap_benchmark_summary(rows)))
        display(Markdown(benchmark_uap_note(rows, results_root())))
    if bench == "pgd" and prof is not None:
        display(Markdown(report.pgd_benchmark_summary(table.assign(profile=prof))))
    if bench == "uap_warmup" and prof is not None:
        display(Markdown(report.uap_warmup_summary(table.assign(profile=prof))))
    if bench == "grid" and prof is not None:
        display(Markdown(report.grid_benchmark_summary(table.assign(profile=prof))))
    view, taken_out = benchmark_view(table)
    display(view)
    if taken_out:
        display(Markdown(taken_out))
