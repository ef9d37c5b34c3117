"""Attacks: FGSM (vs ART), PGD, the random control, ART UAP and the fast UAP, on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from skinlib import attacks, tf_backend
from skinlib.errors import SkinlibError

S = 16
EPS = [1 / 255, 2 / 255, 4 / 255, 8 / 255]


@pytest.fixture(scope="module")
def problem():
    """A tiny CNN trained on close colour classes: accurate, yet small perturbations flip it."""
    x, y = tf_backend.toy_data(400, S, seed=0)
    xt, yt = tf_backend.toy_data(200, S, seed=1)
    model = tf_backend.toy_model(S, seed=0)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    clf = tf_backend.art_classifier(model)
    acc = float(np.mean(tf_backend.predict_labels(model, xt) == yt))
    assert acc > 0.7, f"toy model did not learn ({acc:.2f})"
    return {"x": x, "y": y, "xt": xt, "yt": yt, "model": model, "clf": clf}


def _ce(model, x, y):
    logits = tf_backend.predict_logits(model, x)
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_registry_lists_design_names():
    assert set(attacks.ATTACKS) == {"fgsm", "pgd", "random", "uap_art", "uap_fast", "apgd_ce", "apgd_dlr",
                                    "pgd_lowfreq", "pgd_codec", "square", "pgd_targeted", "worst_case"}
    for name, info in attacks.ATTACKS.items():
        assert info.name == name and callable(info.function) and info.description
    assert attacks.ATTACKS["uap_fast"].universal and not attacks.ATTACKS["fgsm"].universal
    assert attacks.get_attack("pgd").function is attacks.pgd
    with pytest.raises(SkinlibError, match="unknown attack"):
        attacks.get_attack("deepfool")


def test_art_classifier_predicts_the_model_logits(problem):
    x = problem["xt"][:20]
    np.testing.assert_allclose(problem["clf"].predict(x), problem["model"](x).numpy(), rtol=1e-5, atol=1e-5)
    assert problem["clf"].nb_classes == 7 and problem["clf"].clip_values is not None


@pytest.mark.parametrize("with_llt", [False, True])
def test_compiled_loss_gradient_equals_art_stock_gradient(problem, with_llt):
    """The compiled ``loss_gradient`` is ART's gradient: same loss (a batch mean), same BPDA through the LLT."""
    from art.estimators.classification import TensorFlowV2Classifier

    from skinlib.defences import LowLevelTransformation

    defences = [LowLevelTransformation(quality=75)] if with_llt else None
    compiled = tf_backend.art_classifier(problem["model"], preprocessing_defences=defences)
    stock = tf_backend.art_classifier(problem["model"], preprocessing_defences=defences, compiled_gradient=False)
    assert type(compiled) is not TensorFlowV2Classifier and type(stock) is TensorFlowV2Classifier
    x, y = problem["xt"][:48], tf_backend.one_hot(problem["yt"][:48])
    for n in (48, 1):  # a batch, and the one-image calls of ART's UAP
        g_stock = stock.loss_gradient(x[:n], y[:n])
        g_compiled = compiled.loss_gradient(x[:n], y[:n])
        assert g_compiled.shape == x[:n].shape and np.abs(g_stock).max() > 0
        np.testing.assert_allclose(g_compiled, g_stock, rtol=1e-4, atol=1e-5 * np.abs(g_stock).max())


def test_fgsm_moves_every_pixel_by_exactly_eps_within_range(problem):
    x, y = problem["xt"], problem["yt"]
    adv = attacks.fgsm(problem["clf"], x, y, EPS)
    assert sorted(adv) == EPS
    grad = tf_backend.loss_gradient(problem["clf"], x, y)
    assert np.mean(grad != 0) > 0.99
    for e in EPS:
        a = adv[e]
        assert a.dtype == np.float32 and a.shape == x.shape
        assert a.min() >= 0.0 and a.max() <= 1.0
        d = np.abs(a - x)
        assert d.max() <= e + 1e-6
        free = (x + e <= 1) & (x - e >= 0) & (grad != 0)  # pixels the clip cannot touch
        np.testing.assert_allclose(d[free], e, atol=1e-6)


