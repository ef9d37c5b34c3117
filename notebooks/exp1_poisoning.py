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
# # Experiment 1: label-flip poisoning
#
# **What it asks.** If an attacker relabels part of the training images of class `nv`
# (melanocytic nevus) as `bkl` (benign keratosis), how much does the retrained model
# suffer, and where?
#
# **Parameters.** `poisoning.fractions` (share of nv training images flipped; the
# thesis used 5-60%), `poisoning.epochs` (the schedule of every point of the sweep,
# the clean point included, so the curve compares like with like).
#
# **Thesis.** Figures 4.5 and 4.6 (no table).

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None
fractions = None
epochs = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import experiments, plots
from skinlib.context import open_run
from skinlib.labels import CLASSES
from skinlib.pages import poisoning_reading, show

run = open_run(profile, data_dir=data_dir, results_dir=results_dir,
               overrides={"seed": seed, "poisoning.fractions": fractions, "poisoning.epochs": epochs})
display(run.banner())
cfg = run.profile.poisoning
display(Markdown(f"Schedule of every point: {cfg.epochs or run.profile.train.epochs} epochs "
                 f"(experiment 0 used {run.profile.train.epochs})."))

# %% tags=["hide-output"]
outcomes = experiments.exp1_poisoning(run)
results = run.save_results("exp1_poisoning")

# %% [markdown]
# ## The poisoned training set (thesis figure 4.5)

# %% tags=["hide-input"]
import numpy as np

top = max(cfg.fractions)
before = dict(zip(CLASSES, np.bincount(run.y("train"), minlength=7).tolist()))
after = dict(zip(CLASSES, np.bincount(experiments.poisoned_labels(run, top), minlength=7).tolist()))
show(run, plots.class_histogram(before, after, f"Label-flip poisoning: training labels before / after flipping "
                                f"{top:.0%} of nv to bkl"), "exp1_class_histogram")

# %% [markdown]
# ## Metrics against the poisoned fraction (thesis figure 4.6)
#
# Health metrics under both groupings: under the clinical one (malignant = mel, bcc,
# akiec) a flip of nv to bkl turns one benign class into another, so it can hardly move
# them; under the thesis's (nevi counted as cancerous) the same flip turns "cancerous"
# lesions into "healthy" ones, which is what the thesis's figure measured.

# %% tags=["hide-input"]
xlabel = "fraction of nv training images relabelled bkl"
show(run, plots.metric_curves(results, x="param", metrics=["accuracy", "macro_recall", "recall_nv", "recall_bkl"],
                              xlabel=xlabel, col_wrap=2, title="Label flip nv -> bkl: model metrics"),
     "exp1_model_metrics")
for grouping, note in (("clinical", "malignant: mel, bcc, akiec"), ("thesis", "nv counted as cancerous")):
    show(run, plots.metric_curves(results, x="param", metrics=["sensitivity", "npv", "fnr", "health_accuracy"],
                                  xlabel=xlabel, grouping=grouping, col_wrap=2,
                                  title=f"Label flip nv -> bkl: health, {grouping} grouping ({note})"),
         "exp1_health_metrics" if grouping == "clinical" else "exp1_health_metrics_thesis")

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
display(Markdown(poisoning_reading(results, list(outcomes), top)))
