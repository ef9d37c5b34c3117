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
# # Summary and discussion
#
# **What this page shows.** Every experiment of this run side by side: each metric
# across the stages clean / attacked / retraining / LLT / both, in the grey-box and
# white-box settings (in the spirit of the thesis's figures 5.1 and 5.2), the answers
# to the three research questions for this run, and every number of the thesis's
# tables 4.1-4.18 beside ours.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from skinlib import plots
from skinlib.pages import show
from skinlib.paths import results_dir as profile_results_dir
from skinlib.pipeline import EXPERIMENTS
from skinlib.profiles import load_profile
from skinlib.report import banner, load_thesis_tables, thesis_comparison
from skinlib.results import read_results

prof = load_profile(profile, data_dir=data_dir)
# The experiments' CSVs live in the profile's results folder (this page may run in a staging folder).
source_dir = profile_results_dir(prof.name)
frames = [read_results(source_dir / f"{e}.csv") for e in EXPERIMENTS if (source_dir / f"{e}.csv").is_file()]
results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
missing = [e for e in EXPERIMENTS if not (source_dir / f"{e}.csv").is_file()]
dataset_json = source_dir / "dataset.json"
n_images = json.loads(dataset_json.read_text())["images"] if dataset_json.is_file() else 0
display(Markdown(banner(prof.name, prof.data.source, n_images)))
if missing:
    display(Markdown(f"Experiments without results in this profile yet: {', '.join(missing)}."))


class _Run:  # the figure saver of skinlib.pages.show needs only save_figure
    def __init__(self, folder):
        self.folder = Path(folder) if folder else source_dir

    def save_figure(self, fig, name):
        (self.folder / "figures").mkdir(parents=True, exist_ok=True)
        path = self.folder / "figures" / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        return path


saver = _Run(results_dir)

# %% [markdown]
# ## Recap across defences (thesis figures 5.1 and 5.2)

# %% tags=["hide-input"]
eps_key = f"{prof.fgsm.eps:.6g}"
if not results.empty:
    # one row per stage: FGSM at the thesis's eps (experiment 2.1 sweeps eps)
    at_eps = results[(results["experiment"] != "exp2_1_fgsm") | (results["param"].astype(str) == eps_key)]
    for model in prof.models:
        for attack in ("fgsm", "uap_art"):
            show(saver, plots.recap(at_eps, model=model, attack=attack,
                                    metrics=["accuracy", "macro_recall", "sensitivity", "npv", "fnr"]),
                 f"summary_recap_{model}_{attack}")

# %% [markdown]
# ## The research questions, answered for this run
#
# Generated from the results by the rule of the methods chapter: a change is named
# ("lowers", "raises", "holds") only when its paired 95% lesion-bootstrap interval
# excludes 0; otherwise the sentence says there is no measurable change.

# %% tags=["hide-input"]
from skinlib import verdicts  # noqa: E402

curves_csv = source_dir / "exp4_adaptive_curves.csv"
adaptive_curves = pd.read_csv(curves_csv) if curves_csv.is_file() else None
if not results.empty:
    display(Markdown("\n\n".join(verdicts.research_answers(results, prof.models, prof.fgsm.eps, adaptive_curves))))

# %% [markdown]
# ## Every thesis number beside ours
#
# Thesis values (percent) from its tables 4.1-4.18; ours from this run, under the
# thesis's own health grouping (nevi counted as cancerous), grey-box attacks, FGSM at
# the thesis's eps; the difference is ours minus the thesis's, in percentage points.
# The thesis trained ImageNet-initialised ResNet50/InceptionV3 at full resolution on a
# split by image; profiles other than `thesis` use smaller models and images, so
# differences measure the setting as much as the method.

# %% tags=["hide-input"]
from skinlib.models import MODELS

thesis_names = {m: MODELS[m].thesis_name for m in prof.models}
thesis = load_thesis_tables()
if thesis.empty or results.empty:
    display(Markdown("Thesis tables or results unavailable for this profile."))
    comparison = pd.DataFrame()
else:
    comparison = thesis_comparison(results, thesis, model_map=thesis_names,
                                   param_filter={"exp2_1_fgsm": prof.fgsm.eps})
    agree = comparison["difference"].abs() <= 5
    display(Markdown(f"{int(agree.sum())} of {int(comparison['difference'].notna().sum())} cells within 5 points of the thesis."))
pd.set_option("display.max_rows", 400)
comparison
