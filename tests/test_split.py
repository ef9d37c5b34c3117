"""Splits (by lesion / by image / predefined), class weights and label-flip poisoning."""

from __future__ import annotations

import numpy as np
import pytest

from skinlib.errors import SkinlibError
from skinlib.split import _group_labels, class_weights, poison_labels, split_dataset

HAM_COUNTS = [327, 514, 1099, 115, 1113, 6705, 142]  # akiec..vasc, 10,015 images
FRACTIONS = (0.70, 0.175, 0.125)


def _ham_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """HAM10000's class counts, 1-4 images per lesion (one label per lesion)."""
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    lesions: list[str] = []
    lesion = 0
    for c, n in enumerate(HAM_COUNTS):
        left = n
        while left:
            k = min(left, int(rng.choice([1, 2, 3, 4], p=[0.6, 0.25, 0.1, 0.05])))
            labels += [c] * k
            lesions += [f"HAM_{lesion:07d}"] * k
            lesion += 1
            left -= k
    order = rng.permutation(len(labels))
    return np.array(labels)[order], np.array(lesions)[order]


@pytest.fixture(scope="module")
def ham():
    return _ham_like()


def _check_partition(parts: dict[str, np.ndarray], n: int) -> None:
    assert sorted(parts) == ["test", "train", "val"]
    for idx in parts.values():
        assert idx.dtype == np.int64
        assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
    np.testing.assert_array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_by_lesion_partition_no_shared_lesion_fractions(ham, seed):
    labels, lesions = ham
    parts = split_dataset(labels, lesions, seed=seed)
    _check_partition(parts, labels.size)
    sets = {s: set(lesions[idx]) for s, idx in parts.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    for s, f in zip(("train", "val", "test"), FRACTIONS):
        assert abs(parts[s].size / labels.size - f) < 0.015
        # every class in every split
        assert np.all(np.bincount(labels[parts[s]], minlength=7) > 0)


def test_by_lesion_is_stratified_at_lesion_level(ham):
    labels, lesions = ham
    parts = split_dataset(labels, lesions, seed=5)
    for c in range(7):
        n_lesions = len(set(lesions[labels == c]))
        for s, f in zip(("train", "val", "test"), FRACTIONS):
            got = len(set(lesions[parts[s]][labels[parts[s]] == c]))
            assert abs(got - f * n_lesions) <= 2, (c, s, got, f * n_lesions)


def test_deterministic_for_seed(ham):
    labels, lesions = ham
    a = split_dataset(labels, lesions, seed=7)
    b = split_dataset(labels, lesions, seed=7)
    c = split_dataset(labels, lesions, seed=8)
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["test"], c["test"])


def test_by_image_ignores_lesions(ham):
    labels, lesions = ham
    parts = split_dataset(labels, lesions, by="by_image", seed=0)
    _check_partition(parts, labels.size)
    for s, f in zip(("train", "val", "test"), FRACTIONS):
        assert abs(parts[s].size / labels.size - f) < 0.002
        counts = np.bincount(labels[parts[s]], minlength=7)
        np.testing.assert_allclose(counts / np.array(HAM_COUNTS), f, atol=0.02)
    # with ~1.6 images per lesion, some lesions necessarily straddle two splits
    assert set(lesions[parts["train"]]) & set(lesions[parts["test"]])


def test_rare_class_with_three_lesions_in_every_split():
    labels = np.array([5] * 40 + [3] * 3 + [1] * 2)
    lesions = np.array([f"L{i}" for i in range(labels.size)])
    for seed in range(10):
        parts = split_dataset(labels, lesions, seed=seed)
        _check_partition(parts, labels.size)
        for idx in parts.values():
            assert 3 in labels[idx]


def test_mixed_label_lesion_takes_most_common_label():
    labels = np.array([1, 1, 2, 4])
    lesions = np.array(["a", "a", "a", "b"])
    group, group_label = _group_labels(labels, lesions)
    np.testing.assert_array_equal(group_label[group], [1, 1, 1, 4])


