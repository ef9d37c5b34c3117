"""Tests of skinlib.models: registry contract, real backbones, training (resume, determinism,
best-on-validation), save/load and prediction. CPU only; tiny models on 32 px images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from skinlib import models as M
from skinlib.errors import SkinlibError
from skinlib.profiles import TrainConfig

S = 32


def _toy(n: int = 48, s: int = S, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose brightness carries the label (learnable), plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    x = rng.integers(0, 60, (n, s, s, 3)) + (y * 25)[:, None, None, None]
    return x.astype(np.uint8), y.astype(np.int64)


CFG = TrainConfig(epochs=2, batch_size=16, learning_rate=3e-3, class_weights=True, augment=True, jit_compile=False)


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


def _assert_same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# --------------------------------------------------------------------------- registry
def test_registry_entries() -> None:
    assert set(M.MODELS) == {"resnet50", "inceptionv3", "resnet_small", "inception_small", "resnet_tiny",
                             "inception_tiny"}
    for name, info in M.MODELS.items():
        assert info.name == name
        assert info.family in ("resnet", "inception")
        assert info.thesis_name == {"resnet": "resnet50", "inception": "inceptionv3"}[info.family]
        assert "Paper link: https://arxiv.org/abs/" in info.paper
    assert M.MODELS["resnet50"].native_size == 224 and M.MODELS["inceptionv3"].native_size == 299
    assert M.MODELS["resnet_small"].native_size is None


@pytest.mark.parametrize("name", ["resnet_small", "inception_small", "resnet_tiny", "inception_tiny"])
def test_small_models_map_pixels_to_logits(name: str) -> None:
    model = M.build_model(name, S)
    x = np.random.default_rng(0).random((2, S, S, 3), dtype=np.float32)
    out = np.asarray(model(x, training=False))
    assert out.shape == (2, 7) and out.dtype == np.float32 and np.isfinite(out).all()
    assert model.layers[-1].get_config()["activation"] == "linear"
    if name.endswith("tiny"):
        assert 1_000 <= model.count_params() <= 10_000


def test_unknown_model_and_bad_arguments() -> None:
    with pytest.raises(SkinlibError, match="unknown model 'vgg16'; valid: resnet50"):
        M.build_model("vgg16", 64)
    with pytest.raises(SkinlibError, match="image_size"):
        M.build_model("resnet_tiny", 8)
    with pytest.raises(SkinlibError, match="no ImageNet weights"):
        M.build_model("resnet_small", 64, weights="imagenet")


@pytest.mark.parametrize("mode,app", [("caffe", keras.applications.resnet50),
                                      ("tf", keras.applications.inception_v3)])
def test_preprocess_matches_keras_applications(mode: str, app) -> None:
    x = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
    ours = np.asarray(M.PixelPreprocess(mode)(x))
    theirs = np.asarray(app.preprocess_input(x * 255.0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)


def _loss(model: keras.Model, x, y):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x, training=True))


@pytest.mark.parametrize("name,size", [("resnet50", 224), ("inceptionv3", 299)])
def test_real_backbones_train_step_and_fgsm_at_native_size(name: str, size: int) -> None:
    model = M.build_model(name, size, weights=None)
    assert not any(isinstance(layer, keras.layers.Resizing) for layer in model.layers)
    x = tf.constant(np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32))
    y = tf.constant([0, 5])
    assert tuple(model(x, training=False).shape) == (2, 7)
    # one training step
    head_before = np.asarray(model.get_layer("logits").kernel).copy()
    opt = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        loss = _loss(model, x, y)
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    assert np.isfinite(float(loss))
    assert not np.array_equal(head_before, np.asarray(model.get_layer("logits").kernel))
    # one FGSM step in [0, 1] pixel space
    eps = 2 / 255
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _loss(model, x, y)
    x_adv = tf.clip_by_value(x + eps * tf.sign(tape.gradient(loss, x)), 0.0, 1.0).numpy()
    delta = np.abs(x_adv - x.numpy())
    assert delta.max() <= eps + 1e-6 and delta.max() > eps / 2
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_real_backbone_runs_at_the_input_size_from_scratch_else_resizes() -> None:
    """From scratch a keras.applications backbone runs at the input size when it accepts
    it (ResNet50 from 32 px); below that (InceptionV3 under 75 px), and with ImageNet
    weights (not downloaded here), the input is resized to the native size."""
    def resizes(model):
        return [layer.get_config()["height"] for layer in model.layers if isinstance(layer, keras.layers.Resizing)]

    model = M.build_model("resnet50", 64)
    assert resizes(model) == [] and model.get_layer("backbone").input_shape[1:3] == (64, 64)
    assert tuple(model(np.zeros((2, 64, 64, 3), np.float32)).shape) == (2, 7)
    model = M.build_model("inceptionv3", 64)
    assert resizes(model) == [299]
    assert tuple(model(np.zeros((1, 64, 64, 3), np.float32)).shape) == (1, 7)


def test_imagenet_without_network_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.utils import file_utils

    def no_network(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(SkinlibError) as err:
        M.build_model("resnet50", 224, weights="imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert "could not be downloaded" in msg and "train.weights: null" in msg and "~/.keras/models/" in msg
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg


# --------------------------------------------------------------------------- save / load / predict
@pytest.mark.parametrize("name", ["resnet_tiny", "inception_tiny"])
def test_save_load_round_trip_safe_mode(tmp_path: Path, name: str) -> None:
    model = M.build_model(name, S, seed=3)
    x, _ = _toy(10)
    path = M.save_model(model, tmp_path / "sub" / "model.keras")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]  # no temp file left
    loaded = M.load_model(path)
    np.testing.assert_array_equal(M.predict_logits(model, x), M.predict_logits(loaded, x))


def test_save_load_errors(tmp_path: Path) -> None:
    model = M.build_model("resnet_tiny", S)
    with pytest.raises(SkinlibError, match="must end in .keras"):
        M.save_model(model, tmp_path / "model.h5")
    with pytest.raises(SkinlibError, match="no such model file"):
        M.load_model(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(SkinlibError, match="not a loadable"):
        M.load_model(tmp_path / "junk.keras")


def test_predict_uint8_float_and_batching_agree() -> None:
    model = M.build_model("inception_tiny", S)
    x, _ = _toy(7)
    a = M.predict_logits(model, x, batch_size=3)
    b = M.predict_logits(model, x.astype(np.float32) / 255.0)
    assert a.shape == (7, 7)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(M.predict_labels(model, x, batch_size=3), a.argmax(1))
    with pytest.raises(SkinlibError, match=r"\[0, 1\]"):
        M.predict_logits(model, x.astype(np.float32))
    with pytest.raises(SkinlibError, match="shape"):
        M.predict_logits(model, x[..., 0])


# --------------------------------------------------------------------------- pipeline pieces
def test_class_weights_power_tempers_inverse_frequency() -> None:
    from skinlib.split import class_weights

    w = class_weights(np.array([0, 0, 0, 1]))
    assert (w[0], w[1]) == pytest.approx((4 / 6, 2.0))
    root = class_weights(np.array([0, 0, 0, 1]), power=0.5)
    assert (root[0], root[1]) == pytest.approx(((4 / 6) ** 0.5, 2.0 ** 0.5))


def test_augment_is_a_dihedral_transform_per_image() -> None:
    x, _ = _toy(16, s=8)
    out = M._augment(tf.constant(x), tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(out, M._augment(tf.constant(x), tf.constant([0, 1], tf.int64)).numpy())
    seen = set()
    for a, b in zip(x, out):
        candidates = [np.rot90(a, k) for k in range(4)] + [np.rot90(a[:, ::-1], k) for k in range(4)]
        match = [k for k, c in enumerate(candidates) if np.array_equal(c, b)]
        assert match
        seen.add(match[0])
    assert len(seen) > 2  # not always the identity


def _epochs(data, start: int, end: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(xb.numpy(), yb.numpy(), wb.numpy()) for xb, yb, wb in data.dataset(start, end)]


def test_epoch_data_visits_each_image_once_and_depends_on_seed_and_epoch() -> None:
    x, y = _toy(37)
    data = M._EpochData(x, y, 8, seed=1, augment=False, class_weight={5: 2.0})
    batches = _epochs(data, 0, 1)
    assert data.steps == 5 and [len(b[1]) for b in batches] == [8, 8, 8, 8, 5]
    xb = batches[0][0]
    assert xb.dtype == np.float32 and xb.shape == (8, S, S, 3) and 0.0 <= xb.min() and xb.max() <= 1.0
    xs = np.concatenate([b[0] for b in batches])
    assert sorted(map(bytes, np.round(xs * 255).astype(np.uint8))) == sorted(map(bytes, x))
    ys = np.concatenate([b[1] for b in batches])
    w = np.concatenate([b[2] for b in batches])
    assert np.all(w[ys == 5] == 2.0) and np.all(w[ys != 5] == 1.0)
    two = _epochs(data, 0, 2)  # epoch 1 is the same whether it follows epoch 0 or starts a resumed run
    for a, b in zip(two, batches + _epochs(data, 1, 2)):
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(ys, np.concatenate([b[1] for b in two[5:]]))
    other = M._EpochData(x, y, 8, seed=2, augment=True, class_weight=None)
    assert not np.array_equal(ys, np.concatenate([b[1] for b in _epochs(other, 0, 1)]))


# --------------------------------------------------------------------------- training
def _train(workdir: Path, *, name: str = "resnet_tiny", seed: int = 0, cfg: TrainConfig = CFG, **kw):
    model = M.build_model(name, S, seed=seed)
    history = M.train_model(model, _toy(48), _toy(21, seed=1), cfg, workdir, seed=seed, verbose=0, **kw)
    return model, history


def test_train_history_and_files(tmp_path: Path) -> None:
    model, history = _train(tmp_path)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_macro_recall", "learning_rate"} <= set(history)
    assert all(len(v) == 2 for v in history.values())
    assert json.loads((tmp_path / "history.json").read_text()) == history
    assert history["learning_rate"][1] < history["learning_rate"][0]  # cosine decay
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epoch"] == 2
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"state.json", "history.json", *state["files"].values(), state["best"]["file"]}


def test_determinism_same_seed_same_weights(tmp_path: Path) -> None:
    cfg = replace(CFG, epochs=1)
    a, ha = _train(tmp_path / "a", cfg=cfg)
    b, hb = _train(tmp_path / "b", cfg=cfg)
    _assert_same_weights(_weights(a), _weights(b))
    assert ha == hb
    c = M.build_model("resnet_tiny", S, seed=1)
    assert not all(np.array_equal(u, v) for u, v in zip(_weights(M.build_model("resnet_tiny", S)), _weights(c)))


def test_resume_runs_only_the_missing_epochs(tmp_path: Path) -> None:
    model, h2 = _train(tmp_path, epochs=2)
    assert len(h2["loss"]) == 2
    steps = int(np.ceil(48 / CFG.batch_size))
    model3, h3 = _train(tmp_path, epochs=3)  # a fresh model object, as in a new process
    assert len(h3["loss"]) == 3
    for key in h2:
        assert h3[key][:2] == h2[key]
    assert int(model3.optimizer.iterations) == 3 * steps  # optimizer state restored, one epoch run


class _Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["resnet_tiny", "resnet_small"])  # resnet_small: dropout, a random state
def test_killed_run_resumes_like_an_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      name: str) -> None:
    cfg = replace(CFG, epochs=3)
    straight_model, straight = _train(tmp_path / "straight", cfg=cfg, name=name)
    original = M._Checkpointer.on_epoch_end

    def dies_after_epoch_2(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            # leave what a kill in the middle of epoch 3's checkpoint could leave
            (self.workdir / ".epoch-003.weights.h5.abc.weights.h5").write_bytes(b"partial")
            raise _Killed

    monkeypatch.setattr(M._Checkpointer, "on_epoch_end", dies_after_epoch_2)
    with pytest.raises(_Killed):
        _train(tmp_path / "killed", cfg=cfg, name=name)
    monkeypatch.setattr(M._Checkpointer, "on_epoch_end", original)
    assert json.loads((tmp_path / "killed" / "state.json").read_text())["epoch"] == 2
    resumed_model, resumed = _train(tmp_path / "killed", cfg=cfg, name=name)
    assert resumed == straight
    _assert_same_weights(_weights(resumed_model), _weights(straight_model))
    assert not (tmp_path / "killed" / ".epoch-003.weights.h5.abc.weights.h5").exists()


def test_best_on_validation_weights_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([0.3, 0.9, 0.5])
    monkeypatch.setattr(M, "model_metrics", lambda y_true, y_pred: {"macro_recall": next(scores)})
    model, history = _train(tmp_path, cfg=replace(CFG, epochs=3, learning_rate=1e-2))
    assert history["val_macro_recall"] == [0.3, 0.9, 0.5]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["best"]["epoch"] == 2
    last = M.build_model("resnet_tiny", S)
    last.load_weights(tmp_path / state["files"]["weights"])
    assert not all(np.array_equal(u, v) for u, v in zip(_weights(model), _weights(last)))
    # the returned model scores what epoch 2 scored on validation
    xv, yv = _toy(21, seed=1)
    logits = M.predict_logits(model, xv)
    val_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(yv, logits))
    assert val_loss == pytest.approx(history["val_loss"][1], rel=1e-4)
    assert val_loss != pytest.approx(history["val_loss"][2], rel=1e-4)


def _with_backbone() -> keras.Model:
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((S, S, 3))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 3, strides=4)(inner_in), name="backbone")
    inputs = keras.Input((S, S, 3))
    x = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    return keras.Model(inputs, keras.layers.Dense(7, name="logits")(x))


def test_transfer_learning_freezes_then_fine_tunes(tmp_path: Path) -> None:
    cfg = replace(CFG, epochs=1, weights="imagenet", fine_tune_epochs=0, fine_tune_learning_rate=1e-4)
    model = _with_backbone()
    before = _weights(model.get_layer("backbone"))
    M.train_model(model, _toy(48), _toy(21, seed=1), cfg, tmp_path, verbose=0)
    _assert_same_weights(before, _weights(model.get_layer("backbone")))  # frozen head phase
    assert not np.array_equal(np.asarray(model.get_layer("logits").kernel),
                              np.asarray(_with_backbone().get_layer("logits").kernel))
    # resume into the fine-tuning phase: only that epoch runs, the backbone moves
    model = _with_backbone()
    history = M.train_model(model, _toy(48), _toy(21, seed=1), replace(cfg, fine_tune_epochs=1), tmp_path,
                            verbose=0)
    assert len(history["loss"]) == 2
    assert history["learning_rate"][1] <= 1e-4 < history["learning_rate"][0]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["phase"] == "fine_tune"
    fine = keras.models.clone_model(model)
    fine.load_weights(tmp_path / state["files"]["weights"])
    assert not all(np.array_equal(u, v) for u, v in zip(before, _weights(fine.get_layer("backbone"))))

    with pytest.raises(SkinlibError, match="no pretrained backbone"):
        M.train_model(M.build_model("resnet_tiny", S), _toy(48), _toy(21), cfg, tmp_path / "x", verbose=0)


def test_train_rejects_bad_input(tmp_path: Path) -> None:
    model = M.build_model("resnet_tiny", S)
    x, y = _toy(8)
    with pytest.raises(SkinlibError, match="uint8"):
        M.train_model(model, (x.astype(np.float32), y), (x, y), CFG, tmp_path)
    with pytest.raises(SkinlibError, match="labels"):
        M.train_model(model, (x, y[:3]), (x, y), CFG, tmp_path)
    with pytest.raises(SkinlibError, match="do not fit"):
        M.train_model(model, _toy(8, s=40), _toy(8, s=40), CFG, tmp_path)


# --------------------------------------------------------------------------- several devices
_MIRRORED_SCRIPT = r"""
import json, sys
from dataclasses import replace
from pathlib import Path

