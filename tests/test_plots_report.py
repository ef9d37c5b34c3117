"""Figures (skinlib.plots) and book tables, banners and glue (skinlib.report), on small fake inputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skinlib import plots, report  # noqa: E402
from skinlib.errors import SkinlibError  # noqa: E402
from skinlib.labels import CLASSES, GROUPINGS  # noqa: E402


def row(**kw):
    base = dict(profile="smoke", experiment="exp0_classifier", model="resnet_tiny", attack="none", defence="none",
                setting="clean", param="", grouping="", metric="accuracy", value=0.5, ci_low=0.4, ci_high=0.6)
    base.update(kw)
    return base


def annotations(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# --------------------------------------------------------------------------- plots


def test_confusion_matrices_one_heatmap_per_model_annotated_row_normalised():
    rng = np.random.default_rng(0)
    cms = {"a": rng.integers(0, 20, (7, 7)), "b": rng.integers(0, 20, (7, 7))}
    cms["b"][3] = 0  # a class without images
    fig = plots.confusion_matrices(cms, list(CLASSES), "Clean")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    for ax, cm in zip(fig.axes, cms.values()):
        expected = cm / np.where(cm.sum(1, keepdims=True) > 0, cm.sum(1, keepdims=True), 1)
        wanted = [f"{v:.2f}" for r, vals in enumerate(expected) for v in vals if cm[r].sum() > 0]
        assert annotations(ax) == wanted
        assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert len(annotations(fig.axes[1])) == 42  # the empty row is not annotated
    assert "row-normalised" in fig._suptitle.get_text()


def test_confusion_matrices_rejects_wrong_shape():
    with pytest.raises(SkinlibError, match="shape"):
        plots.confusion_matrices({"a": np.eye(3)}, list(CLASSES), "x")


def test_row_normalise_rows_sum_to_one_and_nan_for_empty():
    out = plots.row_normalise(np.array([[1, 3], [0, 0]]))
    assert out[0].tolist() == [0.25, 0.75]
    assert np.isnan(out[1]).all()


def test_health_confusions_models_by_groupings_with_grouping_labels():
    cm = np.array([[8, 2], [1, 9]])  # [[TN, FP], [FN, TP]] as skinlib.metrics gives it
    fig = plots.health_confusions({"a": {"clinical": cm, "thesis": cm}, "b": {"clinical": cm, "thesis": cm}})
    assert len(fig.axes) == 4
    clinical, thesis = fig.axes[0], fig.axes[1]
    assert "malignant/benign" in clinical.get_xlabel()
    assert "cancerous/healthy as in the thesis" in thesis.get_xlabel() and "thesis" in thesis.get_title()
    assert [t.get_text() for t in clinical.get_yticklabels()] == ["benign", "malignant"]
    assert annotations(clinical) == ["0.80\n(8)", "0.20\n(2)", "0.10\n(1)", "0.90\n(9)"]


def test_training_curves_tolerates_missing_keys():
    hist = {"a": {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6], "accuracy": [0.3, 0.6, 0.7],
                  "val_accuracy": [0.2, 0.5, 0.6]},
            "b": {"loss": [0.9, 0.4]}}
    fig = plots.training_curves(hist)
    assert len(fig.axes) == 4  # 2 models x (accuracy, loss)
    acc_a, loss_a, acc_b, loss_b = fig.axes
    assert "accuracy" in acc_a.get_title() and "loss" in loss_a.get_title()
    assert len(acc_a.get_lines()) == 2 and len(loss_b.get_lines()) == 1
    assert list(loss_b.get_lines()[0].get_ydata()) == [0.9, 0.4]
    assert "not recorded" in annotations(acc_b)


def test_class_histogram_and_distribution():
    before = {c: 10 * (i + 1) for i, c in enumerate(CLASSES)}
    after = dict(before, nv=before["nv"] - 12, bkl=before["bkl"] + 12)
    fig = plots.class_histogram(before, after, "Label flipping")
    assert len(fig.axes) == 1
    heights = [p.get_height() for p in fig.axes[0].patches if p.get_height() > 0]
    assert sorted(heights) == sorted([*before.values(), *after.values()])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(CLASSES)

    counts = {"nv": 60, "mel": 10, "bkl": 10, "bcc": 5, "akiec": 5, "vasc": 5, "df": 5}
    fig = plots.class_distribution(counts, GROUPINGS)
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(CLASSES)
    texts = " ".join(annotations(fig.axes[1]))
    assert "malignant\n20.0%" in texts and "cancerous\n80.0%" in texts


def test_image_grid_rows_are_classes_present():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0] * 6 + [4] * 2 + [5] * 12)
    fig = plots.image_grid(imgs, labels, per_class=3, seed=0)
    assert len(fig.axes) == 9
    assert fig.axes[0].get_ylabel().startswith("akiec")
    assert fig.axes[3].get_ylabel().startswith("mel")
    shown = [len(ax.get_images()) for ax in fig.axes]
    assert shown == [1, 1, 1, 1, 1, 0, 1, 1, 1]  # mel has only two images
    same = plots.image_grid(imgs, labels, per_class=3, seed=0)
    assert np.array_equal(same.axes[0].get_images()[0].get_array(), fig.axes[0].get_images()[0].get_array())


def test_adversarial_panel_amplifies_perturbation():
    clean = np.full((2, 4, 4, 3), 0.5, dtype=np.float32)
    eps = 2 / 255
    delta = np.where(np.arange(4 * 4 * 3).reshape(1, 4, 4, 3) % 2 == 0, eps, -eps) * np.ones((2, 1, 1, 1))
    fig = plots.adversarial_panel(clean, delta, clean + delta, ["nv", "mel"], ["bkl", "mel"], ["nv", "mel"])
    assert len(fig.axes) == 6
    shown = np.asarray(fig.axes[1].get_images()[0].get_array())
    assert set(np.unique(shown).round(6)) == {0.0, 1.0}  # -eps -> 0, +eps -> 1
    assert "wrong" in fig.axes[2].get_title() and "wrong" not in fig.axes[5].get_title()
    uint8 = plots.adversarial_panel((clean * 255).astype(np.uint8), delta[0], (clean * 255).astype(np.uint8),
                                    ["nv", "nv"], ["nv", "nv"], ["nv", "nv"])
    assert uint8.axes[0].get_images()[0].get_array().max() <= 1.0


def test_amplify_maps_eps_range_to_unit():
    img, eps = plots.amplify(np.array([-0.1, 0.0, 0.05]))
    assert eps == pytest.approx(0.1)
    assert img.tolist() == pytest.approx([0.0, 0.5, 0.75])


def test_perturbation_image_and_prediction_histogram():
    fig = plots.perturbation_image(np.full((1, 6, 6, 3), 8 / 255), "UAP")
    assert len(fig.axes) == 1 and "8.0/255" in fig.axes[0].get_xlabel()

    clean = np.array([5, 5, 5, 4])
    adv = np.array([2, 2, 2, 2])
    fig = plots.prediction_histogram({"clean": clean, "UAP": adv}, list(CLASSES))
    assert len(fig.axes) == 1
    heights = sorted(p.get_height() for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == pytest.approx([0.25, 0.75, 1.0])
    fig = plots.prediction_histogram({"m1": {"clean": clean, "UAP": adv}, "m2": {"clean": clean, "UAP": adv}})
    assert len(fig.axes) == 2


def curve_frame() -> pd.DataFrame:
    rows = []
    for model in ("a", "b"):
        for attack in ("fgsm", "pgd"):
            for i, eps in enumerate((1 / 255, 2 / 255, 4 / 255)):
                for metric in ("accuracy", "sensitivity"):
                    for grouping in (("clinical", "thesis") if metric == "sensitivity" else ("",)):
                        v = 0.8 - 0.2 * i
                        rows.append(row(experiment="exp2_1_fgsm", model=model, attack=attack, setting="greybox",
                                        param=repr(eps), grouping=grouping, metric=metric, value=v,
                                        ci_low=v - 0.05, ci_high=v + 0.05))
    return pd.DataFrame(rows)


def test_metric_curves_one_panel_per_metric_with_bands():
    fig = plots.metric_curves(curve_frame(), metrics=["accuracy", "sensitivity"], xlabel="eps (/255)", x_scale=255)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert len(ax.collections) == 4  # one CI band per model x attack
    xs = sorted({round(float(x), 6) for line in ax.get_lines() for x in line.get_xdata()})
    assert xs == [1.0, 2.0, 4.0]
    assert ax.get_xlabel() == "eps (/255)"
    models = list(dict.fromkeys(curve_frame()["model"]))
    assert plots.figure_title(fig).startswith(f"models: {', '.join(models)} | ")  # no title given: the models
    titled = plots.metric_curves(curve_frame(), metrics=["accuracy"], title="FGSM against eps, grey box")
    assert titled._suptitle.get_text() == f"FGSM against eps, grey box; models: {', '.join(models)}"


def test_saved_png_carries_the_figure_titles(tmp_path):
    from PIL import Image

    fig = plots.metric_curves(curve_frame(), metrics=["accuracy"], title="FGSM against eps, grey box")
    path = plots.save_figure(fig, tmp_path / "curve.png")
    assert Image.open(path).text["Title"] == plots.figure_title(fig)
    assert "FGSM against eps, grey box; models: " in Image.open(path).text["Title"]


def test_metric_curves_refuses_to_average_hidden_rows():
    df = curve_frame()
    df = pd.concat([df, df.assign(setting="whitebox")])
    with pytest.raises(SkinlibError, match="setting"):
        plots.metric_curves(df, metrics=["accuracy"])


def recap_frame() -> pd.DataFrame:
    rows = [row(metric="accuracy", value=0.8), row(metric="sensitivity", grouping="clinical", value=0.9),
            row(metric="sensitivity", grouping="thesis", value=0.95)]
    for defence, setting, v in (("none", "greybox", 0.1), ("retraining", "greybox", 0.6),
                                ("retraining", "whitebox", 0.4), ("llt", "greybox", 0.7),
                                ("retraining+llt", "greybox", 0.75)):
        rows.append(row(attack="fgsm", defence=defence, setting=setting, metric="accuracy", value=v))
        rows.append(row(attack="fgsm", defence=defence, setting=setting, metric="sensitivity",
                        grouping="clinical", value=v))
    return pd.DataFrame(rows)


def test_recap_two_families_and_greybox_whitebox_lines():
    fig = plots.recap(recap_frame(), "resnet_tiny", "fgsm", ["accuracy", "sensitivity"])
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 5]
    assert len(lines) == 2  # greybox and whitebox for accuracy
    grey = np.asarray(lines[0].get_ydata(), dtype=float)
    white = np.asarray(lines[1].get_ydata(), dtype=float)
    assert grey.tolist() == pytest.approx([0.8, 0.1, 0.6, 0.7, 0.75])
    assert white[:3].tolist() == pytest.approx([0.8, 0.1, 0.4]) and np.isnan(white[3:]).all()
    assert len(plots.recap(recap_frame(), "resnet_tiny", "fgsm", ["accuracy"]).axes) == 1
    titled = plots.recap(recap_frame(), "resnet_tiny", "fgsm", ["accuracy"], budget="2/255")
    assert titled._suptitle.get_text().startswith("resnet_tiny against FGSM 2/255 (grey box and white box)")


# --------------------------------------------------------------------------- report


def test_load_thesis_tables_real_file():
    path = report.thesis_tables_path()
    if not path.is_file():
        pytest.skip(f"{path} absent")
    t = report.load_thesis_tables()
    assert list(t.columns) == report.THESIS_COLUMNS
    assert set(t["table"]) == {f"4.{i}" for i in range(1, 19)}
    assert set(t["model"]) == {"resnet50", "inceptionv3"}
    assert t["value_percent"].between(0, 100).all()


def test_load_thesis_tables_absent_gives_empty_frame(tmp_path, monkeypatch):
    monkeypatch.setenv(report.THESIS_TABLES_ENV, str(tmp_path / "nope.csv"))
    t = report.load_thesis_tables()
    assert t.empty and list(t.columns) == report.THESIS_COLUMNS
    assert report.thesis_comparison(pd.DataFrame([row()]), t, model_map={"a": "resnet50"}).empty


def test_load_thesis_tables_keeps_table_ids_as_text(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("table,experiment,model,attack,defence,family,metric,value_percent\n"
                 "4.10,exp0_classifier,resnet50,none,none,model,accuracy,84.3\n"
                 "4.1,exp0_classifier,resnet50,none,none,model,accuracy,84.3\n")
    assert report.load_thesis_tables(p)["table"].tolist() == ["4.10", "4.1"]
    p.write_text("table,model\n4.1,resnet50\n")
    with pytest.raises(SkinlibError, match="missing column"):
        report.load_thesis_tables(p)


def fake_thesis() -> pd.DataFrame:
    return pd.DataFrame([
        ("4.1", "exp0_classifier", "resnet50", "none", "none", "model", "accuracy", 84.3),
        ("4.2", "exp0_classifier", "resnet50", "none", "none", "health", "sensitivity", 95.0),
        ("4.3", "exp2_1_fgsm", "resnet50", "fgsm", "none", "model", "error_rate", 81.1),
        ("4.10", "exp3_1_retraining", "resnet50", "uap", "retraining", "model", "accuracy", 80.0),
        ("4.3", "exp2_1_fgsm", "inceptionv3", "fgsm", "none", "model", "error_rate", 90.0),
    ], columns=report.THESIS_COLUMNS)


def fake_ours() -> pd.DataFrame:
    rows = [
        row(model="resnet_small", metric="accuracy", value=0.80, ci_low=0.78, ci_high=0.82),
        row(model="resnet_small", metric="sensitivity", grouping="clinical", value=0.70),
        row(model="resnet_small", metric="sensitivity", grouping="thesis", value=0.97, ci_low=0.95, ci_high=0.99),
        row(model="resnet_small", metric="accuracy", setting="greybox", attack="fgsm", value=0.1),  # wrong setting
    ]
    for eps, v in ((1 / 255, 0.5), (2 / 255, 0.75), (4 / 255, 0.9)):
        rows.append(row(experiment="exp2_1_fgsm", model="resnet_small", attack="fgsm", setting="greybox",
                        param=repr(eps), metric="error_rate", value=v, ci_low=v - 0.01, ci_high=v + 0.01))
    rows.append(row(experiment="exp2_1_fgsm", model="resnet_small", attack="fgsm", setting="whitebox",
                    param=repr(2 / 255), metric="error_rate", value=0.99))
    rows.append(row(experiment="exp3_1_retraining", model="resnet_small", attack="uap_fast", defence="retraining",
                    setting="greybox", metric="accuracy", value=0.10))
    rows.append(row(experiment="exp3_1_retraining", model="resnet_small", attack="uap_art", defence="retraining",
                    setting="greybox", metric="accuracy", value=0.85))
    return pd.DataFrame(rows)


def test_thesis_comparison_matches_cells_and_computes_points():
    cmp = report.thesis_comparison(fake_ours(), fake_thesis(), model_map={"resnet_small": "resnet50"})
    assert list(cmp.columns) == report.COMPARISON_COLUMNS
    assert cmp["table"].tolist() == ["4.1", "4.2", "4.3", "4.3", "4.10"]
    got = cmp.set_index(["table", "model", "metric"])
    assert got.loc[("4.1", "resnet50", "accuracy"), "ours_%"] == pytest.approx(80.0)
    assert got.loc[("4.1", "resnet50", "accuracy"), "difference"] == pytest.approx(80.0 - 84.3)
    assert got.loc[("4.1", "resnet50", "accuracy"), "ci"] == "[78.0, 82.0]"
    # health metrics under the thesis's grouping, not the clinical one
    assert got.loc[("4.2", "resnet50", "sensitivity"), "ours_%"] == pytest.approx(97.0)
    assert got.loc[("4.2", "resnet50", "sensitivity"), "difference"] == pytest.approx(2.0)
    # the sweep is read at eps = 2/255, greybox
    assert got.loc[("4.3", "resnet50", "error_rate"), "ours_%"] == pytest.approx(75.0)
    assert got.loc[("4.3", "resnet50", "error_rate"), "difference"] == pytest.approx(75.0 - 81.1)
    # the thesis's UAP is ART's
    assert got.loc[("4.10", "resnet50", "accuracy"), "ours_%"] == pytest.approx(85.0)
    # no model of ours maps to inceptionv3
    incep = got.loc[("4.3", "inceptionv3", "error_rate")]
    assert np.isnan(incep["ours_%"]) and incep["our_model"] == ""


def test_thesis_comparison_param_filter_and_ambiguity():
    ours, thesis = fake_ours(), fake_thesis()
    cmp = report.thesis_comparison(ours, thesis, model_map={"resnet_small": "resnet50"},
                                   param_filter={"exp2_1_fgsm": "4/255"})
    got = cmp.set_index(["table", "model", "metric"])
    assert got.loc[("4.3", "resnet50", "error_rate"), "ours_%"] == pytest.approx(90.0)
    # params read back from CSV as floats still match
    floats = ours.assign(param=pd.to_numeric(ours["param"].replace("", np.nan)))
    cmp = report.thesis_comparison(floats, thesis, model_map={"resnet_small": "resnet50"})
    assert cmp.set_index(["table", "model", "metric"]).loc[("4.3", "resnet50", "error_rate"), "ours_%"] == 75.0
    with pytest.raises(SkinlibError, match="param"):
        report.thesis_comparison(ours, thesis, model_map={"resnet_small": "resnet50"},
                                 param_filter={"exp2_1_fgsm": None})


def test_metrics_table_formats_cis_in_metric_order():
    df = pd.DataFrame([
        row(model="b", metric="macro_recall", value=0.7004, ci_low=0.65, ci_high=0.751),
        row(model="b", metric="accuracy", value=0.8123, ci_low=0.79, ci_high=0.83),
        row(model="a", metric="accuracy", value=0.9, ci_low=np.nan, ci_high=np.nan),
        row(model="a", metric="npv", grouping="clinical", value=0.5, ci_low=0.4, ci_high=0.6),
        row(model="a", metric="npv", grouping="thesis", value=0.1, ci_low=0.0, ci_high=0.2),
    ])
    t = report.metrics_table(df)
    assert list(t.columns) == ["accuracy", "macro recall", "NPV"]
    assert list(t.index) == ["b", "a"]
    assert t.loc["b", "accuracy"] == "0.812 [0.79, 0.83]"
    assert t.loc["b", "macro recall"] == "0.700 [0.65, 0.75]"
    assert t.loc["a", "accuracy"] == "0.900"
    assert t.loc["a", "NPV"] == "0.500 [0.40, 0.60]"
    assert t.loc["a", "macro recall"] == "—"
    thesis = report.metrics_table(df, metrics=["npv"], grouping="thesis")
    assert thesis.loc["a", "NPV"] == "0.100 [0.00, 0.20]"
    with pytest.raises(SkinlibError, match="grouping"):
        report.metrics_table(df, grouping=None)


def test_banner_names_profile_and_flags_synthetic():
    syn = report.banner("default", "synthetic", 3000)
    assert "`default`" in syn and "synthetic" in syn and "not a HAM10000 result" in syn
    assert "3,000" in syn and "Warning" in syn
    assert all(line.startswith(">") for line in syn.strip().splitlines())
    real = report.banner("ham10000", "ham10000", 10015, extra="Split by lesion.")
    assert "`ham10000`" in real and "HAM10000" in real and "synthetic" not in real
    assert "Note" in real and "Split by lesion." in real
    assert "synthetic" in report.banner_html("smoke", "synthetic", 480)


def test_glue_values_and_noop_glue_outside_kernel(capsys):
    df = pd.DataFrame([
        row(model="resnet_small", metric="accuracy", value=0.8123, ci_low=0.79, ci_high=0.83),
        row(model="resnet_small", metric="npv", grouping="thesis", value=0.5, ci_low=np.nan, ci_high=np.nan),
    ])
    values = report.glue_values(df, "exp0")
    assert values == {"exp0_resnet_small_accuracy": "81.2%", "exp0_resnet_small_accuracy_ci": "79.0–83.0%",
                      "exp0_resnet_small_npv_thesis": "50.0%"}
    assert report.glue_metrics(df, "exp0") is None
    assert capsys.readouterr().out == ""
    with pytest.raises(SkinlibError, match="filter"):
        report.glue_values(pd.concat([df, df.assign(setting="greybox")]), "exp0")


def test_metric_labels():
    assert report.metric_label("macro_recall") == "macro recall"
    assert report.metric_label("recall_mel") == "recall mel"
    assert report.metric_label("npv") == "NPV"


def test_save_figure(tmp_path: Path):
    fig = plots.perturbation_image(np.zeros((4, 4, 3)), "zero")
    out = plots.save_figure(fig, tmp_path / "sub" / "f.png")
    assert out.is_file() and out.stat().st_size > 0


def test_uap_benchmark_summary_reports_the_measured_ratios():
    rows = [
        {"profile": "p1", "method": "uap_art", "wall_s": 50.0, "test_flip_rate": 0.7, "speedup_vs_art": 1.0, "model": "m"},
        {"profile": "p1", "method": "uap_fast_to_art_rate_cold", "wall_s": 0.8, "test_flip_rate": 0.71,
         "speedup_vs_art": 62.5, "model": "m"},
        {"profile": "p1", "method": "uap_fast_to_art_rate_warm", "wall_s": 0.5, "test_flip_rate": 0.71,
         "speedup_vs_art": 100.0, "model": "m"},
        {"profile": "p2", "method": "uap_art", "wall_s": 40.0, "test_flip_rate": 0.9, "speedup_vs_art": 1.0, "model": "m"},
        {"profile": "p2", "method": "uap_fast", "wall_s": 4.0, "test_flip_rate": 0.8, "speedup_vs_art": 10.0, "model": "m"},
        {"profile": "p2", "method": "uap_art_compiled_gradient", "wall_s": 13.3, "test_flip_rate": 0.9,
         "speedup_vs_art": 3.0, "model": "m", "schedule": "5 passes max, same perturbation as ART's stock run: True"},
    ]
    text = report.uap_benchmark_summary(pd.DataFrame(rows))
    p1, p2 = text.splitlines()
    assert "`p1`" in p1 and "50.0 s" in p1 and "0.700" in p1 and "62x sooner cold (0.80 s)" in p1 and "100x warm" in p1
    assert "compiled" not in p1
    assert "`p2`" in p2 and "did not reach it" in p2
    assert "compiled loss gradient (what the experiments run) took 13.3 s (3.0x), the same perturbation." in p2
    rows[-1].update(schedule="5 passes max, same perturbation as ART's stock run: False", test_flip_rate=0.85)
    p2 = report.uap_benchmark_summary(pd.DataFrame(rows)).splitlines()[1]
    assert "a different perturbation (float rounding of the gradient): test flip rate 0.850 against 0.900." in p2


def test_uap_benchmark_summary_has_a_line_per_art_stopping_rule():
    rows = [{"profile": "p", "art_delta": d, "method": m, "wall_s": w, "test_flip_rate": 0.7, "speedup_vs_art": r,
             "model": "m"}
            for d, art_s in ((0.2, 20.0), (0.0, 60.0))
            for m, w, r in (("uap_art", art_s, 1.0), ("uap_fast_to_art_rate_cold", 1.0, art_s),
                            ("uap_fast_to_art_rate_warm", 0.5, 2 * art_s))]
    lines = report.uap_benchmark_summary(pd.DataFrame(rows)).splitlines()
    assert len(lines) == 2
    assert "delta=0)" in lines[0] and "60.0 s" in lines[0] and "60x sooner cold" in lines[0]
    assert "delta=0.2)" in lines[1] and "20.0 s" in lines[1] and "20x sooner cold" in lines[1]


# --------------------------------------------------------------------------- thesis-shaped tables


def test_thesis_tables_rows_are_models_cells_thesis_then_ours_with_change_from_clean():
    ours = fake_ours()
    # a paired attack-vs-clean row at the thesis's eps: the change from clean takes its interval
    ours = pd.concat([ours, pd.DataFrame([row(experiment="exp2_1_fgsm", model="resnet_small", attack="fgsm",
                                              setting="greybox", param=repr(2 / 255), metric="accuracy_vs_clean",
                                              value=-0.55, ci_low=-0.60, ci_high=-0.50)])], ignore_index=True)
    views = report.thesis_tables(ours, fake_thesis(), model_map={"resnet_small": "resnet50"},
                                 budgets={"fgsm": "2/255", "uap": "L-inf 8/255"})
    by = {v.table: v for v in views}
    assert list(by) == ["4.1", "4.2", "4.3", "4.10"]
    clean = by["4.1"].frame
    assert list(clean.index) == ["ResNet50 (ours: resnet_small)"]
    assert clean.loc["ResNet50 (ours: resnet_small)", ("accuracy", "thesis | ours")] == "84.3 | 80.0 [78.0, 82.0]"
    assert ("accuracy", "Δ clean") not in clean.columns  # a clean table has no change from clean
    fgsm = by["4.3"]
    assert "FGSM at 2/255" in fgsm.caption and "grey box" in fgsm.caption and "seven-class" in fgsm.caption
    cell = fgsm.frame.loc["ResNet50 (ours: resnet_small)"]
    assert cell[("error rate", "thesis | ours")] == "81.1 | 75.0 [74.0, 76.0]"
    # thesis: 81.1 - (100 - 84.3); ours: -(accuracy_vs_clean), its interval mirrored
    assert cell[("error rate", "Δ clean")] == "+65.4 | +55.0 [+50.0, +60.0]"
    assert fgsm.frame.loc["InceptionV3 (no model of ours)", ("error rate", "thesis | ours")] == "90.0 | —"
    # no paired row for a defended system: the bare difference from our clean model, no interval
    uap = by["4.10"]
    assert "does not state its budget" in uap.caption and "L-inf 8/255" in uap.caption
    assert uap.frame.iloc[0][("accuracy", "Δ clean")] == "-4.3 | +5.0"
    assert "thesis's grouping" in by["4.2"].caption
    assert by["4.2"].frame.iloc[0][("sensitivity", "thesis | ours")] == "95.0 | 97.0 [95.0, 99.0]"
    html = report.thesis_tables_html(views)
    assert html.count("<table") == 4 and "Thesis table 4.10" in html
    assert report.thesis_tables(ours, fake_thesis(), model_map={"resnet_small": "resnet50"}, tables=["4.3"])[0].table \
        == "4.3"
    assert report.thesis_agreement(views) == ("3 of 4 absolute values lie within 5 points of the thesis's; "
                                              "0 of 2 changes from clean do.")


def test_attack_budgets_read_the_profile():
    from dataclasses import replace

    from skinlib.profiles import load_profile

    p = load_profile("smoke")
    assert report.attack_budgets(p) == {"fgsm": f"{p.fgsm.eps * 255:.3g}/255",
                                        "uap": f"L-inf {p.uap.eps * 255:.3g}/255"}
    l2 = replace(p, uap=replace(p.uap, norm="2", zeta=0.04))
    assert report.attack_budgets(l2)["uap"] == "L2 4% of the mean image norm"


def test_departures_read_our_side_from_the_profile():
    from dataclasses import replace

    from skinlib.profiles import load_profile

    keys = {d.key for d in report.DEPARTURES}
    assert {"image_size", "networks", "epochs", "retraining", "poisoning_epochs", "class_weights", "split",
            "uap_budget", "fooling_rate"} <= keys
    p = load_profile("ham10000")
    table = report.departures_table(p).set_index("difference")
    ours = table["this run (`ham10000`)"]
    assert ours["Image size"].startswith(f"{p.data.image_size} px")
    assert ours["Adversarial retraining"].startswith(
        f"{p.retraining.rounds} rounds x {p.retraining.epochs_per_round} epoch")
    assert "square root" in ours["Class weights"] and "by lesion" in ours["Train/validation/test split"]
    assert "thesis" not in ours["Image size"]
    # change the profile, the table follows
    other = replace(p, data=replace(p.data, image_size=299, split="by_image"))
    ours = report.departures_table(other).set_index("difference")["this run (`ham10000`)"]
    assert ours["Image size"] == "299 px (`data.image_size`), as in the thesis"
    assert ours["Train/validation/test split"].endswith("as in the thesis")
    for column in ("why", "what it should move", "thesis"):
        assert table[column].str.len().min() > 10
    md = report.departures_markdown(p)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == len(report.DEPARTURES) + 1 and all(r.count(" | ") == 2 for r in rows)  # 3 columns
    effects = [line for line in md.splitlines() if line.startswith("- **")]
    assert len(effects) == len(report.DEPARTURES)
    for d in report.DEPARTURES:  # each departure's effect and reason are in the text, under its name
        assert any(line.startswith(f"- **{d.topic}.** {d.moves}") and d.why in line for line in effects)


def test_seed_tables_show_experiment_4_by_defence_with_the_gain_over_undefended():
    from skinlib.report import seed_headline, seed_spread_markdown, seed_spread_tables

    rows = []
    for defence, clean, worst, gain in (("none", 0.72, 0.22, np.nan), ("llt", 0.75, 0.50, 0.28),
                                        ("pgd_at", 0.76, 0.62, 0.40)):
        cells = [("none", "clean", "accuracy", clean), ("worst_case", "whitebox", "accuracy", worst),
                 ("apgd_ce", "whitebox", "accuracy", worst + 0.05)]
        if defence != "none":
            cells.append(("worst_case", "whitebox", "accuracy_vs_undefended", gain))
        rows += [{"experiment": "exp4_adaptive", "model": "m", "attack": a, "defence": defence, "setting": s,
                  "param": "", "grouping": "", "metric": metric, "value": v, "ci_low": v - 0.04, "ci_high": v + 0.04,
                  "n_seeds": 3, "sd": 0.01, "min": v - 0.02, "max": v + 0.02} for a, s, metric, v in cells]
    table = pd.DataFrame(rows)
    head = seed_headline(table)
    assert "apgd_ce" not in set(head["attack"]) and len(head) == 3 + 3 + 2
    frame = seed_spread_tables(table, table.drop(columns=["n_seeds", "sd", "min", "max"]))["exp4"]
    assert frame.index.name == "model · defence"
    assert list(frame.loc["m · llt", "metric"]) == ["clean accuracy", "worst-case accuracy", "worst-case gain"]
    assert list(frame.loc["m · none", "metric"]) == ["clean accuracy", "worst-case accuracy"]
    words = seed_spread_markdown(table)
    assert "m · the LLT · worst case over the attacks +26.0 to +30.0" in words and "keeps its sign on every seed" in words
