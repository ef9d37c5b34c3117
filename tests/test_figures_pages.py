"""Figures that name what they show, compact tables and generated page text (issue #13, items 4-5)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from skinlib import pages, plots  # noqa: E402
from skinlib.labels import CLASSES  # noqa: E402
from skinlib.paths import ROOT  # noqa: E402
from skinlib.profiles import load_profile  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"


def row(**kw):
    base = dict(profile="smoke", experiment="exp0_classifier", model="resnet_tiny", attack="none", defence="none",
                setting="clean", param="", grouping="", metric="accuracy", value=0.5, ci_low=0.4, ci_high=0.6)
    base.update(kw)
    return base


def fake_run(tmp_path: Path, **train) -> SimpleNamespace:
    prof = load_profile("smoke")
    for k, v in train.items():
        setattr(prof.train, k, v)
    return SimpleNamespace(profile=prof, results_dir=tmp_path)


# --------------------------------------------------------------------------- confusion matrices


def test_confusion_titles_give_the_number_of_images_not_the_sum_of_shares():
    y = np.array([0, 1, 2, 3, 4, 5, 6] * 10 + [5] * 30)
    pred = np.roll(y, 3)
    fig = plots.confusion_matrices(pages.confusions(y, {"resnet": pred}), list(CLASSES), "FGSM eps 2/255, grey box")
    assert fig.axes[0].get_title() == "resnet (n = 100 images)"
    assert fig._suptitle.get_text().startswith("FGSM eps 2/255, grey box")
    # a matrix already normalised carries no count: the title names the model only, never "n = 7"
    fig = plots.confusion_matrices({"resnet": np.eye(7) * 0.5 + 0.5 / 7}, list(CLASSES), "x")
    assert fig.axes[0].get_title() == "resnet"


def test_health_confusions_name_the_attack_and_each_model():
    cm = np.array([[40, 10], [5, 15]])
    fig = plots.health_confusions({"resnet": {"clinical": cm}, "inception": {"clinical": cm}},
                                  "UAP (ART) L-inf 8/255, grey box, defence: llt")
    assert "UAP (ART) L-inf 8/255, grey box, defence: llt" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("resnet") for t in titles) and any(t.startswith("inception") for t in titles)
    assert all("n = 70 images" in t for t in titles)


def test_adversarial_panel_and_prediction_histogram_titles_name_the_model():
    img = np.zeros((1, 4, 4, 3), np.float32)
    fig = plots.adversarial_panel(img, img + 2 / 255, img + 2 / 255, ["nv"], ["mel"], ["nv"], title="resnet: FGSM")
    assert fig._suptitle.get_text().startswith("resnet: FGSM")
    assert fig.axes[0].get_title().startswith("clean")
    fig = plots.prediction_histogram({"clean": np.array([5, 5]), "uap_art": np.array([1, 1])},
                                     title="resnet: predicted classes")
    assert fig.axes[0].get_title() == "resnet: predicted classes"


# --------------------------------------------------------------------------- defence comparison


def defence_frames():
    und, dfd = [], []
    for m in ("resnet", "inception"):
        for metric, grouping, v in (("accuracy", "", 0.7), ("fnr", "clinical", 0.3)):
            und.append(row(model=m, metric=metric, grouping=grouping, value=v, ci_low=v - 0.05, ci_high=v + 0.05))
            dfd.append(row(model=m, metric=metric, grouping=grouping, defence="llt", value=v - 0.02,
                           ci_low=v - 0.07, ci_high=v + 0.03, experiment="exp3_2_llt"))
            for attack, param in (("fgsm", "0.00784314"), ("uap_art", "0.0313725")):
                und.append(row(model=m, metric=metric, grouping=grouping, attack=attack, setting="greybox",
                               param=param, value=v / 2, ci_low=v / 2 - 0.05, ci_high=v / 2 + 0.05))
                if attack == "fgsm":  # the sweep's other eps must not be picked
                    und.append(row(model=m, metric=metric, grouping=grouping, attack=attack, setting="greybox",
                                   param="0.0313725", value=0.01, ci_low=0.0, ci_high=0.02))
                for s, gain in (("greybox", 0.2), ("whitebox", 0.05)):
                    dfd.append(row(model=m, metric=metric, grouping=grouping, attack=attack, setting=s, defence="llt",
                                   value=v / 2 + gain, ci_low=v / 2 + gain - 0.05, ci_high=v / 2 + gain + 0.05))
    return pd.DataFrame(dfd), pd.DataFrame(und)


def test_defence_cases_pair_undefended_and_defended_per_attack_and_setting():
    dfd, und = defence_frames()
    cases = plots.defence_cases(dfd, und, "resnet", "accuracy", params={"fgsm": 2 / 255, "uap_art": 8 / 255})
    assert list(dict.fromkeys(cases["case"])) == ["clean", "FGSM\ngrey box", "FGSM\nwhite box",
                                                  "UAP (ART)\ngrey box", "UAP (ART)\nwhite box"]
    fgsm = cases[cases["case"] == "FGSM\ngrey box"].set_index("system")
    assert fgsm.loc["undefended", "value"] == pytest.approx(0.35)  # at eps 2/255, not the sweep's 8/255
    assert fgsm.loc["defended", "value"] == pytest.approx(0.55)
    assert not cases["ci_low"].isna().any()


def test_defence_comparison_panels_name_model_and_metric_with_interval_bars():
    dfd, und = defence_frames()
    fig = plots.defence_comparison(dfd, und, "LLT", params={"fgsm": 2 / 255, "uap_art": 8 / 255})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["resnet: accuracy", "resnet: FNR (clinical)", "inception: accuracy", "inception: FNR (clinical)"]
    assert "LLT" in fig._suptitle.get_text() and "95%" in fig._suptitle.get_text()
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 5  # undefended and defended bar per case
    assert ax.collections  # error bars drawn
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "clean" and "white box" in labels[-1]


# --------------------------------------------------------------------------- compact tables


def wide_results():
    rows = []
    for m in ("inception_small", "resnet_small"):
        for attack in ("fgsm", "uap_art", "uap_fast"):
            for s in ("greybox", "whitebox"):
                for metric in ("health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"):
                    rows.append(row(model=m, attack=attack, setting=s, metric=metric, grouping="clinical",
                                    value=0.612, ci_low=0.581, ci_high=0.64))
    return pd.DataFrame(rows)


def test_compact_table_one_cell_per_value_and_interval_and_page_width():
    t = pages.compact_table(wide_results(), index=["model", "attack", "setting"],
                            metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"])
    assert list(t.columns) == ["health accuracy %", "sensitivity %", "health specificity %", "NPV %", "FNR %"]
    assert t.index[0] == "inception_small · fgsm · greybox"
    assert all(re.fullmatch(r"61\.2 \[58(\.1)?, 64(\.0)?\]", c) for c in t.to_numpy().ravel())
    per_model = pages.TablesBy(wide_results(), "model", index=["attack", "setting"],
                               metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"])
    assert list(per_model.tables) == ["inception_small", "resnet_small"]
    for table in per_model.tables.values():
        assert table.index[0] == "fgsm · greybox" and table.shape == (6, 5)
        assert pages.table_width(table) <= pages.MAX_TABLE_CHARS
    narrow = pages.compact_table(wide_results()[lambda d: (d["metric"] == "fnr") & (d["attack"] == "fgsm")],
                                 index=["model", "setting"],
                                 metrics=["fnr"])
    assert narrow.iloc[0, 0] == "61.2 [58.1, 64.0]"


def test_defence_tables_are_styled_and_never_wrap():
    tables = pages.defence_tables(wide_results())
    html = tables[2]._repr_html_()
    assert "white-space: nowrap" in html and "FNR %" in html and "model resnet_small" in html


def test_format_cell():
    assert pages.format_cell(0.612, 0.581, 0.64) == "61.2 [58.1, 64.0]"
    assert pages.format_cell(float("nan")) == "—"
    assert pages.format_cell(0.5) == "50.0"


# --------------------------------------------------------------------------- generated text


@pytest.mark.parametrize("power, words", [(1.0, "inverse class frequency (as in the thesis)"),
                                          (0.5, "square root of the inverse class frequency")])
def test_training_text_states_the_profiles_class_weights(tmp_path, power, words):
    run = fake_run(tmp_path, class_weight_power=power)
    text = pages.training_text(run)
    assert words in text and f"{run.profile.train.epochs} epochs" in text


def test_retraining_text_comes_from_the_profile(tmp_path):
    run = fake_run(tmp_path)
    text = pages.retraining_text(run)
    c = run.profile.retraining
    assert f"{c.rounds} round(s) of {c.epochs_per_round} epoch(s)" in text
    assert "the thesis ran 5 rounds of 5 epochs" in text


def test_budget_text_compares_uap_and_fgsm_budgets(tmp_path):
    run = fake_run(tmp_path)
    text = pages.budget_text(run)
    assert "8/255" in text and "2/255" in text and "4 times" in text and "not a comparison" in text


def test_uap_collapse_finds_the_dominant_class():
    y = np.array([5] * 8 + [4] * 2)
    clean = y.copy()
    uap = np.array([1] * 7 + [5] * 3)
    c = pages.uap_collapse(y, clean, uap)
    assert c["class"] == "bcc" and c["share"] == pytest.approx(0.7) and c["clean_share"] == 0
    assert c["malignant"] == {"clinical": True, "thesis": True}


def test_uap_reading_explains_a_falling_fnr(tmp_path):
    run = fake_run(tmp_path)
    y = np.array([5] * 8 + [4] * 2)
    run.y = lambda part: y
    outcomes = {"resnet": SimpleNamespace(predictions={"clean": np.array([5] * 10), "uap_art": np.array([1] * 10)})}
    results = pd.DataFrame([row(model="resnet", attack="uap_art", metric="fnr", grouping="clinical", value=0.0),
                            row(model="resnet", attack="uap_art", metric="fnr_vs_clean", grouping="clinical",
                                value=-1.0)])
    text = pages.uap_reading(run, results, outcomes)
    assert "100.0% of the test predictions are `bcc`" in text
    assert "FNR falls from 100.0% (clean) to 0.0%" in text and "malignant class" in text


def test_llt_cost_text_states_the_clean_fnr_cost(tmp_path):
    run = fake_run(tmp_path)
    m = run.profile.models[0]
    exp0 = pd.DataFrame([row(model=m, metric="accuracy", value=0.70), row(model=m, metric="fnr", grouping="clinical",
                                                                          value=0.33)])
    exp0.to_csv(tmp_path / "exp0_classifier.csv", index=False)
    results = pd.DataFrame([row(model=m, defence="llt", metric="accuracy", value=0.74),
                            row(model=m, defence="llt", metric="fnr", grouping="clinical", value=0.44,
                                ci_low=0.38, ci_high=0.50),
                            row(model=m, defence="llt", metric="fnr", grouping="clinical", value=0.66,
                                param="quality 20")])
    text = pages.llt_cost_text(run, results)
    assert "clinical FNR (malignant lesions called benign) 33.0% without, 44.0% [38.0%, 50.0%] with, +11.0 points" \
        in text


def test_earlier_results_are_found_from_a_staging_folder(tmp_path):
    staging = tmp_path / ".staging" / "exp3_2_llt"
    staging.mkdir(parents=True)
    pd.DataFrame([row()]).to_csv(tmp_path / "exp0_classifier.csv", index=False)
    run = SimpleNamespace(profile=load_profile("smoke"), results_dir=staging)
    assert pages.earlier_result(run, "exp0_classifier") == tmp_path / "exp0_classifier.csv"
    assert len(pages.clean_results(run)) == 1


def test_with_clean_point_adds_eps_zero_from_the_clean_model():
    attacked = pd.DataFrame([row(attack=a, setting="greybox", param="0.00784314", value=0.3, experiment="exp2_1_fgsm")
                             for a in ("fgsm", "pgd")])
    clean = pd.DataFrame([row(value=0.8, ci_low=0.75, ci_high=0.85)])
    out = pages.with_clean_point(attacked, clean, ["fgsm", "pgd", "random"])
    zero = out[out["param"] == "0"]
    assert set(zero["attack"]) == {"fgsm", "pgd"}  # random has no rows of its own here
    acc = zero[(zero["attack"] == "fgsm") & (zero["metric"] == "accuracy")].iloc[0]
    assert acc["value"] == 0.8 and acc["ci_low"] == 0.75
    assert (zero[zero["metric"] == "flip_rate"]["value"] == 0).all()
    fig = plots.metric_curves(out, x="param", metrics=["accuracy"], x_scale=255, xlabel="eps (/255)")
    xs = np.concatenate([line.get_xdata() for line in fig.axes[0].get_lines()])
    assert 0.0 in xs and 2.0 in np.round(xs, 3)


# --------------------------------------------------------------------------- provenance and benchmarks


def test_provenance_view_shows_loaded_counts_and_no_machine_paths():
    prov = {"command": f"{ROOT}/.venv/bin/skinlib run --profile ham10000 --data-dir /srv/shared/data/ham10000",
            "dataset": {"images": 10015},
            "parameters": {"data": {"n_images": 3000, "source": "ham10000", "data_dir": "/srv/shared/data/ham10000"}}}
    view = pages.provenance_view(prov)
    assert view["parameters"]["data"]["n_images"] == 10015
    text = json.dumps(view)
    assert str(ROOT) not in text and "/srv/shared" not in text
    assert view["command"].startswith("./.venv/bin/skinlib")
    assert view["parameters"]["data"]["data_dir"] == "…/data/ham10000"
    assert prov["parameters"]["data"]["n_images"] == 3000  # the record itself is left alone


def test_provenance_runs_is_one_narrow_row_per_page():
    prov = {"experiments": {
        "data": {"status": "ok", "seed": 0, "duration_s": 90.0, "peak_memory_mib": 2048.0, "node": "vm",
                 "started": "2026-12-02T14:08:55+00:00", "ended": "2026-12-02T14:10:25+00:00",
                 "git_commit": "5659ac1295069c074edd403c762c3579b85d3ab3"},
        "exp1_poisoning": {"status": "failed", "seed": 0, "duration_s": None, "peak_memory_mib": None}}}
    table = pages.provenance_runs(prov)
    assert list(table.index) == ["data", "exp1_poisoning"]
    assert list(table.columns) == ["status", "seed", "minutes", "peak GiB", "ended", "commit"]
    assert table.loc["data"].tolist() == ["ok", 0, 1.5, 2.0, "2026-12-02 14:10", "5659ac1295"]
    assert table.loc["exp1_poisoning", "status"] == "failed" and pd.isna(table.loc["exp1_poisoning", "minutes"])
    assert pages.provenance_runs({}).empty


def test_benchmark_tables_split_per_profile_and_explain_the_uap_row(tmp_path):
    uap = pd.DataFrame([
        {"profile": "default", "method": "uap_art", "wall_s": 50.0, "test_flip_rate": 0.73, "test_images": 380,
         "schedule": "5 passes max, delta=0.0, converged=False", "model": "resnet_small:synthetic:64px"},
        {"profile": "ham10000", "method": "uap_art", "wall_s": 51.0, "test_flip_rate": 0.578, "test_images": 1252,
         "schedule": "5 passes max, delta=0.0, converged=False", "model": "resnet_small(loaded):ham10000:64px"},
    ])
    uap.to_csv(tmp_path / "uap.csv", index=False)
    found = pages.benchmark_tables(tmp_path)
    assert [(b, p) for b, p, _ in found] == [("uap", "default"), ("uap", "ham10000")]
    assert all("profile" not in t.columns for _, _, t in found)
    (tmp_path / "ham10000").mkdir()
    pd.DataFrame([row(profile="ham10000", experiment="exp2_2_uap", model="resnet_small", attack="uap_art",
                      setting="greybox", metric="flip_rate", value=0.739)]).to_csv(
        tmp_path / "ham10000" / "exp2_2_uap.csv", index=False)
    note = pages.benchmark_uap_note(uap, tmp_path)
    assert "delta=0.0" in note and "delta=0.2" in note and "73.9%" in note and "57.8%" in note
    assert "loaded from a file" in note
    both = pd.concat([uap.iloc[:1].assign(schedule="5 passes max, delta=0.0, converged=False", test_flip_rate=0.5),
                      uap.iloc[:1]])  # ART under both stopping rules, delta=0 first
    assert "delta=0.0 (ART's" in pages.benchmark_uap_note(both)  # no row under exp2.2's rule: the first
    two_rules = pd.concat([both.iloc[:1], both.iloc[:1].assign(schedule="5 passes max, delta=0.2, converged=True",
                                                               test_flip_rate=0.7)])
    picked = pages.benchmark_uap_note(two_rules)
    assert "ran with delta=0.2 (ART's" in picked and "fooled 70.0%" in picked
    banner = pages.benchmark_banner(found, "ham10000")
    assert "`default` (synthetic images" in banner and "`ham10000` (real images, source `ham10000`)" in banner


def test_benchmark_view_moves_constant_and_long_columns_out_of_the_table():
    table = pd.DataFrame({"method": ["art_pgd", "skinlib_pgd"], "wall_s": [12.3456, 2.0], "images": [512, 512],
                          "schedule": ["10 steps, step 0.25 eps, no random start", "the same, compiled"],
                          "accuracy": [0.25, 0.25]})
    view, words = pages.benchmark_view(table)
    assert list(view.columns) == ["method", "wall s"]
    assert view["wall s"].tolist() == [12.3, 2.0] and view["method"].tolist() == ["art pgd", "skinlib pgd"]
    assert "Every row: images 512; accuracy 0.25." in words
    assert "- art_pgd: 10 steps, step 0.25 eps, no random start" in words and "- skinlib_pgd: the same" in words
    one = pages.benchmark_view(table.iloc[:1])[0]  # one row: nothing is "constant", every short column stays
    assert list(one.columns) == ["method", "wall s", "images", "accuracy"]


# --------------------------------------------------------------------------- notebooks


def test_pages_type_no_schedule_or_weights():
    exp0 = (NOTEBOOKS / "exp0_classifier.py").read_text()
    exp31 = (NOTEBOOKS / "exp3_1_retraining.py").read_text()
    assert "inverse frequency" not in exp0 and "training_text(run)" in exp0
    assert "As in the thesis: 5 rounds" not in exp31 and "retraining_text(run)" in exp31


@pytest.mark.parametrize("name", ["exp2_1_fgsm", "exp2_2_uap", "exp3_1_retraining", "exp3_2_llt", "exp3_3_combined"])
def test_results_pages_show_figures_before_tables(name):
    text = (NOTEBOOKS / f"{name}.py").read_text()
    first_table = min(text.index(k) for k in ("compact_table(", "clean_table)") if k in text)
    first_figure = min(text.index(k) for k in ("show(run", "show_defence_comparison(run") if k in text)
    assert first_figure < first_table


def test_poisoning_reading_gives_the_fnr_under_both_groupings():
    rows = []
    for p, v in (("0", 0.2), ("0.6", 0.5)):
        rows += [row(model="m", param=p, metric="fnr", grouping="clinical", value=0.3),
                 row(model="m", param=p, metric="fnr", grouping="thesis", value=v),
                 row(model="m", param=p, metric="recall_nv", value=0.9)]
    text = pages.poisoning_reading(pd.DataFrame(rows), ["m"], 0.6)
    assert "clinical grouping 30.0% -> 30.0%" in text and "thesis's 20.0% -> 50.0%" in text


def test_show_into_a_folder_saves_the_titled_png(tmp_path):
    from PIL import Image

    fig = plots.class_histogram({"nv": 10, "bkl": 2}, {"nv": 5, "bkl": 7}, "resnet_small: training labels")
    pages.show(tmp_path, fig, "histogram")
    saved = tmp_path / "figures" / "histogram.png"
    assert Image.open(saved).text["Title"] == plots.figure_title(fig) and "resnet_small" in plots.figure_title(fig)
