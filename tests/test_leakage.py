"""The leakage check of experiment 0: a split by image shares lesions with training, a split by lesion never."""

from __future__ import annotations

import numpy as np
import pytest

from skinlib import experiments, plots
from skinlib.context import open_run


@pytest.fixture(scope="module")
def leakage_table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("leakage")
    mp = pytest.MonkeyPatch()
    mp.setenv("SKINLIB_CACHE_DIR", str(folder / "cache"))
    mp.setenv("SKINLIB_RESULTS_DIR", str(folder / "results"))
    try:
        run = open_run("smoke", overrides={"train.epochs": 1})
        yield run, experiments.split_leakage(run)
    finally:
        mp.undo()


def test_one_row_per_split_with_the_runs_model(leakage_table):
    run, table = leakage_table
    assert sorted(table["split"]) == ["by_image", "by_lesion"]
    assert set(table["model"]) == {run.profile.models[0]}
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()


def test_only_the_image_split_puts_seen_lesions_in_the_test_set(leakage_table):
    run, table = leakage_table
    seen = table.set_index("split")["seen_lesion_share"]
    assert seen["by_lesion"] == 0.0
    # the synthetic data has several images of some lesions, so an image split leaks
    assert len(np.unique(run.dataset.lesion_ids)) < len(run.dataset)
    assert seen["by_image"] > 0.0


def test_the_figure_names_its_model_and_both_splits(leakage_table):
    run, table = leakage_table
    fig = plots.split_leakage(table)
    assert run.profile.models[0] in fig.get_suptitle()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["by image", "by lesion"]
