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
# # Experiment 0: the operational classifiers
#
# **What it asks.** How well do the two model families classify the seven lesion
# classes before any attack? These models are the targets of every later experiment.
#
# **Parameters.** The profile's models, epochs, batch size, class weights and learning
# rate (this run's values are stated below the banner); override any of them with
# papermill, e.g. `-p epochs 20`.
#
# **Thesis.** Tables 4.1 and 4.2, figures 4.1-4.3.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None
epochs = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import experiments, plots
from skinlib.context import open_run
from skinlib.pages import (classifier_reading, compact_table, confusions, health_confusions, labels, leakage_text,
                           show, styled, thesis_rows, training_text)
from skinlib.report import glue_metrics

run = open_run(profile, data_dir=data_dir, results_dir=results_dir, overrides={"seed": seed, "train.epochs": epochs})
display(run.banner())
display(Markdown(training_text(run)))

# %% tags=["hide-output"]
outcomes = experiments.exp0_classifier(run)
results = run.save_results("exp0_classifier")

# %% [markdown]
# ## Training curves (thesis figure 4.1)

# %% tags=["hide-input"]
show(run, plots.training_curves({m: o.history for m, o in outcomes.items()}), "exp0_training_curves")

# %% [markdown]
# ## Confusion matrices (thesis figures 4.2 and 4.3)

# %% tags=["hide-input"]
y = run.y("test")
preds = {m: o.predictions["clean"] for m, o in outcomes.items()}
show(run, plots.confusion_matrices(confusions(y, preds), labels(), "No attack, clean test set"), "exp0_confusion")
show(run, plots.health_confusions(health_confusions(y, preds), "No attack, clean test set"), "exp0_health_confusion")

# %% [markdown]
# ## Model and health metrics (thesis tables 4.1 and 4.2)
#
# Percent, with 95% bootstrap intervals over test lesions; health metrics under the
# clinical grouping (malignant = mel, bcc, akiec) and under the thesis's grouping.

# %% tags=["hide-input"]
display(styled(compact_table(results, metrics=["accuracy", "macro_recall", "macro_specificity"], grouping=None)))
display(styled(compact_table(results, metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"],
                             index=["model", "grouping"], grouping=None)))
glue_metrics(results[results["grouping"].isin(["", "clinical"])], "exp0")

# %% [markdown]
# ## Beside the thesis

# %% tags=["hide-input"]
thesis_rows(run, results, ["4.1", "4.2"])

# %% [markdown]
# ## Leakage: a split by image against a split by lesion
#
# HAM10000 holds several images of many lesions. The thesis (like DermaMNIST) split by
# image, so images of one lesion can sit in both the training and the test set; this
# compendium splits by lesion. The first model is trained once more, with the same data,
# schedule and seed, on a split by image, and both are scored on their own test sets.

# %% tags=["hide-input"]
if run.profile.data.leakage_check:
    leakage = experiments.split_leakage(run)
    show(run, plots.split_leakage(leakage), "exp0_split_leakage")
    display(Markdown(leakage_text(leakage)))
else:
    display(Markdown("This profile does not run the check (`data.leakage_check: false`)."))

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
display(Markdown(classifier_reading(results, list(outcomes))))
