"""Metrics on hand-worked confusion matrices, zero denominators, bootstrap intervals."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from skinlib.errors import SkinlibError
from skinlib.metrics import (
    attack_metrics,
    bootstrap_ci,
    confusion,
    difference_key,
    evaluate,
    health_confusion,
    health_metrics,
    model_metrics,
    paired_difference,
    pool_over_seeds,
)

# Worked example: 3 of the 7 classes occur in y_true: akiec (0), mel (4), nv (5).
#   akiec: 4 images -> 3 akiec, 1 mel
#   mel:   3 images -> 2 mel,   1 nv
#   nv:    5 images -> 4 nv,    1 bkl (2)   (bkl is predicted but has no image)
Y_TRUE = np.array([0, 0, 0, 0, 4, 4, 4, 5, 5, 5, 5, 5])
Y_PRED = np.array([0, 0, 0, 4, 4, 4, 5, 5, 5, 5, 5, 2])


def test_model_metrics_worked_example():
    m = model_metrics(Y_TRUE, Y_PRED)
    assert m["accuracy"] == pytest.approx(9 / 12)
    assert m["recall_akiec"] == pytest.approx(3 / 4)
    assert m["recall_mel"] == pytest.approx(2 / 3)
    assert m["recall_nv"] == pytest.approx(4 / 5)
    # classes without images: NaN recall (bkl too, although it was predicted once)
    for c in ("bcc", "bkl", "df", "vasc"):
        assert math.isnan(m[f"recall_{c}"])
    # macro recall over the 3 present classes: (3/4 + 2/3 + 4/5) / 3 = 133/180
    assert m["macro_recall"] == pytest.approx(133 / 180)
    # specificity TN/(TN+FP), one class against the rest, present classes only:
    #   akiec: negatives 8, FP 0 -> 8/8;  mel: negatives 9, FP 1 (akiec->mel) -> 8/9;
    #   nv: negatives 7, FP 1 (mel->nv) -> 6/7.  Mean = (1 + 8/9 + 6/7)/3 = 173/189.
    # (bkl, absent, would have had 11/12 and is left out.)
    assert m["macro_specificity"] == pytest.approx(173 / 189)
    assert m["macro_specificity"] != pytest.approx((1 + 8 / 9 + 6 / 7 + 11 / 12) / 4)


def test_health_metrics_differ_between_groupings():
    # clinical (positive = akiec, bcc, mel): akiec row 4 TP; mel row 2 TP + 1 FN (->nv);
    # nv row 5 TN (nv and bkl are both benign).  TP=6 FN=1 FP=0 TN=5.
    c = health_metrics(Y_TRUE, Y_PRED, "clinical")
    assert c["health_accuracy"] == pytest.approx(11 / 12)
    assert c["sensitivity"] == pytest.approx(6 / 7)
    assert c["health_specificity"] == pytest.approx(5 / 5)
    assert c["npv"] == pytest.approx(5 / 6)
    assert c["fnr"] == pytest.approx(1 / 7)
    # thesis (positive also nv): akiec 4 TP; mel 3 TP (mel->nv stays positive);
    # nv 4 TP + 1 FN (->bkl).  TP=11 FN=1 FP=0 TN=0: specificity 0/0 -> NaN.
    t = health_metrics(Y_TRUE, Y_PRED, "thesis")
    assert t["health_accuracy"] == pytest.approx(11 / 12)
    assert t["sensitivity"] == pytest.approx(11 / 12)
    assert math.isnan(t["health_specificity"])
    assert t["npv"] == pytest.approx(0 / 1)
    assert t["fnr"] == pytest.approx(1 / 12)


def test_health_confusion_layout():
    # [[TN, FP], [FN, TP]] with the clinical counts above
    np.testing.assert_array_equal(health_confusion(Y_TRUE, Y_PRED, "clinical"), [[5, 0], [1, 6]])
    np.testing.assert_array_equal(health_confusion(Y_TRUE, Y_PRED, "thesis"), [[0, 0], [1, 11]])


def test_zero_denominators_give_nan_not_errors():
    y = np.array([5, 5, 2])  # only benign classes (clinical): no positive at all
    p = np.array([5, 2, 2])
    h = health_metrics(y, p, "clinical")
    assert math.isnan(h["sensitivity"]) and math.isnan(h["fnr"])
    assert h["health_specificity"] == 1.0 and h["npv"] == 1.0
    # a single class: its specificity has no negatives, so the macro mean is NaN
    m = model_metrics(np.array([3, 3]), np.array([3, 1]))
    assert m["recall_df"] == 0.5
    assert math.isnan(m["macro_specificity"])


def test_confusion_is_sklearn_7x7():
    counts = confusion(Y_TRUE, Y_PRED, normalize=None)
    assert counts.shape == (7, 7)
    assert counts[0, 0] == 3 and counts[0, 4] == 1 and counts[5, 2] == 1 and counts.sum() == 12
    norm = confusion(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(norm[[0, 4, 5]].sum(axis=1), 1.0)
    assert norm[[1, 2, 3, 6]].sum() == 0  # rows of classes without images
    with pytest.raises(SkinlibError, match="normalize"):
        confusion(Y_TRUE, Y_PRED, normalize="rows")


def test_attack_metrics_error_rate_vs_flip_rate():
    y = np.array([0, 1, 2, 3])
    clean = np.array([0, 1, 2, 0])  # already wrong on the last image
    adv = np.array([0, 2, 2, 0])
    a = attack_metrics(y, clean, adv)
    assert a["error_rate"] == pytest.approx(2 / 4)  # images 1 and 3 are wrong
    assert a["flip_rate"] == pytest.approx(1 / 4)  # only image 1 changed


@pytest.mark.parametrize(
    "args, key",
    [
        ((np.array([0, 1]), np.array([0])), "y_pred"),
        ((np.array([0, 7]), np.array([0, 1])), "y_true"),
        ((np.array([], dtype=int), np.array([], dtype=int)), "y_true"),
        ((np.array([0, 1]), np.array([0.5, 1.0])), "y_pred"),
    ],
)
def test_bad_input_names_the_argument(args, key):
    with pytest.raises(SkinlibError, match=key):
        model_metrics(*args)


def test_unknown_grouping():
    with pytest.raises(SkinlibError, match="grouping"):
        health_metrics(Y_TRUE, Y_PRED, "oncology")


def _noisy(n: int, seed: int, acc: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(7, size=n, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    p = np.where(rng.random(n) < acc, y, rng.integers(0, 7, n))
    return y, p


def _accuracy(t: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(t == p))


def test_bootstrap_contains_estimate_narrows_and_is_deterministic():
    y, p = _noisy(2000, 1)
    point = _accuracy(y, p)
    lo, hi = bootstrap_ci(_accuracy, [y, p], 300, seed=0)
    assert lo < point < hi
    assert bootstrap_ci(_accuracy, [y, p], 300, seed=0) == (lo, hi)
    assert bootstrap_ci(_accuracy, [y, p], 300, seed=1) != (lo, hi)
    lo_s, hi_s = bootstrap_ci(_accuracy, [y[:100], p[:100]], 300, seed=0)
    assert (hi_s - lo_s) > 2.5 * (hi - lo)  # width ~ 1/sqrt(n): sqrt(20) = 4.5
    # the 95% interval of a proportion is about +-1.96 sqrt(q(1-q)/n)
    half = 1.96 * math.sqrt(point * (1 - point) / y.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)


def test_bootstrap_zero_resamples_is_nan():
    lo, hi = bootstrap_ci(_accuracy, [Y_TRUE, Y_PRED], 0, seed=0)
    assert math.isnan(lo) and math.isnan(hi)
    rows = evaluate(Y_TRUE, Y_PRED, n_boot=0)
    assert all(math.isnan(r["ci_low"]) and math.isnan(r["ci_high"]) for r in rows)


def test_evaluate_rows_match_point_metrics_and_generic_bootstrap():
    y, p = _noisy(400, 2)
    _, clean = _noisy(400, 2, acc=0.9)
    rows = evaluate(y, p, y_pred_clean=clean, n_boot=200, seed=3)
    by_key = {(r["grouping"], r["metric"]): r for r in rows}
    assert len(rows) == 10 + 2 * 5 + 2 == len(by_key)
    for k, v in model_metrics(y, p).items():
        assert by_key[("", k)]["value"] == pytest.approx(v, nan_ok=True)
    for g in ("clinical", "thesis"):
        for k, v in health_metrics(y, p, g).items():
            assert by_key[(g, k)]["value"] == pytest.approx(v, nan_ok=True)
    for k, v in attack_metrics(y, clean, p).items():
        assert by_key[("", k)]["value"] == pytest.approx(v)
    assert by_key[("", "error_rate")]["value"] == pytest.approx(1 - by_key[("", "accuracy")]["value"])
    # the vectorised bootstrap draws the same resamples as bootstrap_ci
    for metric, fn in [
        ("macro_recall", lambda t, q: model_metrics(t, q)["macro_recall"]),
        ("accuracy", _accuracy),
    ]:
        expect = bootstrap_ci(fn, [y, p], 200, seed=3)
        got = by_key[("", metric)]
        assert (got["ci_low"], got["ci_high"]) == pytest.approx(expect)
    sens = bootstrap_ci(lambda t, q: health_metrics(t, q, "thesis")["sensitivity"], [y, p], 200, seed=3)
    assert (by_key[("thesis", "sensitivity")]["ci_low"], by_key[("thesis", "sensitivity")]["ci_high"]) == pytest.approx(sens)
    for r in rows:
        if not math.isnan(r["value"]):
            assert r["ci_low"] <= r["value"] <= r["ci_high"], r


def test_evaluate_without_clean_has_no_attack_rows():
    metrics = {r["metric"] for r in evaluate(Y_TRUE, Y_PRED, n_boot=10)}
    assert "error_rate" not in metrics and "flip_rate" not in metrics
    assert {"accuracy", "macro_recall", "macro_specificity", "recall_vasc", "npv", "fnr"} <= metrics


def test_evaluate_is_fast_enough():
    y, p = _noisy(1250, 4)
    _, clean = _noisy(1250, 4, acc=0.9)
    start = time.perf_counter()
    evaluate(y, p, y_pred_clean=clean, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 2.0  # measured ~0.03 s


# --------------------------------------------------------------------------- lesion bootstrap


def _lesion_data(n_lesions: int, seed: int, acc: float = 0.7):
    """Lesions of 1-5 images each; every image of a lesion has the lesion's class and is
    right or wrong together (the extreme of correlated images). Ids are strings, shuffled."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_lesions)
    lesion_class = rng.choice(7, size=n_lesions, p=[0.1, 0.1, 0.15, 0.05, 0.15, 0.4, 0.05])
    lesion_right = rng.random(n_lesions) < acc
    lesion_wrong_to = (lesion_class + rng.integers(1, 7, n_lesions)) % 7
    lesion = np.repeat(np.arange(n_lesions), sizes)
    y = lesion_class[lesion]
    p = np.where(lesion_right[lesion], y, lesion_wrong_to[lesion])
    order = rng.permutation(lesion.size)
    ids = np.array([f"L{i:05d}" for i in rng.permutation(n_lesions)])[lesion]
    return y[order], p[order], ids[order]


