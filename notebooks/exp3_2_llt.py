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
# # Experiment 3.2: low-level transformation
#
# **What it asks.** Does a low-level transformation in front of the model (WebP compression, then a horizontal flip; Yin et al. 2020) wash out the perturbations? It is implemented as an ART `Preprocessor`, so the white-box attacker goes through it with BPDA.
#
# **Two threat models.** *Grey box*, the thesis's setting: the perturbations are crafted
# on the undefended model of experiment 0 and given to the defended system. *White box*
# (adaptive, after Athalye et al. 2018 and Carlini et al. 2019): the attacker crafts them
# on the defended system itself. A defence that only holds in the grey box is reported
# as such.
#
# **Parameters.** `llt.quality` (WebP quality) and `llt.quality_sweep` (clean accuracy across qualities), `llt.flip`.
#
# **Thesis.** Tables 4.11, 4.12, 4.13 and 4.14.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import experiments, verdicts
from skinlib.context import open_run
from skinlib.pages import (defence_reading, defence_tables, llt_cost_text, retraining_text,
                           show_defence_comparison, show_defence_confusions, styled, thesis_rows)

run = open_run(profile, data_dir=data_dir, results_dir=results_dir, overrides={"seed": seed})
display(run.banner())

# %% tags=["hide-output"]
outcomes = experiments.exp3_2_llt(run)
results = run.save_results("exp3_2_llt")
clean_table, attacked_model, attacked_health = defence_tables(results)

# %% [markdown]
# ## Accuracy and clinical FNR, undefended vs defended
#
# Clean, then under each attack in both threat models; bars are 95% lesion-bootstrap
# intervals. The undefended bar of an attack is the same in both settings: the attacker
# crafts on the undefended model either way.

# %% tags=["hide-input"]
show_defence_comparison(run, results, "exp3_2_llt", "the LLT")
display(Markdown(llt_cost_text(run, results, "the LLT")))

# %% [markdown]
# ## Confusion matrices (grey box, as in the thesis)

# %% tags=["hide-input"]
show_defence_confusions(run, outcomes, "exp3_2_llt", "llt")

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
thesis_rows(run, results, ["4.11", "4.12", "4.13", "4.14"])

# %% [markdown]
# ## Which part of the LLT does the work?
#
# The LLT is two steps, a WebP round trip and a flip. The same grey-box perturbations
# (crafted on the undefended model; PGD at the same budget besides the thesis's attacks)
# are fed to the undefended model as crafted, through the flip alone, through WebP alone
# and through both. Accuracy in percent with 95% lesion-bootstrap intervals, on the whole
# test split.

# %% tags=["hide-input"]
parts = next(iter(outcomes.values())).extras["llt_parts"]
display(Markdown("\n\n".join(verdicts.llt_parts_answer(parts))))
styled(verdicts.llt_parts_table(parts))

# %% [markdown]
# ## Against an adaptive attacker
#
# The white-box rows above keep the thesis's attacks (one FGSM step, the UAPs) and run
# them through the LLT. Iterated attacks through the defence, of several kinds, with
# convergence and gradient-masking checks and a verdict, are in {doc}`exp4_adaptive`.

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
defence_reading(results, run.profile.models)
