"""Defences: LLT against a direct Pillow computation, BPDA gradients, adversarial retraining."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from skinlib import attacks, defences, tf_backend
from skinlib.errors import SkinlibError

S = 16


def _pillow_llt(u8: np.ndarray, quality: int, flip: str) -> np.ndarray:
    """Reference: WebP round trip with Pillow, image by image, then numpy's flips."""
    out = []
    for im in u8:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "WEBP", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    out = np.stack(out)
    return {"horizontal": out[:, :, ::-1], "vertical": out[:, ::-1], "none": out}[flip]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 1, S, dtype=np.float32)[None, :, None, None] * np.ones((6, S, S, 3), np.float32)
    noisy = np.clip(smooth + rng.normal(0, 0.1, smooth.shape), 0, 1).astype(np.float32)
    return np.rint(noisy * 255) / 255  # exactly representable as uint8


@pytest.fixture(scope="module")
def flat_model():
    """A position-sensitive (Flatten) toy model: a flip moves a perturbation off its target pixels."""
    import keras

    x, y = tf_backend.toy_data(400, S, seed=0)
    xt, yt = tf_backend.toy_data(150, S, seed=1)
    keras.utils.set_random_seed(0)
    inp = keras.Input((S, S, 3))
    h = keras.layers.Rescaling(4.0, -2.0)(inp)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(7)(h))
    model.compile(keras.optimizers.Adam(0.002), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert np.mean(tf_backend.predict_labels(model, xt) == yt) > 0.7
    return model, xt, yt


def test_registry_lists_design_names():
    assert set(defences.DEFENCES) == {"retraining", "llt", "retraining+llt", "pgd_at"}
    assert defences.DEFENCES["llt"].preprocessor and not defences.DEFENCES["llt"].retrains
    assert defences.DEFENCES["retraining+llt"].preprocessor and defences.DEFENCES["retraining+llt"].retrains
    with pytest.raises(SkinlibError, match="unknown defence"):
        defences.get_defence("distillation")


@pytest.mark.parametrize("quality,flip", [(75, "horizontal"), (20, "vertical"), (90, "none")])
def test_llt_equals_flipped_pillow_webp_roundtrip(images, quality, flip):
    u8 = np.rint(images * 255).astype(np.uint8)
    expected = _pillow_llt(u8, quality, flip)
    llt = defences.LowLevelTransformation(quality=quality, flip=flip, n_jobs=2)
    out, y = llt(images, np.arange(6))
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out, expected.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, np.arange(6))
    np.testing.assert_array_equal(defences.apply_llt(u8, quality, flip, n_jobs=1), expected)  # uint8 in, uint8 out
    assert not np.array_equal(_pillow_llt(u8, quality, "none"), u8)  # lossy: it does change the image


def test_llt_parallel_equals_serial(images):
    big = np.concatenate([images] * 5)
    np.testing.assert_array_equal(defences.apply_llt(big, 50, "horizontal", n_jobs=1),
                                  defences.apply_llt(big, 50, "horizontal", n_jobs=3))
    assert defences.apply_llt(big[:0], 50, "horizontal").shape == (0, S, S, 3)


def test_llt_is_a_predict_only_art_preprocessor():
    llt = defences.LowLevelTransformation()
    assert llt.apply_predict and not llt.apply_fit and llt.is_fitted
    assert "quality=75" in repr(llt)


def test_llt_preprocessor_clips_out_of_range_pixels_like_an_image_encoder(images):
    """Attacks hand the estimator x + v before clipping; the defence encodes the clipped image."""
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal", n_jobs=1)
    pushed = images + np.where(images > 0.5, 0.03, -0.03).astype(np.float32)  # leaves [0, 1] at both ends
    assert pushed.min() < 0 and pushed.max() > 1
    np.testing.assert_array_equal(llt(pushed)[0], llt(np.clip(pushed, 0, 1))[0])
    with pytest.raises(SkinlibError):  # the plain function stays strict about its input
        defences.apply_llt(pushed)


def test_art_uap_runs_through_the_llt(flat_model):
    """White box: ART's UAP (FGSM steps, BPDA gradients) against the model behind the LLT."""
    model, xt, yt = flat_model
    llt = defences.LowLevelTransformation(quality=90, flip="horizontal", n_jobs=1)
    defended = tf_backend.art_classifier(model, preprocessing_defences=llt)
    eps = 8 / 255
    v, info = attacks.uap_art(defended, xt[:60], yt[:60], norm="inf", eps=eps, max_iter=2, seed=0)
    assert np.abs(v).max() <= eps + 1e-6 and np.abs(v).max() > 0
    clean = tf_backend.predict_labels(defended, xt)
    fooled = attacks.flip_rate(clean, tf_backend.predict_labels(defended, attacks.apply_perturbation(xt, v)))
    noise = attacks.random_noise(xt, [eps], seed=0, universal=True)[eps]
    by_noise = attacks.flip_rate(clean, tf_backend.predict_labels(defended, noise))
    assert fooled > by_noise, (fooled, by_noise)