def _slow_lesion_intervals(y, p, groups, n_boot, seed, metrics, clean=None, alpha=0.05):
    """Reference: draw lesions, concatenate the drawn lesions' images, score them one by one."""
    lesions = np.unique(groups)  # the sorted order the bootstrap numbers lesions in
    members = [np.flatnonzero(groups == lesion) for lesion in lesions]
    assert n_boot * lesions.size <= 4_000_000  # one chunk: the same stream of draws
    draws = np.random.default_rng(seed).integers(0, lesions.size, size=(n_boot, lesions.size))
    samples = {m: [] for m in metrics}
    for row in draws:
        idx = np.concatenate([members[k] for k in row])
        for m, fn in metrics.items():
            samples[m].append(fn(y[idx], p[idx], None if clean is None else clean[idx]))
    out = {}
    for m, s in samples.items():
        s = np.asarray(s, dtype=float)
        out[m] = tuple(np.quantile(s[~np.isnan(s)], [alpha / 2, 1 - alpha / 2]))
    return out


_REFERENCE_METRICS = {
    "accuracy": lambda t, q, c: model_metrics(t, q)["accuracy"],
    "macro_recall": lambda t, q, c: model_metrics(t, q)["macro_recall"],
    "recall_df": lambda t, q, c: model_metrics(t, q)["recall_df"],
    "clinical:fnr": lambda t, q, c: health_metrics(t, q, "clinical")["fnr"],
    "thesis:health_specificity": lambda t, q, c: health_metrics(t, q, "thesis")["health_specificity"],
    "flip_rate": lambda t, q, c: attack_metrics(t, c, q)["flip_rate"],
}


