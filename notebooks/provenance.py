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
# # Provenance
#
# Where this profile's numbers come from: the code version, the parameters, the
# dataset, the machine, the package versions, and when and how long each page ran
# (peak memory is the largest resident size of a notebook kernel so far in the run).
# Paths are shown relative to the project (`./`) or the home folder (`~`), and the
# parameters' image count is the number of images the run actually loaded.

# %% tags=["parameters"]
profile = "default"
data_dir = None
results_dir = None
seed = None

# %% tags=["hide-input"]
import json

import pandas as pd
import yaml
from IPython.display import Markdown, display

from skinlib.pages import provenance_runs, provenance_view
from skinlib.paths import results_dir as profile_results_dir
from skinlib.profiles import load_profile

prof = load_profile(profile, data_dir=data_dir)
path = profile_results_dir(prof.name) / "provenance.json"
prov = provenance_view(json.loads(path.read_text())) if path.is_file() else {}
display(Markdown(f"Profile **{prof.name}**, data source **{prof.data.source}**; latest run: git commit "
                 f"`{prov.get('git_commit', 'unknown')}`, command `{prov.get('command', '')}`. Each page's "
                 "own commit is in the table below (pages not re-run keep the commit they ran at)."))

# %% [markdown]
# ## Pages of the run

# %% tags=["hide-input"]
provenance_runs(prov)

# %% [markdown]
# ## Machine and packages

# %% tags=["hide-input"]
display(pd.Series(prov.get("hardware", {}), dtype=object).to_frame("machine"))
pd.Series(prov.get("packages", {})).to_frame("version")

# %% [markdown]
# ## Parameters

# %% tags=["hide-input"]
display(Markdown("```yaml\n" + yaml.safe_dump(prov.get("parameters", prof.to_dict()), sort_keys=False) + "```"))