def test_bpda_gradient_flips_back(flat_model):
    model, xt, yt = flat_model
    x, y = xt[:20], yt[:20]
    llt = defences.LowLevelTransformation(quality=80, flip="horizontal", n_jobs=1)
    g = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    np.testing.assert_array_equal(llt.estimate_gradient(x, g), g[:, :, ::-1])
    defended = tf_backend.art_classifier(model, preprocessing_defences=llt)
    plain = tf_backend.art_classifier(model)
    # predictions go through the defence ...
    np.testing.assert_allclose(defended.predict(x), model(llt(x)[0]).numpy(), rtol=1e-5, atol=1e-5)
    # ... and gradients are the model's gradient at LLT(x), flipped back (WebP ~ identity)
    expected = tf_backend.loss_gradient(plain, llt(x)[0], y)[:, :, ::-1]
    np.testing.assert_allclose(tf_backend.loss_gradient(defended, x, y), expected, rtol=1e-5, atol=1e-8)


def test_whitebox_fgsm_through_llt_beats_greybox(flat_model):
    """BPDA makes the gradients flow: attacking through the defence fools it more."""
    model, xt, yt = flat_model
    llt = defences.LowLevelTransformation(quality=90, flip="horizontal", n_jobs=2)
    defended = tf_backend.art_classifier(model, preprocessing_defences=llt)
    plain = tf_backend.art_classifier(model)
    eps = 8 / 255
    clean = tf_backend.predict_labels(defended, xt)
    grey = attacks.fgsm(plain, xt, yt, [eps])[eps]
    white = attacks.fgsm(defended, xt, yt, [eps])[eps]
    flip_grey = attacks.flip_rate(clean, tf_backend.predict_labels(defended, grey))
    flip_white = attacks.flip_rate(clean, tf_backend.predict_labels(defended, white))
    assert flip_white > flip_grey + 0.1, (flip_white, flip_grey)
    # and the grey-box attack is much stronger on the undefended model than through LLT
    flip_plain = attacks.flip_rate(tf_backend.predict_labels(plain, xt), tf_backend.predict_labels(plain, grey))
    assert flip_plain > flip_grey + 0.2


@pytest.mark.parametrize("kwargs", [{"quality": 0}, {"quality": 101}, {"quality": "75"}, {"quality": 75.0},
                                    {"flip": "diagonal"}, {"n_jobs": 0}, {"n_jobs": -2}])
def test_llt_bad_parameters(kwargs):
    with pytest.raises(SkinlibError):
        defences.LowLevelTransformation(**kwargs)


def test_apply_llt_rejects_bad_input():
    with pytest.raises(SkinlibError):
        defences.apply_llt(np.full((2, S, S, 3), 1.5, np.float32))
    with pytest.raises(SkinlibError):
        defences.apply_llt(np.zeros((S, S, 3), np.float32))


# ---------------------------------------------------------------------------- retraining


def _pool(n: int, dtype=np.uint8):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    return (x if dtype == np.uint8 else x.astype(np.float32) / 255), rng.integers(0, 7, n)


@pytest.mark.parametrize("n,fraction", [(10, 0.5), (11, 0.5), (7, 0.3), (10, 1.0), (3, 0.1)])
def test_retraining_round_set_adds_round_fraction_n_true_labelled_copies(n, fraction):
    x, y = _pool(n)
    seen = {}

    def perturb(xs, ys):
        seen["x"], seen["y"] = xs.copy(), ys.copy()
        return np.clip(xs + 2 / 255, 0, 1)

    x_aug, y_aug, idx = defences.retraining_round_set(x, y, fraction, perturb, seed=4)
    k = round(fraction * n)
    assert len(idx) == k and len(set(idx.tolist())) == k and np.all(np.diff(idx) > 0)
    assert x_aug.shape == (n + k, 4, 4, 3) and x_aug.dtype == np.uint8
    np.testing.assert_array_equal(x_aug[:n], x)
    np.testing.assert_array_equal(y_aug, np.concatenate([y, y[idx]]))  # TRUE labels
    if k:
        np.testing.assert_array_equal(seen["x"], x[idx].astype(np.float32) / 255)  # float in [0, 1]
        np.testing.assert_array_equal(seen["y"], y[idx])
        np.testing.assert_array_equal(x_aug[n:], np.minimum(x[idx].astype(int) + 2, 255))
    again = defences.retraining_round_set(x, y, fraction, perturb, seed=4)[2]
    np.testing.assert_array_equal(idx, again)