def test_lesion_bootstrap_keeps_a_lesions_images_together():
    y, p, groups = _lesion_data(120, seed=5)
    rng = np.random.default_rng(6)
    clean = np.where(rng.random(y.size) < 0.8, y, p)
    rows = evaluate(y, p, y_pred_clean=clean, n_boot=200, seed=7, groups=groups)
    by_key = {difference_key(r["grouping"], r["metric"]): r for r in rows}
    # the vectorised weighted counts equal scoring the concatenated lesions, metric by metric
    slow = _slow_lesion_intervals(y, p, groups, 200, 7, _REFERENCE_METRICS, clean=clean)
    for m, (lo, hi) in slow.items():
        assert (by_key[m]["ci_low"], by_key[m]["ci_high"]) == pytest.approx((lo, hi), abs=1e-12), m
    # so does the generic bootstrap_ci with the same groups
    assert bootstrap_ci(_accuracy, [y, p], 200, seed=7, groups=groups) == pytest.approx(slow["accuracy"], abs=1e-12)
    # images of one lesion are right or wrong together: resampling images understates the
    # uncertainty, by about sqrt(mean images per lesion x design effect) here
    image = {r["metric"]: r for r in evaluate(y, p, n_boot=200, seed=7) if r["grouping"] == ""}
    lesion_width = by_key["accuracy"]["ci_high"] - by_key["accuracy"]["ci_low"]
    image_width = image["accuracy"]["ci_high"] - image["accuracy"]["ci_low"]
    assert lesion_width > 1.4 * image_width
    for r in rows:
        if not math.isnan(r["value"]):
            assert r["ci_low"] <= r["value"] <= r["ci_high"], r


