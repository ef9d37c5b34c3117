"""Adaptive attacks: compiled PGD through the LLT (BPDA), its variants, APGD, Square, masking checks."""

from __future__ import annotations

import numpy as np
import pytest

from skinlib import attacks, defences, tf_backend
from skinlib.errors import SkinlibError

S = 16


@pytest.fixture(scope="module")
def problem():
    """A position-sensitive toy model (Flatten): accurate, yet small perturbations flip it."""
    import keras

    x, y = tf_backend.toy_data(400, S, seed=0)
    xt, yt = tf_backend.toy_data(160, S, seed=1)
    keras.utils.set_random_seed(0)
    inp = keras.Input((S, S, 3))
    h = keras.layers.Rescaling(4.0, -2.0)(inp)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(7)(h))
    model.compile(keras.optimizers.Adam(0.002), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    xt = np.rint(xt * 255) / 255  # 8-bit images, as the real data
    assert np.mean(tf_backend.predict_labels(model, xt) == yt) > 0.7
    return model, xt.astype(np.float32), yt


def _accuracy(system, x, y) -> float:
    return float(np.mean(tf_backend.predict_labels(system, x) == y))


def test_registry_has_the_adaptive_attacks_of_design():
    assert {"apgd_ce", "apgd_dlr", "pgd_lowfreq", "pgd_codec", "square", "pgd_targeted", "worst_case"} \
        <= set(attacks.ATTACKS)
    for name in ("pgd", "pgd_lowfreq", "pgd_codec", "square", "apgd_ce"):
        assert attacks.ATTACKS[name].paper.startswith("https://")


def test_straight_through_llt_forward_is_apply_llt(problem):
    import tensorflow as tf

    _, xt, _ = problem
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal")
    for gradient, gains in (("identity", None), ("codec", np.full((8, 8, 3), 0.5, np.float32))):
        out = llt.tf_transform(gradient, gains)(tf.constant(xt[:20])).numpy()
        np.testing.assert_array_equal(out, defences.apply_llt(xt[:20], 75, "horizontal"))


def test_straight_through_gradient_is_the_flip(problem):
    import tensorflow as tf

    _, xt, _ = problem
    op = defences.LowLevelTransformation(quality=75, flip="horizontal").tf_transform()
    x = tf.constant(xt[:4])
    w = tf.constant(np.random.default_rng(0).normal(size=xt[:4].shape).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(op(x) * w)
    np.testing.assert_allclose(tape.gradient(value, x).numpy(), w.numpy()[:, :, ::-1], atol=1e-6)


def test_pgd_bpda_through_llt_beats_fgsm_bpda_and_keeps_the_budget(problem):
    model, xt, yt = problem
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal")
    defended = tf_backend.art_classifier(model, preprocessing_defences=[llt])
    eps = 4 / 255
    x_fgsm = attacks.fgsm(defended, xt, yt, [eps])[eps]
    x_pgd = attacks.pgd(defended, xt, yt, [eps], steps=20, step_size=eps / 4, seed=0)[eps]
    acc_fgsm, acc_pgd = _accuracy(defended, x_fgsm, yt), _accuracy(defended, x_pgd, yt)
    assert acc_pgd <= acc_fgsm, (acc_pgd, acc_fgsm)
    assert acc_pgd < _accuracy(defended, xt, yt) - 0.2
    assert np.abs(x_pgd - xt).max() <= eps + 1e-6
    assert x_pgd.min() >= 0.0 and x_pgd.max() <= 1.0


def test_pgd_bookkeeping_matches_a_fresh_prediction_and_curves_are_monotone(problem):
    model, xt, yt = problem
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal")
    defended = tf_backend.art_classifier(model, preprocessing_defences=[llt])
    eps, trace = 2 / 255, {}
    x_adv = attacks.pgd(defended, xt, yt, [eps], steps=8, restarts=2, seed=1, trace=trace)[eps]
    first = trace[eps]["first"]
    # an image recorded as broken is misclassified by the real defended system, and vice versa
    np.testing.assert_array_equal(first >= 0, tf_backend.predict_labels(defended, x_adv) != yt)
    curve = attacks.accuracy_by_step(first, 8, 2, np.ones(len(yt), bool))
    assert curve.shape == (2, 9)
    flat = curve.ravel()
    assert np.all(np.diff(flat) <= 1e-12)
    assert flat[-1] == pytest.approx(_accuracy(defended, x_adv, yt))


def test_an_image_record_does_not_depend_on_the_images_beside_it(problem):
    """Broken images leave the batch (only the rest are stepped): batches of one are the reference."""
    model, xt, yt = problem
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal")
    eps = 3 / 255
    for transform in (None, llt.tf_transform()):
        kw = dict(eps=eps, steps=6, step_size=eps / 4, random_start=False, transform=transform)
        alone, first_alone = tf_backend.iterated_attack(model, xt, yt, batch_size=1, **kw)
        together, first = tf_backend.iterated_attack(model, xt, yt, batch_size=len(xt), **kw)
        np.testing.assert_array_equal(first, first_alone)
        np.testing.assert_array_equal(together, alone)
        assert len(np.unique(first[first > 0])) > 2 and (first < 0).any()  # images leave at different steps


def test_pgd_is_seeded(problem):
    model, xt, yt = problem
    a = attacks.pgd(model, xt, yt, [4 / 255], steps=3, seed=7)[4 / 255]
    b = attacks.pgd(model, xt, yt, [4 / 255], steps=3, seed=7)[4 / 255]
    c = attacks.pgd(model, xt, yt, [4 / 255], steps=3, seed=8)[4 / 255]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_our_pgd_matches_art_pgd(problem):
    """Same eps, steps and step size: the compiled PGD is as strong as ART's (within a few images)."""
    model, xt, yt = problem
    eps = 2 / 255
    ours = _accuracy(model, attacks.pgd(model, xt, yt, [eps], steps=10, seed=0)[eps], yt)
    art = _accuracy(model, attacks.pgd_art(tf_backend.art_classifier(model), xt, yt, [eps], steps=10, seed=0)[eps], yt)
    assert abs(ours - art) <= 0.04, (ours, art)


def test_last_iterate_pgd_through_the_llt_ends_where_art_pgd_ends(problem):
    """From the clean image, same steps: our last iterate equals ART's PGD (BPDA through the LLT too),
    and keeping each image's first success (exp4's bookkeeping) is never weaker."""
    from art.attacks.evasion import ProjectedGradientDescent

    model, xt, yt = problem
    eps, steps = 4 / 255, 8
    for llt in (None, defences.LowLevelTransformation(quality=75, flip="horizontal")):
        clf = tf_backend.art_classifier(model, preprocessing_defences=[llt] if llt else None)
        art = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=eps / 4, max_iter=steps, num_random_init=0,
                                       batch_size=64, verbose=False).generate(xt, tf_backend.one_hot(yt))
        last = tf_backend.pgd_last_iterate(model, xt, yt, eps=eps, steps=steps, step_size=eps / 4, rng=None,
                                           transform=llt.tf_transform() if llt else None)
        assert np.mean(np.isclose(last, art, atol=1e-6)) > 0.99
        assert abs(_accuracy(clf, last, yt) - _accuracy(clf, art, yt)) <= 1 / len(yt)
        first = attacks.pgd(clf, xt, yt, [eps], steps=steps, step_size=eps / 4, random_start=False)[eps]
        assert _accuracy(clf, first, yt) <= _accuracy(clf, last, yt)


def test_masking_check_tells_a_zero_gradient_step_from_a_robust_model(problem):
    """Behind 8-bit rounding (gradient zero almost everywhere) plain-gradient PGD fails; BPDA and Square succeed."""
    import tensorflow as tf

    from art.defences.preprocessor import Preprocessor

    model, xt, yt = problem
    eps = 8 / 255

    def rounding(z):
        return np.rint(np.clip(z, 0, 1) * 255) / 255

    class Rounding(Preprocessor):
        def __init__(self):
            super().__init__(is_fitted=True, apply_fit=False, apply_predict=True)

        def __call__(self, x, y=None):
            return rounding(x).astype(np.float32), y

        def estimate_gradient(self, x, grad):
            return grad

    defended = tf_backend.art_classifier(model, preprocessing_defences=[Rounding()])
    clean = _accuracy(defended, xt, yt)
    # plain gradient through tf.round: zero gradient, so PGD (no random start) cannot move
    x_exact, first = tf_backend.iterated_attack(model, xt, yt, eps=eps, steps=10, step_size=eps / 4,
                                                transform=lambda z: tf.round(z * 255.0) / 255.0,
                                                random_start=False)
    bpda = attacks.pgd(model, xt, yt, [eps], steps=10, seed=0, through=tf_backend.straight_through(rounding))[eps]
    sq = attacks.square(defended, xt, yt, [eps], queries=300, seed=0)[eps]
    acc_exact, acc_bpda, acc_square = (_accuracy(defended, a, yt) for a in (x_exact, bpda, sq))
    assert acc_exact == pytest.approx(clean)
    assert acc_bpda < clean - 0.3 and acc_square < clean - 0.3, (clean, acc_exact, acc_bpda, acc_square)


def test_lowfreq_perturbation_is_smooth_and_within_budget(problem):
    model, xt, yt = problem
    eps = 4 / 255
    adv = attacks.pgd_lowfreq(model, xt, yt, [eps], factor=4, steps=10, seed=0)[eps]
    d = adv - xt
    assert np.abs(d).max() <= eps + 1e-6
    inner = (xt > eps) & (xt < 1 - eps)  # away from the box's edges no clipping alters the upsampled field
    rough = np.abs(np.diff(d, axis=2))[inner[:, :, 1:]].mean()
    assert rough < 0.5 * eps
    assert _accuracy(model, adv, yt) < _accuracy(model, xt, yt)
    with pytest.raises(SkinlibError, match="factor"):
        attacks.pgd_lowfreq(model, xt, yt, [eps], factor=0)


def test_codec_gains_track_webp_better_than_the_identity():
    import tensorflow as tf

    rng = np.random.default_rng(5)
    smooth = tf.image.resize(rng.uniform(0.2, 0.8, (80, 4, 4, 3)), (32, 32), method="bicubic").numpy()
    x = (np.rint(np.clip(smooth, 0, 1) * 255) / 255).astype(np.float32)  # smooth 8-bit images, as lesions are
    llt = defences.LowLevelTransformation(quality=75, flip="none")
    gains = tf_backend.fit_codec_gains(llt.codec, x[:40], eps=8 / 255, seed=0)
    assert gains.shape == (8, 8, 3) and gains[0, 0, 0] > gains[7, 7, 0]
    d = (np.clip(x[40:] + 8 / 255 * rng.choice([-1.0, 1.0], x[40:].shape), 0, 1) - x[40:]).astype(np.float32)
    fid = tf_backend.codec_fidelity(llt.codec, x[40:], d, gains)
    assert fid["r2_standin"] > fid["r2_identity"], fid
    np.testing.assert_allclose(np.asarray(tf_backend.codec_response(d, np.ones((8, 8, 3)))), d, atol=1e-5)


def test_targeted_attack_only_touches_malignant_images_and_counts_benign_predictions(problem):
    model, xt, yt = problem
    eps, trace = 8 / 255, {}
    adv = attacks.pgd_targeted(model, xt, yt, [eps], steps=10, seed=0, trace=trace)[eps]
    ok = attacks.malignant_to_benign()
    malignant = ok.any(axis=1)[yt]
    np.testing.assert_array_equal(adv[~malignant], xt[~malignant])
    pred = tf_backend.predict_labels(model, adv)
    broken = trace[eps]["first"] >= 0
    np.testing.assert_array_equal(broken, malignant & ok[yt, pred])
    assert ok[4, 5] and not ok[5, 4] and not ok[4, 0]  # mel -> nv counts; nv -> mel and mel -> akiec do not


def test_apgd_losses_run_through_the_llt(problem):
    model, xt, yt = problem
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal")
    defended = tf_backend.art_classifier(model, preprocessing_defences=[llt])
    eps = 4 / 255
    clean = _accuracy(defended, xt[:60], yt[:60])
    for loss in ("ce", "dlr"):
        adv = attacks.apgd(defended, xt[:60], yt[:60], [eps], loss=loss, steps=10, seed=0)[eps]
        assert np.abs(adv - xt[:60]).max() <= eps + 1e-6
        assert _accuracy(defended, adv, yt[:60]) < clean - 0.2


@pytest.mark.parametrize("square_images, expected", [(None, 50), (20, 20), (80, 50)])
def test_square_subset_is_seeded_sorted_and_within_the_adaptive_subset(square_images, expected):
    from types import SimpleNamespace

    from skinlib.experiments import square_subset

    run = SimpleNamespace(profile=SimpleNamespace(seed=3, adaptive=SimpleNamespace(square_images=square_images)))
    on = square_subset(run, 50)
    assert len(on) == expected == len(set(on)) and np.all(np.diff(on) > 0) and on.min() >= 0 and on.max() < 50
    np.testing.assert_array_equal(on, square_subset(run, 50))
    if expected < 50:  # a random draw, not the first images
        assert on.max() >= expected


def test_worst_case_takes_any_wrong_prediction():
    y = np.array([0, 1, 2, 3])
    pred, by = attacks.worst_case(y, {"a": np.array([0, 2, 2, 3]), "b": np.array([1, 1, 2, 0])})
    np.testing.assert_array_equal(pred != y, [True, True, False, True])
    assert list(by) == ["b", "a", "", "b"]
    with pytest.raises(SkinlibError):
        attacks.worst_case(y, {"a": np.zeros(3)})


def test_pgd_adversarial_training_raises_robust_accuracy():
    """Madry et al.'s recipe on a toy CNN: accuracy under PGD on held-out images rises; the history says why it stopped."""
    x, y = tf_backend.toy_data(1200, S, seed=0, spread=0.15)  # classes far enough apart for a robust classifier
    xt, yt = tf_backend.toy_data(200, S, seed=1, spread=0.15)
    model = tf_backend.toy_model(S, seed=0)
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    eps = 4 / 255

    def robust(m):
        return _accuracy(m, attacks.pgd(m, xt, yt, [eps], steps=10, seed=0)[eps], yt)

    before = robust(model)
    history = defences.pgd_adversarial_training(
        model, (np.rint(x * 255).astype(np.uint8), y), (np.rint(xt * 255).astype(np.uint8), yt), eps=eps, steps=3,
        step_size=eps / 2, max_epochs=4, batch_size=32, learning_rate=2e-3, seed=0, val_images=100, patience=4)
    after = robust(model)
    assert history["stopped"][0] in ("plateau", "budget")
    assert history["best_val_pgd_accuracy"][0] > history["val_pgd_accuracy"][0] + 0.05, history
    assert after > before + 0.05, (before, after, history)
    with pytest.raises(SkinlibError):
        defences.pgd_adversarial_training(model, (x, y), (x, y), eps=eps, steps=0, step_size=eps, max_epochs=1,
                                          batch_size=32, learning_rate=1e-3, seed=0)


def test_square_with_remembered_predictions_equals_art_square_with_fewer_model_calls(problem):
    """Square answers ART's repeated predictions from memory: the same images, a fraction of the model's work."""
    from art.attacks.evasion import SquareAttack

    from skinlib.attacks._common import art_per_eps

    model, xt, yt = problem
    llt = defences.LowLevelTransformation(quality=75, flip="horizontal")
    eps, x, y = 4 / 255, xt[:40], yt[:40]
    rows = {"plain": 0, "remembered": 0}  # images the model ran on

    def counting(name):
        system = tf_backend.art_classifier(model, preprocessing_defences=[llt])
        forward = system._forward_pass

        def counted(m, z, training):
            rows[name] += len(z)
            return forward(m, z, training=training)

        system._forward_pass = counted
        return system

    plain = art_per_eps(lambda e: SquareAttack(counting("plain"), norm=np.inf, eps=e, max_iter=150, p_init=0.3,
                                               verbose=False), x, tf_backend.one_hot(y), [eps], seed=3)[eps]
    system = counting("remembered")
    remembered = attacks.square(system, x, y, [eps], queries=150, p_init=0.3, seed=3)[eps]
    np.testing.assert_array_equal(remembered, plain)
    assert _accuracy(system, remembered, y) < _accuracy(system, x, y)  # the attack did something
    assert 0 < rows["remembered"] < 0.5 * rows["plain"], rows
    assert "predict" not in vars(system)  # the class's predict is back after the block