def test_fgsm_multi_eps_equals_art_fast_gradient_method(problem):
    from art.attacks.evasion import FastGradientMethod

    x, y = problem["xt"][:100], problem["yt"][:100]
    ours = attacks.fgsm(problem["clf"], x, y, EPS, batch_size=32)
    for e in EPS:
        art = FastGradientMethod(problem["clf"], norm=np.inf, eps=e, targeted=False, batch_size=32)
        np.testing.assert_array_equal(ours[e], art.generate(x, tf_backend.one_hot(y)))
    # y=None: both use the clean predictions as labels
    ours_none = attacks.fgsm(problem["clf"], x, None, [EPS[-1]], batch_size=32)[EPS[-1]]
    art_none = FastGradientMethod(problem["clf"], eps=EPS[-1], batch_size=32).generate(x)
    np.testing.assert_array_equal(ours_none, art_none)


def test_fgsm_fools_more_as_eps_grows_and_beats_noise(problem):
    x, y, clf = problem["xt"], problem["yt"], problem["clf"]
    adv = attacks.fgsm(clf, x, y, [0.0] + EPS)
    np.testing.assert_array_equal(adv[0.0], x)
    err = [float(np.mean(tf_backend.predict_labels(clf, adv[e]) != y)) for e in EPS]
    noise = attacks.random_noise(x, [EPS[-1]], seed=0)[EPS[-1]]
    err_noise = float(np.mean(tf_backend.predict_labels(clf, noise) != y))
    assert err[-1] > err[0] + 0.3
    assert err[-1] > err_noise + 0.3


def test_pgd_success_grows_with_eps_and_respects_budget(problem):
    x, y, clf = problem["xt"][:120], problem["yt"][:120], problem["clf"]
    correct = tf_backend.predict_labels(clf, x) == y
    adv = attacks.pgd(clf, x, y, EPS, steps=10, seed=0)
    success = []
    for e in EPS:
        assert np.abs(adv[e] - x).max() <= e + 1e-6
        assert adv[e].min() >= 0 and adv[e].max() <= 1
        success.append(float(np.mean(tf_backend.predict_labels(clf, adv[e])[correct] != y[correct])))
    assert all(b >= a for a, b in zip(success, success[1:])), success
    assert success[-1] > success[0] + 0.3
    # with the default 10 steps of eps/4, PGD is at least as strong as FGSM at the largest eps
    fg = attacks.fgsm(clf, x, y, [EPS[-1]])[EPS[-1]]
    assert success[-1] >= float(np.mean(tf_backend.predict_labels(clf, fg)[correct] != y[correct])) - 0.02


def test_pgd_is_seeded_and_leaves_global_rng_alone(problem):
    x, y, clf = problem["xt"][:30], problem["yt"][:30], problem["clf"]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = attacks.pgd(clf, x, y, [4 / 255], steps=2, seed=7)[4 / 255]
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    b = attacks.pgd(clf, x, y, [4 / 255], steps=2, seed=7)[4 / 255]
    c = attacks.pgd(clf, x, y, [4 / 255], steps=2, seed=8)[4 / 255]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_noise_linf_and_l2_sizes():
    x = np.full((5, S, S, 3), 0.5, np.float32)  # mid-grey: no clipping
    out = attacks.random_noise(x, [2 / 255, 8 / 255], seed=3)
    for e, a in out.items():
        np.testing.assert_allclose(np.abs(a - x), e, atol=1e-6)
    assert np.array_equal(np.sign(out[2 / 255] - x), np.sign(out[8 / 255] - x))  # one draw, scaled
    l2 = attacks.random_noise(x, [0.5], seed=3, norm="2")[0.5]
    np.testing.assert_allclose(np.linalg.norm((l2 - x).reshape(5, -1), axis=1), 0.5, rtol=1e-5)
    uni = attacks.random_noise(x, [0.1], seed=3, universal=True)[0.1]
    assert np.array_equal(uni[0], uni[4])
    same = attacks.random_noise(x, [0.1], seed=3)[0.1], attacks.random_noise(x, [0.1], seed=3)[0.1]
    np.testing.assert_array_equal(*same)
    ones = np.ones((2, S, S, 3), np.float32)
    clipped = attacks.random_noise(ones, [0.2], seed=0)[0.2]
    assert clipped.max() <= 1.0 and clipped.min() >= 0.8 - 1e-6