def test_predefined_split_is_used():
    pre = np.array(["train", "test", "val", "train", "test"])
    parts = split_dataset(np.array([0, 1, 2, 3, 4]), np.array(list("abcde")), predefined=pre)
    np.testing.assert_array_equal(parts["train"], [0, 3])
    np.testing.assert_array_equal(parts["val"], [2])
    np.testing.assert_array_equal(parts["test"], [1, 4])
    with pytest.raises(SkinlibError, match="predefined.*valid"):
        split_dataset(np.array([0, 1]), np.array(["a", "b"]), predefined=np.array(["train", "dev"]))


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"fractions": (0.7, 0.2, 0.2)}, "fractions"),
        ({"fractions": (0.8, 0.2, 0.0)}, "fractions"),
        ({"by": "by_patient"}, "by"),
    ],
)
def test_split_bad_arguments(kwargs, key):
    with pytest.raises(SkinlibError, match=key):
        split_dataset(np.zeros(30, dtype=int), np.arange(30).astype(str), **kwargs)


def test_split_bad_arrays():
    with pytest.raises(SkinlibError, match="lesion_ids"):
        split_dataset(np.zeros(10, dtype=int), np.arange(9).astype(str))
    with pytest.raises(SkinlibError, match="labels"):
        split_dataset(np.array([0, 9, 1]), np.array(["a", "b", "c"]))


def test_class_weights_balanced():
    w = class_weights(np.array([0, 0, 0, 1]))
    # n / (k * n_c) with k = 2 present classes: 4/(2*3) and 4/(2*1)
    assert w[0] == pytest.approx(2 / 3)
    assert w[1] == pytest.approx(2.0)
    assert sorted(w) == list(range(7))
    assert all(w[c] == 1.0 for c in range(2, 7))  # absent: neutral
    labels, _ = _ham_like()
    wh = class_weights(labels)
    weighted = np.array([wh[c] * n for c, n in enumerate(HAM_COUNTS)])
    np.testing.assert_allclose(weighted, labels.size / 7)  # each class weighs the same
    with pytest.raises(SkinlibError, match="labels_train"):
        class_weights(np.array([], dtype=int))


def test_poison_labels_exact_count_target_and_copy():
    labels = np.array([5] * 40 + [2] * 10 + [0] * 7)
    original = labels.copy()
    out = poison_labels(labels, 0.10, source=5, target=2, seed=0)
    np.testing.assert_array_equal(labels, original)  # input untouched
    changed = np.flatnonzero(out != labels)
    assert changed.size == 4  # round(0.10 * 40)
    assert np.all(labels[changed] == 5) and np.all(out[changed] == 2)
    assert poison_labels(labels, 0.15, 5, 2, 0).tolist().count(5) == 40 - 6
    assert np.array_equal(poison_labels(labels, 0.0, 5, 2, 0), labels)
    assert not np.any(poison_labels(labels, 1.0, 5, 2, 0) == 5)
    # halves round up: 0.5 * 5 = 2.5 -> 3
    assert (poison_labels(np.array([1] * 5), 0.5, 1, 0, 0) == 0).sum() == 3


def test_poison_labels_nested_and_deterministic():
    labels = np.array([5] * 200 + [1] * 50)
    flipped = {}
    for f in (0.05, 0.10, 0.20, 0.45):
        flipped[f] = set(np.flatnonzero(poison_labels(labels, f, 5, 2, seed=3) == 2))
        assert len(flipped[f]) == round(f * 200)
    assert flipped[0.05] < flipped[0.10] < flipped[0.20] < flipped[0.45]
    same = set(np.flatnonzero(poison_labels(labels, 0.20, 5, 2, seed=3) == 2))
    other = set(np.flatnonzero(poison_labels(labels, 0.20, 5, 2, seed=4) == 2))
    assert same == flipped[0.20] and other != same


@pytest.mark.parametrize(
    "args, key",
    [((1.5, 5, 2), "fraction"), ((0.1, 7, 2), "source"), ((0.1, 5, -1), "target"), ((0.1, 5, 5), "target")],
)
def test_poison_labels_bad_arguments(args, key):
    with pytest.raises(SkinlibError, match=key):
        poison_labels(np.array([5, 5, 2]), *args, seed=0)
