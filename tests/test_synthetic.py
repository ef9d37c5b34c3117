"""Tests of the built-in synthetic dermoscopy source (small samples, 16-32 px)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from skinlib.data import Dataset
from skinlib.data.synthetic import CLASS_SHARES, HAM10000_COUNTS, _class_quotas, load_synthetic
from skinlib.errors import SkinlibError
from skinlib.labels import CLASS_INDEX, CLASSES

N = 400
SIZE = 32


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_synthetic(None, SIZE, seed=0, n_images=N)


def _colour_features(images: np.ndarray) -> np.ndarray:
    """Mean and std of RGB in the central half of each image: (N, 6)."""
    s = images.shape[1]
    c = images[:, s // 4: 3 * s // 4, s // 4: 3 * s // 4].astype(np.float64) / 255
    return np.concatenate([c.mean((1, 2)), c.std((1, 2))], axis=1)


def test_shapes_dtypes_and_ids(ds: Dataset) -> None:
    assert ds.images.shape == (N, SIZE, SIZE, 3) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (N,) and ds.labels.dtype == np.int64
    assert ds.labels.min() >= 0 and ds.labels.max() < len(CLASSES)
    assert ds.source == "synthetic" and ds.predefined_split is None
    assert ds.lesion_ids.shape == ds.image_ids.shape == (N,)
    assert all(re.fullmatch(r"SYN_\d{6}", s) for s in ds.lesion_ids)
    assert all(re.fullmatch(r"SYN_IMG_\d{7}", s) for s in ds.image_ids)
    assert len(set(ds.image_ids)) == N
    # Images are not blank: they span a real range of intensities.
    assert ds.images.std() > 20


def test_deterministic_for_a_seed(ds: Dataset) -> None:
    again = load_synthetic(None, SIZE, seed=0, n_images=N)
    assert np.array_equal(again.images, ds.images)
    assert np.array_equal(again.labels, ds.labels)
    assert np.array_equal(again.lesion_ids, ds.lesion_ids)
    other = load_synthetic(None, SIZE, seed=1, n_images=N)
    assert not np.array_equal(other.images, ds.images)


def test_class_counts_follow_ham10000_shares(ds: Dataset) -> None:
    counts = np.bincount(ds.labels, minlength=len(CLASSES))
    assert np.array_equal(counts, _class_quotas(N))
    assert (counts > 0).all(), "every class present"
    shares = np.array([CLASS_SHARES[c] for c in CLASSES])
    for n in (400, 3000):
        assert np.abs(_class_quotas(n) / n - shares).max() < 0.01
    # Largest remainder: each count is within one image of its exact share.
    assert np.abs(_class_quotas(3000) - 3000 * shares).max() < 1
    # With HAM10000's total, the counts are HAM10000's exactly.
    assert _class_quotas(10015).tolist() == [HAM10000_COUNTS[c] for c in CLASSES]
    # Every class is present even when its share rounds to zero.
    assert (_class_quotas(20) > 0).all() and _class_quotas(20).sum() == 20


def test_class_shares_of_a_larger_sample() -> None:
    big = load_synthetic(None, 16, seed=3, n_images=1500)
    shares = np.bincount(big.labels, minlength=len(CLASSES)) / 1500
    for i, c in enumerate(CLASSES):
        assert abs(shares[i] - CLASS_SHARES[c]) < 0.02, c


def test_several_images_per_lesion(ds: Dataset) -> None:
    lesions, per_lesion = np.unique(ds.lesion_ids, return_counts=True)
    assert len(lesions) < N
    assert per_lesion.max() <= 4 and (per_lesion > 1).any()
    assert 1.15 < N / len(lesions) < 1.7  # HAM10000: about 1.34
    for lid in lesions[per_lesion > 1]:
        idx = np.flatnonzero(ds.lesion_ids == lid)
        assert len(set(ds.labels[idx])) == 1, "images of one lesion share the label"
        assert not np.array_equal(ds.images[idx[0]], ds.images[idx[1]]), "renderings vary"


def test_images_of_one_lesion_look_alike(ds: Dataset) -> None:
    """Colour statistics of two images of one lesion are closer than two nevi of different lesions."""
    f = _colour_features(ds.images)
    lesions, per_lesion = np.unique(ds.lesion_ids, return_counts=True)
    same = [np.abs(f[i] - f[j]).sum() for lid in lesions[per_lesion > 1]
            for i, j in [np.flatnonzero(ds.lesion_ids == lid)[:2]]]
    nv = np.flatnonzero(ds.labels == CLASS_INDEX["nv"])
    rng = np.random.default_rng(0)
    a, b = rng.choice(nv, 300), rng.choice(nv, 300)
    keep = ds.lesion_ids[a] != ds.lesion_ids[b]
    different = np.abs(f[a[keep]] - f[b[keep]]).sum(1)
    assert np.median(same) < 0.5 * np.median(different)


def test_classes_differ_visually(ds: Dataset) -> None:
    """Vascular lesions are redder than nevi; melanomas are darker than nevi."""
    x = ds.images.astype(np.float64) / 255
    g_over_r = np.where(x[..., 0] > 0.25, x[..., 1] / np.maximum(x[..., 0], 1e-3), np.nan)
    reddest = np.nanpercentile(g_over_r.reshape(N, -1), 5, axis=1)  # low G/R: red pixels
    nv, vasc = reddest[ds.labels == CLASS_INDEX["nv"]], reddest[ds.labels == CLASS_INDEX["vasc"]]
    se = np.sqrt(nv.var() / len(nv) + vasc.var() / len(vasc))
    assert nv.mean() - vasc.mean() > 3 * se
    f = _colour_features(ds.images)
    mel = f[ds.labels == CLASS_INDEX["mel"], :3].mean(1)
    assert mel.mean() < f[ds.labels == CLASS_INDEX["nv"], :3].mean(1).mean()


def test_classes_overlap(ds: Dataset) -> None:
    """A nearest-class-mean classifier on colour features is far from perfect."""
    f = _colour_features(ds.images)
    f = (f - f.mean(0)) / f.std(0)
    means = np.stack([f[ds.labels == k].mean(0) for k in range(len(CLASSES))])
    pred = np.argmin(((f[:, None] - means[None]) ** 2).sum(-1), axis=1)
    acc = (pred == ds.labels).mean()  # even evaluated on its own training images
    assert acc < 0.9
    # ... yet it carries signal: better than chance over the seven classes.
    recall = [(pred[ds.labels == k] == k).mean() for k in range(len(CLASSES))]
    assert np.mean(recall) > 1.5 / len(CLASSES)


def test_dermoscope_vignette_in_some_images(ds: Dataset) -> None:
    corner = ds.images[:, :2, :2].reshape(N, -1).mean(1)
    centre = ds.images[:, SIZE // 2 - 2: SIZE // 2 + 2, SIZE // 2 - 2: SIZE // 2 + 2].reshape(N, -1).mean(1)
    dark = (corner < 40) & (centre > 60)
    assert 0.25 < dark.mean() < 0.85


@pytest.mark.parametrize("size", [16, 17, 150])
def test_any_size_at_least_16(size: int) -> None:
    small = load_synthetic(None, size, seed=2, n_images=6)
    assert small.images.shape == (6, size, size, 3)
    ref = load_synthetic(None, 24, seed=2, n_images=6)
    # Random draws do not depend on the size: same lesions and labels at every size.
    assert np.array_equal(small.labels, ref.labels)
    assert np.array_equal(small.lesion_ids, ref.lesion_ids)


def test_few_images() -> None:
    assert len(load_synthetic(None, 16, seed=0, n_images=1)) == 1
    assert len(load_synthetic(None, 16, seed=0, n_images=3)) == 3


@pytest.mark.parametrize("kwargs, key", [
    (dict(image_size=15), "image_size"),
    (dict(image_size=64.0), "image_size"),
    (dict(image_size=True), "image_size"),
    (dict(image_size=32, n_images=0), "n_images"),
    (dict(image_size=32, n_images="10"), "n_images"),
    (dict(image_size=32, seed=-1), "seed"),
])
def test_bad_input_names_the_key(kwargs: dict, key: str) -> None:
    size = kwargs.pop("image_size")
    with pytest.raises(SkinlibError, match=key) as info:
        load_synthetic(None, size, **kwargs)
    assert "\n" not in str(info.value)