def test_uap_budget():
    x = np.random.default_rng(0).random((10, S, S, 3)).astype(np.float32)
    assert attacks.uap_budget(x, "inf", eps=8 / 255) == pytest.approx(8 / 255)
    expected = 0.04 * np.linalg.norm(x.reshape(10, -1), axis=1).mean()
    assert attacks.uap_budget(x, "2", zeta=0.04) == pytest.approx(expected, rel=1e-6)
    assert attacks.uap_budget((x * 255).astype(np.uint8), "2", zeta=0.04) == pytest.approx(expected, rel=1e-2)
    with pytest.raises(SkinlibError):
        attacks.uap_budget(x, "2", zeta=1.5)
    with pytest.raises(SkinlibError):
        attacks.uap_budget(x, "1", eps=0.1)


@pytest.mark.parametrize("norm,eps", [("inf", 4 / 255), ("2", 0.3)])
def test_uap_fast_respects_budget_and_is_deterministic(problem, norm, eps):
    x, y = problem["x"], problem["y"]
    v1, info = attacks.uap_fast(problem["model"], x, y, norm=norm, eps=eps, epochs=2, batch_size=64,
                                learning_rate=0.003, seed=5)
    v2, info2 = attacks.uap_fast(problem["model"], x, y, norm=norm, eps=eps, epochs=2, batch_size=64,
                                 learning_rate=0.003, seed=5)
    assert info2["traced"] is False  # the compiled step is reused, and fully reset
    assert v1.shape == (S, S, 3) and v1.dtype == np.float32
    np.testing.assert_array_equal(v1, v2)
    if norm == "inf":
        assert np.abs(v1).max() <= eps + 1e-7
        assert np.abs(v1).max() == pytest.approx(eps, rel=1e-5)  # the constraint is active
    else:
        assert np.linalg.norm(v1) <= eps * (1 + 1e-5)
        assert np.linalg.norm(v1) == pytest.approx(eps, rel=1e-3)
    assert info["steps"] == 2 * int(np.ceil(len(x) / 64)) and info["wall_s"] > 0
    xa = attacks.apply_perturbation(x, v1)
    assert xa.min() >= 0 and xa.max() <= 1
    v3, _ = attacks.uap_fast(problem["model"], x, y, norm=norm, eps=eps, epochs=2, learning_rate=0.003, seed=6)
    assert not np.array_equal(v1, v3)  # the seed drives the minibatch order


def test_uap_fast_increases_loss_and_beats_random_universal_noise(problem):
    model, x, y, xt, yt = problem["model"], problem["x"], problem["y"], problem["xt"], problem["yt"]
    eps = 4 / 255
    v, info = attacks.uap_fast(model, x, y, norm="inf", eps=eps, epochs=4, learning_rate=0.002, seed=0)
    assert _ce(model, attacks.apply_perturbation(x, v), y) > _ce(model, x, y) + 0.2  # ascent, not descent
    clean = tf_backend.predict_labels(model, xt)
    fooled = attacks.flip_rate(clean, tf_backend.predict_labels(model, attacks.apply_perturbation(xt, v)))
    noise = attacks.random_noise(xt, [eps], seed=0, universal=True)[eps]
    fooled_noise = attacks.flip_rate(clean, tf_backend.predict_labels(model, noise))
    assert fooled > fooled_noise + 0.15, (fooled, fooled_noise)
    assert 0 <= info["train_flip_rate"] <= 1 and "train_error_rate" in info


def test_uap_fast_clips_inputs_near_white():
    """The model sees clip(x + delta, 0, 1): on white images, raising a pixel has no effect."""
    model = tf_backend.toy_model(S, seed=1)
    x = np.ones((32, S, S, 3), np.float32)
    y = np.zeros(32, np.int64)
    v, _ = attacks.uap_fast(model, x, y, norm="inf", eps=0.5, epochs=4, batch_size=32, learning_rate=0.05, seed=0)
    xa = attacks.apply_perturbation(x, v)
    assert xa.max() <= 1.0 and np.all(xa[0] == np.clip(1 + v, 0, 1))
    # A pixel pushed above 1 is clipped, its gradient is zero and it never moves again: positive
    # entries stop after one step (0.05), while negative entries keep descending (4 steps).
    assert v.max() == pytest.approx(0.05)
    assert v.min() == pytest.approx(-0.2)