def test_one_image_per_lesion_is_the_image_bootstrap():
    y, p = _noisy(600, 8)
    _, clean = _noisy(600, 8, acc=0.9)
    image = evaluate(y, p, y_pred_clean=clean, n_boot=400, seed=2)
    # lesions numbered in image order: the very same draws, so the very same intervals
    # (two implementations: image index arrays, and per-lesion weighted counts)
    same = evaluate(y, p, y_pred_clean=clean, n_boot=400, seed=2, groups=np.arange(600))
    for a, b in zip(image, same):
        assert (a["grouping"], a["metric"]) == (b["grouping"], b["metric"])
        assert (a["value"], a["ci_low"], a["ci_high"]) == pytest.approx((b["value"], b["ci_low"], b["ci_high"]),
                                                                        nan_ok=True, abs=1e-12), a["metric"]
    # shuffled string ids: other draws of the same distribution
    ids = np.array([f"ISIC_{i:07d}" for i in np.random.default_rng(3).permutation(600)])
    shuffled = {r["metric"]: r for r in evaluate(y, p, n_boot=2000, seed=4, groups=ids) if r["grouping"] == ""}
    plain = {r["metric"]: r for r in evaluate(y, p, n_boot=2000, seed=4) if r["grouping"] == ""}
    for m in ("accuracy", "macro_recall"):
        assert shuffled[m]["ci_low"] == pytest.approx(plain[m]["ci_low"], abs=0.012), m
        assert shuffled[m]["ci_high"] == pytest.approx(plain[m]["ci_high"], abs=0.012), m
    assert any((shuffled[m]["ci_low"], shuffled[m]["ci_high"]) != (plain[m]["ci_low"], plain[m]["ci_high"])
               for m in plain)  # other draws indeed


