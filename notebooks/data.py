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
# # The data
#
# **What this page shows.** The images behind every number of this run: how many there
# are per class, how many lesions they show, how they are split into training,
# validation and test sets, and what they look like (after the thesis's figures
# 3.5-3.8).
#
# **Prerequisites.** None: the dataset is loaded (and cached) by `skinlib`.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from skinlib import plots
from skinlib.context import open_run
from skinlib.data import get_source
from skinlib.labels import CLASSES, GROUPINGS
from skinlib.pages import show

run = open_run(profile, data_dir=data_dir, results_dir=results_dir, overrides={"seed": seed})
display(run.banner())

# %% [markdown]
# ## Source and counts

# %% tags=["hide-input"]
info = get_source(run.profile.data.source)
ds = run.dataset
counts = ds.class_counts()
n_lesions = len(np.unique(ds.lesion_ids))
display(Markdown(
    f"Source: **{info.name}**: {info.description} License: {info.license}. Citation: {info.citation}.\n\n"
    f"{len(ds):,} images of {n_lesions:,} lesions ({len(ds) / n_lesions:.2f} images per lesion), "
    f"decoded to {run.profile.data.image_size}x{run.profile.data.image_size} px (centre crop, Pillow resize)."
))
table = pd.DataFrame({"images": [counts[c] for c in CLASSES]}, index=list(CLASSES))
table["share"] = (table["images"] / table["images"].sum()).map(lambda v: f"{v:.1%}")
for name, positive in GROUPINGS.items():
    table[f"{name} grouping"] = ["malignant" if c in positive else "benign" for c in CLASSES]
table

# %% tags=["hide-input"]
show(run, plots.class_distribution(counts, GROUPINGS), "data_class_distribution")

# %% [markdown]
# ## The split
#
# Stratified by class, 70 / 17.5 / 12.5 % as in the thesis; by default grouped by
# lesion, so that no lesion has images on both sides of the train/test boundary.

# %% tags=["hide-input"]
rows = []
for part, idx in run.splits.items():
    c = np.bincount(ds.labels[idx], minlength=len(CLASSES))
    rows.append({"split": part, "images": len(idx), "share": f"{len(idx) / len(ds):.1%}",
                 "lesions": len(np.unique(ds.lesion_ids[idx])), **dict(zip(CLASSES, c))})
split_table = pd.DataFrame(rows).set_index("split")
sets = {k: set(ds.lesion_ids[v]) for k, v in run.splits.items()}
shared = len((sets["train"] & sets["test"]) | (sets["train"] & sets["val"]) | (sets["val"] & sets["test"]))
run.write_json("dataset.json", {"source": run.profile.data.source, "images": len(ds), "lesions": n_lesions,
                                "class_counts": counts, "split_sizes": {k: len(v) for k, v in run.splits.items()},
                                "lesions_in_two_splits": shared})
display(Markdown(f"Split mode: `{run.profile.data.split}`; lesions found in more than one split: **{shared}**."))
split_table

# %% [markdown]
# ## Examples per class

# %% tags=["hide-input"]
show(run, plots.image_grid(ds.images, ds.labels, per_class=6, seed=run.profile.seed), "data_examples")