def test_uap_fast_early_stopping(problem):
    x, y = problem["x"], problem["y"]
    v, info = attacks.uap_fast(problem["model"], x, y, norm="inf", eps=8 / 255, epochs=20, learning_rate=0.004,
                               seed=0, stop_at=0.2, check_every=1, x_monitor=problem["xt"][:100])
    assert info["stopped_early"] and info["steps"] < 20 * int(np.ceil(len(x) / 64))
    assert info["monitor_history"][-1][2] >= 0.2
    assert all(r < 0.2 for _, _, r in info["monitor_history"][:-1])
    v3, info3 = attacks.uap_fast(problem["model"], x, y, eps=8 / 255, epochs=20, learning_rate=0.004, seed=0,
                                 max_steps=3)
    assert info3["steps"] == 3


@pytest.mark.parametrize("norm,eps", [("inf", 8 / 255), ("2", 0.5)])
def test_uap_fast_warmup_steps_move_by_the_whole_budget_then_by_the_learning_rate(problem, norm, eps):
    model, x, y = problem["model"], problem["x"], problem["y"]
    lr = 0.001
    kw = dict(norm=norm, eps=eps, epochs=3, learning_rate=lr, seed=0)

    def run(steps: int, warmup: int) -> np.ndarray:
        return attacks.uap_fast(model, x, y, max_steps=steps, warmup_steps=warmup, **kw)[0]

    first = run(1, 1)
    if norm == "inf":  # one sign step of size eps from zero: every pixel with a gradient sits on the box
        moved = first != 0
        assert moved.mean() > 0.9
        np.testing.assert_allclose(np.abs(first[moved]), eps, rtol=1e-6)
        assert np.abs(run(2, 0)).max() == pytest.approx(2 * lr, rel=1e-5)  # no warm-up: two small steps
    else:  # one step of L2 length eps
        assert np.linalg.norm(first) == pytest.approx(eps, rel=1e-4)
        assert np.linalg.norm(run(2, 0)) < 2 * lr * np.sqrt(first.size) * (1 + 1e-4)
    # After the warm-up the small steps take over: the third step moves delta by lr per pixel.
    after_two, after_three = run(2, 2), run(3, 2)
    change = after_three - after_two
    if norm == "inf":
        assert 0 < np.abs(change).max() <= lr + 1e-6
    else:
        assert 0 < np.linalg.norm(change) <= lr * np.sqrt(first.size) * (1 + 1e-4)
    np.testing.assert_array_equal(run(2, 2), after_two)  # deterministic with the warm-up too


def test_uap_fast_bad_parameters(problem):
    m, x, y = problem["model"], problem["x"][:10], problem["y"][:10]
    for kwargs in ({"norm": "1", "eps": 0.1}, {"eps": -0.1}, {"eps": 0.1, "epochs": 0},
                   {"eps": 0.1, "step": "newton"}, {"eps": 0.1, "learning_rate": 0}, {"eps": 0.1, "stop_at": 2.0},
                   {"eps": 0.1, "batch_size": 0}, {"eps": 0.1, "max_steps": 0}, {"eps": 0.1, "warmup_steps": -1},
                   {"eps": 0.1, "warmup_steps": 1.5}):
        with pytest.raises(SkinlibError):
            attacks.uap_fast(m, x, y, **kwargs)
    with pytest.raises(SkinlibError, match="x_train"):
        attacks.uap_fast(m, x * 3, y, eps=0.1)


@pytest.mark.parametrize("norm,eps", [("inf", 8 / 255), ("2", 0.5)])
def test_uap_art_runs_and_respects_budget(problem, norm, eps):
    x, y = problem["x"][:24], problem["y"][:24]
    v, info = attacks.uap_art(problem["clf"], x, y, norm=norm, eps=eps, max_iter=1, seed=0)
    assert v.shape == (S, S, 3)
    size = np.abs(v).max() if norm == "inf" else np.linalg.norm(v)
    assert size <= eps * (1 + 1e-5)
    assert info["wall_s"] > 0 and 0 <= info["art_fooling_rate"] <= 1 and info["n_train"] == 24
    assert info["train_error_rate"] == pytest.approx(info["art_fooling_rate"], abs=1e-6)  # ART compares with y
    v2, _ = attacks.uap_art(problem["clf"], x, y, norm=norm, eps=eps, max_iter=1, seed=0)
    np.testing.assert_array_equal(v, v2)