def test_lesion_bootstrap_is_deterministic_and_fast_enough():
    y, p, groups = _lesion_data(900, seed=9)
    y, p, groups = y[:1252], p[:1252], groups[:1252]
    _, clean = _noisy(y.size, 4, acc=0.9)
    start = time.perf_counter()
    rows = evaluate(y, p, y_pred_clean=clean, n_boot=1000, seed=0, groups=groups)
    assert time.perf_counter() - start < 2.0  # measured ~0.03 s
    assert rows == evaluate(y, p, y_pred_clean=clean, n_boot=1000, seed=0, groups=groups)
    assert rows != evaluate(y, p, y_pred_clean=clean, n_boot=1000, seed=1, groups=groups)


# --------------------------------------------------------------------------- paired differences


def test_paired_difference_of_identical_predictions_is_exactly_zero():
    y, p, groups = _lesion_data(200, seed=10)
    _, clean = _noisy(y.size, 11, acc=0.9)
    d = paired_difference(y, p, p, groups=groups, n_boot=300, seed=0, y_pred_clean_a=clean, y_pred_clean_b=clean)
    expect = {difference_key(r["grouping"], r["metric"]) for r in evaluate(y, p, y_pred_clean=clean, n_boot=0)}
    assert set(d) == expect and "clinical:fnr" in d and "thesis:npv" in d and "flip_rate" in d
    for key, (value, lo, hi) in d.items():
        assert (value, lo, hi) == (0.0, 0.0, 0.0), key


def test_paired_difference_all_right_minus_all_wrong_is_one():
    y, _, groups = _lesion_data(200, seed=12)
    wrong = (y + 1) % 7
    d = paired_difference(y, y, wrong, groups=groups, n_boot=300, seed=0, y_pred_clean_a=y, y_pred_clean_b=y)
    assert d["accuracy"] == (1.0, 1.0, 1.0)
    assert d["error_rate"] == (-1.0, -1.0, -1.0)
    assert d["flip_rate"] == (-1.0, -1.0, -1.0)
    assert d["macro_recall"] == (1.0, 1.0, 1.0)


def test_paired_interval_matches_reference_and_beats_unpaired():
    y, a, groups = _lesion_data(300, seed=13)
    rng = np.random.default_rng(14)
    b = np.where(rng.random(y.size) < 0.04, (a + 1) % 7, a)  # b: a with 4% of images changed
    d = paired_difference(y, a, b, groups=groups, n_boot=400, seed=3)
    slow_a = lambda t, q, c: float(np.mean(q == t))  # noqa: E731
    ref = _slow_lesion_intervals(y, np.stack([a, b], axis=1), groups, 400, 3,
                                 {"diff": lambda t, q, c: slow_a(t, q[:, 0], c) - slow_a(t, q[:, 1], c)})
    assert d["accuracy"][1:] == pytest.approx(ref["diff"], abs=1e-12)
    assert d["accuracy"][0] == pytest.approx(np.mean(a == y) - np.mean(b == y))
    # unpaired: the two systems' own intervals combined as if independent
    wa, wb = [(lambda r: r["ci_high"] - r["ci_low"])(next(r for r in evaluate(y, q, n_boot=400, seed=3, groups=groups)
                                                        if r["metric"] == "accuracy")) for q in (a, b)]
    paired_width = d["accuracy"][2] - d["accuracy"][1]
    assert 0 < paired_width < 0.5 * math.hypot(wa, wb)


