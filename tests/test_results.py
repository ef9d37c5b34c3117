"""Tidy results: validation, byte-stable CSV, atomic writes that survive a crash."""

from __future__ import annotations

import math
import os

import pytest

import skinlib.results as results
from skinlib.errors import SkinlibError
from skinlib.metrics import evaluate
from skinlib.results import (
    COLUMNS,
    atomic_write_bytes,
    atomic_write_text,
    difference_metric,
    metric_rows,
    read_results,
    write_results,
)


def _row(**over):
    row = {
        "profile": "smoke", "experiment": "exp2_1_fgsm", "model": "resnet_small", "attack": "fgsm",
        "defence": "none", "setting": "greybox", "param": "0.0078125", "grouping": "clinical",
        "metric": "sensitivity", "value": 0.5, "ci_low": 1 / 3, "ci_high": float("nan"),
    }
    row.update(over)
    return row


def test_metric_rows_fill_context():
    ev = evaluate([0, 1, 5, 5], [0, 1, 1, 5], y_pred_clean=[0, 1, 5, 5], n_boot=0)
    rows = metric_rows(ev, profile="smoke", experiment="exp2_1_fgsm", model="m", attack="fgsm",
                       setting="greybox", param=2 / 255)
    assert len(rows) == len(ev)
    assert all(list(r) == COLUMNS for r in rows)
    assert {r["param"] for r in rows} == {"0.00784313725490196"}
    assert {r["defence"] for r in rows} == {"none"}
    assert metric_rows(ev, profile="p", experiment="exp0_classifier", model="m")[0]["param"] == ""
    assert metric_rows(ev, profile="p", experiment="exp1_poisoning", model="m", param=0.05)[0]["param"] == "0.05"


def test_roundtrip_and_exact_bytes(tmp_path):
    rows = [_row(), _row(grouping="", metric="accuracy", param="", value=0.1234567, ci_low=0.0, ci_high=1.0)]
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    write_results(a, rows)
    write_results(b, rows)
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == "smoke,exp2_1_fgsm,resnet_small,fgsm,none,greybox,0.0078125,clinical,sensitivity,0.500000,0.333333,"
    assert lines[2].endswith(",,accuracy,0.123457,0.000000,1.000000")
    df = read_results(a)
    assert list(df.columns) == COLUMNS and len(df) == 2
    assert df.loc[0, "value"] == 0.5 and math.isnan(df.loc[0, "ci_high"])
    assert df.loc[1, "grouping"] == "" and df.loc[1, "param"] == ""
    assert df.loc[0, "param"] == "0.0078125"  # text, not a float
    # written -> read -> written again gives the same bytes
    write_results(b, df.to_dict("records"))
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "row, message",
    [
        ({**_row(), "eps": 1.0}, "unknown column 'eps'"),
        ({k: v for k, v in _row().items() if k != "ci_low"}, "missing column 'ci_low'"),
        (_row(experiment="exp9_magic"), "unknown experiment 'exp9_magic'"),
        (_row(setting="blackbox"), "unknown setting 'blackbox'"),
        (_row(grouping="oncology"), "unknown grouping"),
        (_row(value=float("inf")), "'value' must be a finite number or NaN"),
        (_row(ci_low="0.3"), "'ci_low' must be a finite number"),
        (_row(metric=""), "'metric' is empty"),
        (_row(param=0.05), "'param' must be text"),
        (_row(metric="fooling_rate"), "unknown metric 'fooling_rate'"),
        (_row(metric="accurcy_vs_clean"), "'accurcy' is no known metric"),
        (_row(metric="accuracy_vs_Undefended"), "reference 'Undefended' is not a plain word"),
        (_row(metric="accuracy_vs_retraining+llt"), "reference 'retraining\\+llt' is not a plain word"),
        (_row(metric="accuracy_vs_"), "reference '' is not a plain word"),
        (_row(metric="accuracy_vs_llt_vs_clean"), "'accuracy_vs_llt' is no known metric"),
    ],
)
def test_validation_errors_leave_previous_file(tmp_path, row, message):
    path = tmp_path / "exp.csv"
    write_results(path, [_row()])
    before = path.read_bytes()
    with pytest.raises(SkinlibError, match=message) as err:
        write_results(path, [_row(), row])
    assert str(path) in str(err.value) and "row 2" in str(err.value)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == before


