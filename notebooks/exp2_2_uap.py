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
# # Experiment 2.2: universal adversarial perturbations
#
# **What it asks.** Can one image-agnostic perturbation (Moosavi-Dezfooli et al. 2017),
# computed on training images, fool the classifiers on unseen test images? We compute
# it twice: with ART's `UniversalPerturbation` and an FGSM inner attacker, as the
# thesis did, and with our batched stochastic-gradient version (after Shafahi et al.
# 2020), and compare both with random noise of the same norm.
#
# **Parameters.** `uap.norm` and `uap.eps` (L-inf, default 8/255) or `uap.zeta`
# (L2, a share of the mean image norm, after Hirano et al. 2021); `uap.max_iter`
# (ART's passes), `uap.n_train_images`.
#
# **Thesis.** Tables 4.5 and 4.6, figures 4.10 and 4.11.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None
norm = None
eps = None
max_iter = None

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display

from skinlib import experiments, plots
from skinlib.context import open_run
from skinlib.pages import (TablesBy, attack_title, budget_text, compact_table, confusions, health_confusions, labels,
                           pct, show, styled, thesis_rows, uap_budget, uap_flip_reading, uap_reading, value)

run = open_run(profile, data_dir=data_dir, results_dir=results_dir,
               overrides={"seed": seed, "uap.norm": norm, "uap.eps": eps, "uap.max_iter": max_iter})
display(run.banner())
display(Markdown(budget_text(run)))

# %% tags=["hide-output"]
outcomes = experiments.exp2_2_uap(run)
results = run.save_results("exp2_2_uap")

# %% [markdown]
# ## The perturbations and what they cost to compute

# %% tags=["hide-input"]
rows = []
for m, o in outcomes.items():
    for method in ("uap_art", "uap_fast"):
        info = o.extras[method]["info"]
        rows.append({"model": m, "method": method, "norm": info["norm"], "budget": round(info["budget"], 5),
                     "training images": info["train_images"], "seconds": round(info["wall_s"], 1),
                     "test flip rate": pct(value(results, model=m, attack=method, metric="flip_rate")),
                     "test error rate": pct(value(results, model=m, attack=method, metric="error_rate"))})
        show(run, plots.perturbation_image(o.extras[method]["delta"], f"{m}: {plots.ATTACK_TEXT[method]}, "
                                                                    f"{uap_budget(run)} (amplified)"),
             f"exp2_2_delta_{m}_{method}")
pd.DataFrame(rows)

# %% [markdown]
# ## Confusion matrices under ART's UAP (thesis figures 4.10 and 4.11)

# %% tags=["hide-input"]
y = run.y("test")
preds = {m: o.predictions["uap_art"] for m, o in outcomes.items()}
show(run, plots.confusion_matrices(confusions(y, preds), labels(), attack_title(run, "uap_art")), "exp2_2_confusion")
show(run, plots.health_confusions(health_confusions(y, preds), attack_title(run, "uap_art")), "exp2_2_health_confusion")

# %% [markdown]
# ## Where the predictions go
#
# The thesis saw predictions collapse into one or two classes under the UAP.

# %% tags=["hide-input"]
for m, o in outcomes.items():
    show(run, plots.prediction_histogram({k: o.predictions[k] for k in ("clean", "uap_art", "uap_fast", "random")},
                                         labels(), title=f"{m}: predicted classes, clean and under each "
                                                         f"perturbation ({uap_budget(run)}, grey box)"),
         f"exp2_2_predictions_{m}")
display(Markdown(uap_reading(run, results, outcomes)))

# %% [markdown]
# ## Metrics (thesis tables 4.5 and 4.6)

# %% tags=["hide-input"]
display(styled(compact_table(results, index=["model", "attack"], grouping=None,
                             metrics=["accuracy", "macro_recall", "macro_specificity", "error_rate", "flip_rate"])))
display(TablesBy(results, "model", index=["attack", "grouping"], grouping=None,
                 metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"]))
thesis_rows(run, results, ["4.5", "4.6"])

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
display(Markdown(uap_flip_reading(results, list(outcomes))))
