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
# # Experiment 2.1: FGSM
#
# **What it asks.** How much does a one-step gradient-sign perturbation (FGSM,
# Goodfellow et al. 2015) of size eps hurt the classifiers, and how does that compare
# with a stronger iterative attack (PGD) and with random noise of the same size?
#
# **Parameters.** `eps` (the thesis's 2/255), `eps_sweep` for the robustness curve,
# `pgd_steps`. Perturbations live in pixel space [0, 1], before each model's own
# normalisation, so eps means the same for both models.
#
# **Thesis.** Tables 4.3 and 4.4, figures 4.7-4.9.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None
eps = None
eps_sweep = None
pgd_steps = None

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import experiments, plots
from skinlib.context import open_run
from skinlib.pages import (attack_title, clean_results, compact_table, confusions, eps255, fgsm_reading,
                           health_confusions, labels, show, styled, thesis_rows, with_clean_point)

run = open_run(profile, data_dir=data_dir, results_dir=results_dir,
               overrides={"seed": seed, "fgsm.eps": eps, "fgsm.eps_sweep": eps_sweep, "fgsm.pgd_steps": pgd_steps})
display(run.banner())
cfg = run.profile.fgsm
key = experiments.fmt_param(cfg.eps)
display(Markdown(f"FGSM budget: eps = {cfg.eps:.5f} = {eps255(cfg.eps)} (L-inf, pixels in [0, 1])."))

# %% tags=["hide-output"]
outcomes = experiments.exp2_1_fgsm(run)
results = run.save_results("exp2_1_fgsm")

# %% [markdown]
# ## Examples (thesis figure 4.7)

# %% tags=["hide-input"]
for m, o in outcomes.items():
    ex = o.extras["examples"]
    n = len(ex["clean"])
    show(run, plots.adversarial_panel(ex["clean"], ex["adversarial"] - ex["clean"], ex["adversarial"],
                                      experiments.class_names(o.predictions["clean"][:n]),
                                      experiments.class_names(o.predictions[f"fgsm@{key}"][:n]),
                                      experiments.class_names(run.y("test")[:n]),
                                      title=f"{m}: {attack_title(run, 'fgsm')}"), f"exp2_1_examples_{m}")

# %% [markdown]
# ## Confusion matrices under FGSM (thesis figures 4.8 and 4.9)

# %% tags=["hide-input"]
y = run.y("test")
preds = {m: o.predictions[f"fgsm@{key}"] for m, o in outcomes.items()}
show(run, plots.confusion_matrices(confusions(y, preds), labels(), attack_title(run, "fgsm")), "exp2_1_confusion")
show(run, plots.health_confusions(health_confusions(y, preds), attack_title(run, "fgsm")), "exp2_1_health_confusion")

# %% [markdown]
# ## Robustness curve: FGSM, PGD and random noise
#
# An attack that does no better than random noise of the same size is not an attack.

# %% tags=["hide-input"]
curve = with_clean_point(results[results["grouping"] == ""], clean_results(run), ["fgsm", "pgd", "random"])
show(run, plots.metric_curves(curve, x="param", metrics=["accuracy", "flip_rate"], x_scale=255,
                              xlabel="eps (/255; L-inf, pixels in [0, 1]); 0 = clean",
                              title=f"FGSM, PGD ({cfg.pgd_steps} steps) and random noise against eps, grey box"),
     "exp2_1_robustness")

# %% [markdown]
# ## Metrics at the thesis's eps (thesis tables 4.3 and 4.4)

# %% tags=["hide-input"]
at_eps = results[(results["attack"] == "fgsm") & (results["param"] == key)]
display(styled(compact_table(at_eps, grouping=None,
                             metrics=["accuracy", "macro_recall", "macro_specificity", "error_rate", "flip_rate"])))
display(styled(compact_table(at_eps, metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"],
                             index=["model", "grouping"], grouping=None)))
thesis_rows(run, results, ["4.3", "4.4"], param_filter={"exp2_1_fgsm": cfg.eps})

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
display(Markdown(fgsm_reading(results, list(outcomes), key)))