def test_uap_art_bad_parameters(problem):
    x = problem["x"][:4]
    for kwargs in ({"eps": 0.0}, {"eps": 0.1, "max_iter": 0}, {"eps": 0.1, "norm": "1"}, {"eps": 0.1, "delta": 2}):
        with pytest.raises(SkinlibError):
            attacks.uap_art(problem["clf"], x, None, **kwargs)


def test_helpers():
    x = np.full((3, S, S, 3), 0.9, np.float32)
    d = np.full((S, S, 3), 0.2, np.float32)
    np.testing.assert_array_equal(attacks.apply_perturbation(x, d), np.ones_like(x))
    np.testing.assert_array_equal(attacks.apply_perturbation(x, d[None]), np.ones_like(x))
    u8 = attacks.apply_perturbation((x * 255).astype(np.uint8), -d)
    assert u8.dtype == np.float32 and u8.max() <= 0.71
    delta = np.zeros((S, S, 3), np.float32)
    delta[0, 0, 0], delta[1, 1, 1] = 0.03, -0.03
    img = attacks.amplify_for_display(delta)
    assert img.dtype == np.uint8 and img.shape == (S, S, 3)
    assert img[0, 0, 0] == 255 and img[1, 1, 1] == 1 and img[5, 5, 2] == 128
    assert np.all(attacks.amplify_for_display(np.zeros((1, S, S, 3))) == 128)
    with pytest.raises(SkinlibError, match="eps_list"):
        attacks.random_noise(x, 0.1)
    with pytest.raises(SkinlibError):
        attacks.random_noise(x, [-0.1])
    with pytest.raises(SkinlibError, match="\\[0, 1\\]"):
        attacks.as_float_images(x * 2)


def test_compiled_functions_do_not_keep_models_alive():
    import gc
    import weakref

    x, y = tf_backend.toy_data(64, S, seed=2)
    model = tf_backend.toy_model(S, seed=2)
    tf_backend.predict_labels(model, x)
    attacks.uap_fast(model, x, y, eps=0.03, epochs=1, stop_at=0.99, check_every=1)
    tf_backend.art_classifier(model).loss_gradient(x[:4], tf_backend.one_hot(y[:4]))  # the compiled gradient
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_uap_fast_without_labels_climbs_the_clean_predictions(problem):
    """``y_train=None`` means the model's clean predictions (through ``input_transform`` when given)."""
    model, x = problem["model"], problem["x"][:256]
    kw = dict(norm="inf", eps=8 / 255, epochs=2, batch_size=64, learning_rate=0.004, seed=3, loss="clipped", beta=4.0)
    v_none, _ = attacks.uap_fast(model, x, None, **kw)
    v_pred, _ = attacks.uap_fast(model, x, tf_backend.predict_labels(model, x), **kw)
    np.testing.assert_array_equal(v_none, v_pred)
    flip = tf_backend.flip_transform("horizontal")
    pred_flipped = tf_backend.predict_labels(model, x[:, :, ::-1, :])
    v_t, _ = attacks.uap_fast(model, x, None, input_transform=flip, **kw)
    v_tp, _ = attacks.uap_fast(model, x, pred_flipped, input_transform=flip, **kw)
    np.testing.assert_array_equal(v_t, v_tp)


def test_clipped_loss_stops_steering_once_every_image_is_fooled(problem):
    """With every image's loss above beta the clipped objective has zero gradient: delta stays put."""
    model, x = problem["model"], problem["x"][:64]
    wrong = (tf_backend.predict_labels(model, x) + 1) % 7
    confident = np.array([_ce(model, x[i:i + 1], wrong[i:i + 1]) for i in range(len(x))])
    beta = float(confident.min()) * 0.5  # below every image's loss of the wrong label
    v, _ = attacks.uap_fast(model, x, wrong, norm="inf", eps=8 / 255, epochs=2, batch_size=64, learning_rate=0.004,
                            seed=0, loss="clipped", beta=beta)
    assert np.all(v == 0)
    v_ce, _ = attacks.uap_fast(model, x, wrong, norm="inf", eps=8 / 255, epochs=2, batch_size=64,
                               learning_rate=0.004, seed=0, loss="ce")
    assert np.abs(v_ce).max() > 0
