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
# # Experiment 3.3: retraining and low-level transformation combined
#
# **What it asks.** Do the two defences together, the retrained models of experiment 3.1 behind the transformation of experiment 3.2, do better than each alone?
#
# **Two threat models.** *Grey box*, the thesis's setting: the perturbations are crafted
# on the undefended model of experiment 0 and given to the defended system. *White box*
# (adaptive, after Athalye et al. 2018 and Carlini et al. 2019): the attacker crafts them
# on the defended system itself. A defence that only holds in the grey box is reported
# as such.
#
# **Parameters.** those of experiments 3.1 and 3.2.
#
# **Thesis.** Tables 4.15, 4.16, 4.17 and 4.18.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import experiments
from skinlib.context import open_run
from skinlib.pages import (defence_reading, defence_tables, llt_cost_text, retraining_text,
                           show_defence_comparison, show_defence_confusions, thesis_rows)

run = open_run(profile, data_dir=data_dir, results_dir=results_dir, overrides={"seed": seed})
display(run.banner())
display(Markdown(retraining_text(run)))

# %% tags=["hide-output"]
outcomes = experiments.exp3_3_combined(run)
results = run.save_results("exp3_3_combined")
clean_table, attacked_model, attacked_health = defence_tables(results)

# %% [markdown]
# ## Accuracy and clinical FNR, undefended vs defended
#
# Clean, then under each attack in both threat models; bars are 95% lesion-bootstrap
# intervals. The undefended bar of an attack is the same in both settings: the attacker
# crafts on the undefended model either way.

# %% tags=["hide-input"]
show_defence_comparison(run, results, "exp3_3_combined", "retraining + LLT")
display(Markdown(llt_cost_text(run, results, "retraining + LLT")))

# %% [markdown]
# ## Confusion matrices (grey box, as in the thesis)

# %% tags=["hide-input"]
show_defence_confusions(run, outcomes, "exp3_3_combined", "retraining+llt")

# %% [markdown]
# ## The numbers
#
# Percent with 95% intervals: first the defence's cost on clean images, then model and
# health metrics (clinical grouping) under attack, grey box and white box.

# %% tags=["hide-input"]
display(clean_table)
display(attacked_model)
attacked_health

# %% [markdown]
# ## Beside the thesis

# %% tags=["hide-input"]
thesis_rows(run, results, ["4.15", "4.16", "4.17", "4.18"])

# %% [markdown]
# ## Against an adaptive attacker
#
# The white-box rows above keep the thesis's attacks (one FGSM step, the UAPs) and run
# them through the combined defence. Iterated attacks through the defence, of several kinds, with
# convergence and gradient-masking checks and a verdict, are in {doc}`exp4_adaptive`.

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
defence_reading(results, run.profile.models)