import tensorflow as tf

# two logical devices out of the one CPU, before TensorFlow initialises its devices
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np

from skinlib import models as M
from skinlib.profiles import TrainConfig

out_dir, runs = Path(sys.argv[1]), json.loads(sys.argv[2])


def toy(n, s, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    return (rng.integers(0, 60, (n, s, s, 3)) + (y * 25)[:, None, None, None]).astype(np.uint8), y


report = {"replicas": M._strategy("mirrored").num_replicas_in_sync, "runs": {}}
for name, size, epochs, fine_tune in runs:
    train, val = toy(64, size, 0), toy(21, size, 1)
    # fine_tune: the two phases of transfer learning (frozen backbone, then unfrozen), on a
    # randomly initialised keras.applications backbone (no download)
    cfg = TrainConfig(epochs=epochs, batch_size=16, learning_rate=3e-3, augment=True, jit_compile=False,
                      weights="imagenet" if fine_tune else None, fine_tune_epochs=fine_tune)
    for mode in (None, "mirrored"):
        model = M.build_model(name, size, seed=0)
        work = out_dir / name / str(mode)
        history = M.train_model(model, train, val, replace(cfg, distribute=mode), work, verbose=0)
        np.save(out_dir / f"{name}-{mode}-logits.npy", M.predict_logits(model, val[0]))
        np.savez(out_dir / f"{name}-{mode}-weights.npz", *model.get_weights())
        report["runs"][f"{name}/{mode}"] = {"history": history, "files": sorted(p.name for p in work.iterdir())}
(out_dir / "report.json").write_text(json.dumps(report))
"""


def _mirrored_vs_one_device(tmp_path: Path, runs: list[tuple[str, int, int, int]]) -> None:
    """Train each ``(model, image size, epochs, fine-tune epochs)`` of ``runs`` on one
    device and with ``train.distribute: mirrored`` over two logical CPU devices (in a
    subprocess: the CPU must be split before TensorFlow initialises its devices), from
    the same initial weights, and compare.

    Tolerance: the replicas compute the same global batch (BatchNormalization synchronised
    across them) and sum their gradients, so the only difference is the order in which
    float32 sums are taken (~1e-7 relative each), which the Adam steps carry on; measured
    here: at most 5e-7 on logits of size ~1 and 2e-6 on weights after 1-2 epochs. Bound:
    1e-4 absolute on logits and weights (50x the measured), 1e-4 relative on the loss
    history; validation accuracy and macro recall must be equal (a prediction would flip
    only at a near tie).
    """
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, str(tmp_path), json.dumps(runs)],
                          capture_output=True, text=True, timeout=3600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["replicas"] == 2
    for name, _, epochs, fine_tune in runs:
        one, two = report["runs"][f"{name}/None"], report["runs"][f"{name}/mirrored"]
        assert one["files"] == two["files"]  # the same checkpoints, state.json and history.json
        assert one["history"].keys() == two["history"].keys()
        for key, values in one["history"].items():
            assert len(values) == len(two["history"][key]) == epochs + fine_tune
            if key in ("val_accuracy", "val_macro_recall", "learning_rate"):
                assert two["history"][key] == values, (name, key)
            else:
                np.testing.assert_allclose(two["history"][key], values, rtol=1e-4, err_msg=f"{name} {key}")
        la, lb = (np.load(tmp_path / f"{name}-{m}-logits.npy") for m in ("None", "mirrored"))
        assert la.shape == lb.shape == (21, 7)
        np.testing.assert_allclose(lb, la, atol=1e-4, err_msg=name)
        with np.load(tmp_path / f"{name}-None-weights.npz") as wa, \
                np.load(tmp_path / f"{name}-mirrored-weights.npz") as wb:
            assert wa.files == wb.files
            for k in wa.files:
                assert wa[k].shape == wb[k].shape
                np.testing.assert_allclose(wb[k], wa[k], atol=1e-4, err_msg=f"{name} {k}")


def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(tmp_path: Path) -> None:
    """``train.distribute: mirrored``: the small families (residual blocks; inception modules,
    whose parallel branches each all-reduce their BatchNormalization statistics)."""
    _mirrored_vs_one_device(tmp_path, [("resnet_tiny", 32, 2, 0), ("inception_tiny", 32, 1, 0)])


@pytest.mark.slow
@pytest.mark.long
def test_mirrored_strategy_trains_the_thesis_backbones(tmp_path: Path) -> None:
    """The same for keras.applications ResNet50 and InceptionV3 (nested backbone models),
    through both transfer-learning phases, at the smallest sizes they accept."""
    _mirrored_vs_one_device(tmp_path, [("resnet50", 32, 1, 1), ("inceptionv3", 75, 1, 1)])
