# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from skinlib import experiments, plots
from skinlib.context import open_run
from skinlib.pages import confusions, health_confusions, labels, pct, show, thesis_rows, value
from skinlib.report import metrics_table

run = open_run(profile, data_dir=data_dir, results_dir=results_dir)
display(run.banner())

# %% tags=["hide-output"]
outcomes = experiments.exp3_2_llt(run)
results = run.save_results("exp3_2_llt")

# %% [markdown]
# ## Clean accuracy with the defence (its cost)

# %% tags=["hide-input"]
clean = results[results["attack"] == "none"]
display(metrics_table(clean, index=["model", "param"], metrics=["accuracy", "macro_recall", "fnr"], grouping="clinical"))

# %% [markdown]
# ## Under attack, grey box and white box

# %% tags=["hide-input"]
attacked = results[results["attack"] != "none"]
display(metrics_table(attacked, index=["model", "attack", "setting"],
                      metrics=["accuracy", "macro_recall", "macro_specificity", "error_rate", "flip_rate"], grouping=None))
display(metrics_table(attacked, index=["model", "attack", "setting"],
                      metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"], grouping="clinical"))

# %% [markdown]
# ## Confusion matrices (grey box, as in the thesis)

# %% tags=["hide-input"]
y = run.y("test")
for attack in ("fgsm", "uap_art"):
    preds = {m: o.predictions[f"{attack}/greybox"] for m, o in outcomes.items()}
    show(run, plots.confusion_matrices(confusions(y, preds), labels(), f"{attack}, grey box, defence: llt"),
         f"exp3_2_llt_confusion_{attack}")
    show(run, plots.health_confusions(health_confusions(y, preds)), f"exp3_2_llt_health_confusion_{attack}")

# %% [markdown]
# ## Beside the thesis

# %% tags=["hide-input"]
thesis_rows(run, results, ["4.11", "4.12", "4.13", "4.14"])

# %% [markdown]
# ## Reading

# %% tags=["hide-input"]
lines = []
for m in outcomes:
    for attack in ("fgsm", "uap_art", "uap_fast"):
        grey = value(results, model=m, attack=attack, setting="greybox", metric="accuracy")
        white = value(results, model=m, attack=attack, setting="whitebox", metric="accuracy")
        verdict = ("holds only against the grey-box attacker" if grey - white > 0.1 else
                   "behaves alike in both threat models")
        lines.append(f"- **{m}**, {attack}: accuracy {pct(grey)} grey box, {pct(white)} white box: the defence {verdict}.")
display(Markdown("On this run:\n\n" + "\n".join(lines)))