def _no_temp_files(folder) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["exp.csv"]


def test_crash_in_the_middle_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "exp.csv"
    write_results(path, [_row()])
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class HalfThenCrash:
        """A file that writes half of what it is given, then fails (disk full, kill, ...)."""

        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError("simulated crash mid-write")

    monkeypatch.setattr(results.os, "fdopen", lambda fd, mode: HalfThenCrash(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="simulated"):
        write_results(path, [_row(), _row(metric="fnr")])
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_failed_fsync_or_rename_keeps_previous_file(tmp_path, monkeypatch, fails):
    path = tmp_path / "exp.csv"
    write_results(path, [_row()])
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(f"simulated {fails} failure")

    monkeypatch.setattr(results.os, fails, boom)
    with pytest.raises(OSError, match="simulated"):
        write_results(path, [_row(metric="npv")])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)


def test_atomic_write_helpers(tmp_path):
    target = tmp_path / "deep" / "prov.json"
    atomic_write_text(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not a temp file's 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["prov.json"]


def test_read_results_errors(tmp_path):
    with pytest.raises(SkinlibError, match="no such results file"):
        read_results(tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("profile,experiment,model,metric,value\nsmoke,exp0_classifier,m,accuracy,0.5\n")
    with pytest.raises(SkinlibError, match="missing column.*attack") as err:
        read_results(bad)
    assert str(bad) in str(err.value)
    write_results(bad, [_row()])
    bad.write_text(bad.read_text().replace("0.500000", "half"))
    with pytest.raises(SkinlibError, match="'value' holds 'half'"):
        read_results(bad)
    bad.write_text(bad.read_text().replace("half", "0.5").replace("greybox", "redbox"))
    with pytest.raises(SkinlibError, match="unknown setting 'redbox'"):
        read_results(bad)


def test_difference_metrics_roundtrip(tmp_path):
    names = ["accuracy_vs_undefended", "fnr_vs_clean", "recall_akiec_vs_retraining_llt", "flip_rate_vs_noise"]
    assert [difference_metric(*n.split("_vs_")) for n in names] == names
    rows = [_row(metric=n, grouping="clinical" if n.startswith("fnr") else "", value=-0.25, ci_low=-0.5,
                 ci_high=0.0) for n in names]
    path = tmp_path / "diff.csv"
    write_results(path, rows)
    df = read_results(path)
    assert list(df["metric"]) == names and list(df["value"]) == [-0.25] * 4


@pytest.mark.parametrize("metric, reference, key", [
    ("fooling_rate", "clean", "metric"), ("accuracy", "Clean", "reference"), ("accuracy", "llt_vs_x", "reference"),
    ("accuracy", "", "reference"), ("accuracy", "retraining+llt", "reference"), ("accuracy", 3, "reference"),
])
def test_difference_metric_rejects_bad_names(metric, reference, key):
    with pytest.raises(SkinlibError, match=f"^{key}: "):
        difference_metric(metric, reference)


# --------------------------------------------------------------------------- Run.evaluate / Run.compare


def _run(tmp_path):
    """A Run over a tiny hand-made dataset, test images of several images per lesion (no model,
    and a stand-in profile with the three fields evaluate reads: loading one imports TensorFlow)."""
    from types import SimpleNamespace

    import numpy as np

    from skinlib.context import Run
    from skinlib.data import Dataset
    from skinlib.steps import StepCache

    rng = np.random.default_rng(0)
    n = 100
    lesion = np.sort(rng.integers(0, 40, n))
    labels = rng.integers(0, 7, 40)[lesion]
    ds = Dataset(images=np.zeros((n, 2, 2, 3), np.uint8), labels=labels,
                 lesion_ids=np.array([f"L{i:03d}" for i in lesion]), image_ids=np.array([f"I{i}" for i in range(n)]),
                 source="synthetic")
    test = np.flatnonzero(lesion % 5 < 3)
    rest = np.flatnonzero(lesion % 5 >= 3)
    splits = {"train": rest[: len(rest) // 2], "val": rest[len(rest) // 2:], "test": test}
    profile = SimpleNamespace(name="smoke", seed=3, bootstrap=200)
    return Run(profile=profile, results_dir=tmp_path, dataset=ds, splits=splits, cache=StepCache(tmp_path / "c"))


def test_run_evaluate_resamples_the_test_lesions(tmp_path):
    import numpy as np

    run = _run(tmp_path)
    y = run.y("test")
    pred = np.where(np.arange(y.size) % 3 == 0, (y + 1) % 7, y)
    rows = run.evaluate(y, pred, experiment="exp0_classifier", model="m")
    expect = evaluate(y, pred, n_boot=200, seed=run.profile.seed, groups=run.test_groups())
    assert [(r["metric"], r["ci_low"], r["ci_high"]) for r in rows] == [
        (r["metric"], r["ci_low"], r["ci_high"]) for r in expect]
    assert len(set(run.test_groups())) < y.size  # several images per lesion: a real cluster bootstrap
    assert set(run.test_groups()) == set(run.dataset.lesion_ids[run.splits["test"]])
    with pytest.raises(SkinlibError, match="^y_true: .*test split"):
        run.evaluate(run.y("val"), run.y("val"), experiment="exp0_classifier", model="m")
    with pytest.raises(SkinlibError, match="^groups: 3 lesion ids"):
        run.evaluate(y, pred, experiment="exp0_classifier", model="m", groups=run.test_groups()[:3])
    sub = np.arange(10)
    run.evaluate(y[sub], pred[sub], experiment="exp0_classifier", model="m", groups=run.test_groups(sub))
    assert len(run.rows) == 2 * len(rows)


def test_run_compare_writes_paired_difference_rows(tmp_path):
    import numpy as np

    run = _run(tmp_path)
    y = run.y("test")
    undefended = np.where(np.arange(y.size) % 2 == 0, (y + 1) % 7, y)
    defended = np.where(np.arange(y.size) % 4 == 0, (y + 1) % 7, y)
    rows = run.compare(y, defended, undefended, experiment="exp3_2_llt", model="m", attack="fgsm",
                       defence="llt", setting="whitebox", reference="undefended",
                       y_pred_clean=y, y_pred_clean_reference=y)
    by = {(r["grouping"], r["metric"]): r for r in rows}
    acc = by[("", "accuracy_vs_undefended")]
    assert acc["value"] == pytest.approx(np.mean(defended == y) - np.mean(undefended == y))
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    assert ("clinical", "fnr_vs_undefended") in by and ("thesis", "npv_vs_undefended") in by
    assert by[("", "error_rate_vs_undefended")]["value"] == pytest.approx(-acc["value"])
    assert {r["defence"] for r in rows} == {"llt"} and {r["setting"] for r in rows} == {"whitebox"}
    # identical systems: every difference is exactly 0
    same = run.compare(y, defended, defended, experiment="exp3_2_llt", model="m", defence="llt",
                       reference="clean")
    assert all((r["value"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0) for r in same if not math.isnan(r["value"]))
    df = run.save_results("exp3_2_llt")
    assert len(df) == len(rows) + len(same) and df["metric"].str.contains("_vs_").all()
    with pytest.raises(SkinlibError, match="^reference: "):
        run.compare(y, defended, undefended, experiment="exp3_2_llt", model="m", reference="retraining+llt")
    assert len(run.rows) == len(rows) + len(same)