def test_paired_difference_metric_subset_and_no_resamples():
    y, p = _noisy(200, 15)
    _, q = _noisy(200, 16)
    d = paired_difference(y, p, q, n_boot=0, metrics=["accuracy", "clinical:sensitivity"])
    assert list(d) == ["accuracy", "clinical:sensitivity"]
    value, lo, hi = d["clinical:sensitivity"]
    assert value == pytest.approx(health_metrics(y, p, "clinical")["sensitivity"]
                                  - health_metrics(y, q, "clinical")["sensitivity"])
    assert math.isnan(lo) and math.isnan(hi)


_Y = np.array([0, 1, 5, 5])


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"y_pred_a": np.array([0, 1, 5])}, "y_pred_a"),
        ({"y_pred_b": np.array([0, 1, 9, 5])}, "y_pred_b"),
        ({"groups": np.array(["a", "b", "c"])}, "groups"),
        ({"groups": np.array([["a", "b"], ["c", "d"]])}, "groups"),
        ({"groups": np.array(["a", None, "b", "c"], dtype=object)}, "groups"),
        ({"groups": np.array([1.0, np.nan, 2.0, 3.0])}, "groups"),
        ({"y_pred_clean_a": _Y}, "y_pred_clean_b"),
        ({"y_pred_clean_b": _Y}, "y_pred_clean_a"),
        ({"y_pred_clean_a": _Y, "y_pred_clean_b": _Y[:2]}, "y_pred_clean_b"),
        ({"metrics": ["accuracy", "sensitivity"]}, "metrics"),
        ({"metrics": ["error_rate"]}, "metrics"),
        ({"metrics": "accuracy"}, "metrics"),
        ({"n_boot": -1}, "n_boot"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_paired_difference_bad_arguments_name_the_argument(kwargs, key):
    args = {"y_pred_a": _Y, "y_pred_b": _Y, **kwargs}
    with pytest.raises(SkinlibError, match=key) as err:
        paired_difference(_Y, args.pop("y_pred_a"), args.pop("y_pred_b"), **{"n_boot": 10, **args})
    assert "\n" not in str(err.value)


def test_evaluate_and_bootstrap_ci_check_groups():
    with pytest.raises(SkinlibError, match="groups: 3 lesion ids for 4 images"):
        evaluate(_Y, _Y, n_boot=10, groups=["a", "b", "c"])
    with pytest.raises(SkinlibError, match="groups"):
        bootstrap_ci(_accuracy, [_Y, _Y], 10, seed=0, groups=["a", "b"])


def test_pool_over_seeds_weights_by_precision_and_tests_that_the_seeds_agree():
    same = pool_over_seeds([(0.1, 0.05, 0.15), (0.1, 0.05, 0.15)])
    assert same[0] == pytest.approx(0.1) and same[3] == pytest.approx(1.0)
    # two equal seeds narrow the interval by sqrt(2)
    assert same[2] - same[1] == pytest.approx(0.1 / np.sqrt(2))
    # the narrower seed pulls the pooled value towards itself
    value, lo, hi, p = pool_over_seeds([(0.0, -0.01, 0.01), (0.3, 0.0, 0.6)])
    assert 0 < value < 0.01 and p > 0.05
    assert pool_over_seeds([(0.0, -0.01, 0.01), (0.3, 0.29, 0.31)])[3] < 0.001
    # one usable cell is not a pool
    assert np.isnan(pool_over_seeds([(0.1, 0.05, 0.15), (0.2, np.nan, np.nan)])[0])