def test_retraining_round_set_float_pool_keeps_float_perturbations():
    x, y = _pool(8, np.float32)
    x_aug, _, idx = defences.retraining_round_set(x, y, 0.5, lambda a, b: np.clip(a + 0.001, 0, 1), seed=0)
    assert x_aug.dtype == np.float32
    np.testing.assert_allclose(x_aug[8:], np.clip(x[idx] + 0.001, 0, 1))


def test_retraining_round_set_bad_parameters():
    x, y = _pool(5)
    for fraction in (0, 1.5, -0.1, True):
        with pytest.raises(SkinlibError):
            defences.retraining_round_set(x, y, fraction, lambda a, b: a, seed=0)
    with pytest.raises(SkinlibError):
        defences.retraining_round_set(x, y[:3], 0.5, lambda a, b: a, seed=0)
    with pytest.raises(SkinlibError, match="perturb_fn"):
        defences.retraining_round_set(x, y, 0.5, lambda a, b: a[:1], seed=0)


def test_adversarial_retraining_recomputes_perturbations_with_the_current_model():
    class FakeModel:
        version = 0

    model = FakeModel()
    x, y = _pool(10)
    made_with, trained = [], []

    def make_perturb_fn(m):
        made_with.append(m.version)
        return lambda xs, ys: xs

    def train_fn(m, xa, ya, epochs, r):
        trained.append((len(xa), len(ya), epochs, r))
        m.version += 1

    rounds_seen = []
    out = defences.adversarial_retraining(model, x, y, rounds=3, epochs_per_round=5, fraction=0.5,
                                          make_perturb_fn=make_perturb_fn, train_fn=train_fn, seed=0,
                                          on_round=lambda r, idx: rounds_seen.append((r, len(idx))))
    assert out is model and model.version == 3
    assert made_with == [0, 1, 2]
    assert trained == [(15, 15, 5, 0), (15, 15, 5, 1), (15, 15, 5, 2)]
    assert rounds_seen == [(0, 5), (1, 5), (2, 5)]
    for kwargs in ({"rounds": 0}, {"epochs_per_round": 0}, {"fraction": 2.0}):
        args = dict(rounds=1, epochs_per_round=1, fraction=0.5) | kwargs
        with pytest.raises(SkinlibError):
            defences.adversarial_retraining(model, x, y, make_perturb_fn=make_perturb_fn, train_fn=train_fn,
                                            seed=0, **args)


def test_fgsm_perturber_uses_the_current_real_model_each_round():
    x, y = tf_backend.toy_data(200, S, seed=0)
    model = tf_backend.toy_model(S, seed=0)
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    eps = 4 / 255
    initial = attacks.fgsm(tf_backend.art_classifier(model), x, y, [eps])[eps]  # FGSM of the untouched model
    seen = []

    def train_fn(m, xa, ya, epochs, r):
        seen.append(xa[len(x):].copy())
        m.fit(xa, ya, epochs=epochs, batch_size=32, verbose=0)

    idxs = []
    defences.adversarial_retraining(model, x, y, rounds=2, epochs_per_round=2, fraction=0.5,
                                    make_perturb_fn=defences.fgsm_perturber(eps), train_fn=train_fn, seed=0,
                                    on_round=lambda r, idx: idxs.append(idx))
    assert [len(a) for a in seen] == [100, 100]
    # round 0: FGSM of the initial model on the chosen images (batching only rescales the gradient)
    assert np.mean(np.isclose(seen[0], initial[idxs[0]], atol=1e-6)) > 0.999
    assert np.abs(seen[0] - x[idxs[0]]).max() == pytest.approx(eps, abs=1e-6)
    # round 1: the retrained model gives different perturbations for the same images
    assert np.mean(np.isclose(seen[1], initial[idxs[1]], atol=1e-6)) < 0.99


def test_fast_uap_through_the_flip_is_the_flipped_uap_of_flipped_images(flat_model):
    """input_transform=flip: the BPDA white-box fast UAP against LLT differentiates the flip exactly."""
    model, xt, yt = flat_model
    kw = dict(norm="inf", eps=8 / 255, epochs=2, batch_size=50, learning_rate=0.004, seed=3)
    v_through, _ = attacks.uap_fast(model, xt, yt, input_transform=tf_backend.flip_transform("horizontal"), **kw)
    v_plain, _ = attacks.uap_fast(model, xt[:, :, ::-1], yt, **kw)
    np.testing.assert_allclose(v_through, v_plain[:, ::-1], atol=1e-6)
    assert not np.allclose(v_through, v_plain, atol=1e-6)  # the flip matters for this model
    assert tf_backend.flip_transform("none") is None
    with pytest.raises(SkinlibError):
        tf_backend.flip_transform("diagonal")
