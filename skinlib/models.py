"""The model registry, building, training (resumable) and prediction.

Every model follows one contract, whatever its family or size:

- input: ``float32`` pixels in ``[0, 1]``, shape ``(S, S, 3)``, RGB;
- the model holds its own normalisation (:class:`PixelPreprocess`) and, for the
  ``keras.applications`` backbones, a ``Resizing`` layer to their native size when
  ``S`` differs (with ImageNet weights, or below the smallest size the backbone accepts:
  32 px ResNet50, 75 px InceptionV3; from scratch it runs at ``S``), so attacks and defences all work in the same ``[0, 1]`` pixel space;
- output: ``(7,)`` **logits** (no softmax), classes in :data:`skinlib.labels.CLASSES` order.

Registry (the pattern of MedMNIST's ``INFO``): :data:`MODELS` maps a name to a
:class:`ModelInfo`; adding a model is one builder function and one entry.

- ``resnet50`` / ``inceptionv3``: the thesis's networks from ``keras.applications``
  (He et al. 2016, | Paper link: https://arxiv.org/abs/1512.03385 ; Szegedy et al. 2016,
  | Paper link: https://arxiv.org/abs/1512.00567), ``include_top=False`` + global average
  pooling + dropout + ``Dense(7)``; ImageNet weights optional.
- ``resnet_small`` / ``inception_small``: CPU-sized members of the same families
  (residual basic blocks; inception modules with 1x1 / 3x3 / 5x5-as-two-3x3 / pool branches).
- ``resnet_tiny`` / ``inception_tiny``: a few thousand parameters, for the smoke profile.

Training (:func:`train_model`) is the one place, with ``skinlib.tf_backend``, that uses
TensorFlow directly (``tf.data``, op determinism); the models themselves are plain Keras 3.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import keras
import numpy as np
from keras import layers, ops

from skinlib.errors import SkinlibError
from skinlib.labels import NUM_CLASSES
from skinlib.metrics import model_metrics
from skinlib.paths import show_progress
from skinlib.profiles import TrainConfig

__all__ = [
    "MODELS", "ModelInfo", "PixelPreprocess", "build_model", "get_model_info", "train_model",
    "save_model", "load_model", "predict_logits", "predict_labels",
    "set_determinism",
]

HE_2016 = ("He, Zhang, Ren & Sun (2016), Deep Residual Learning for Image Recognition "
           "| Paper link: https://arxiv.org/abs/1512.03385")
SZEGEDY_2016 = ("Szegedy, Vanhoucke, Ioffe, Shlens & Wojna (2016), Rethinking the Inception Architecture "
                "for Computer Vision | Paper link: https://arxiv.org/abs/1512.00567")


# --------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="skinlib")
class PixelPreprocess(layers.Layer):
    """Map ``[0, 1]`` RGB pixels to what a backbone expects (differentiable, no weights).

    Modes:
        - ``"caffe"``: ResNet50 (``keras.applications.resnet50.preprocess_input``): scale to
          0..255, RGB to BGR, subtract the ImageNet channel means.
        - ``"tf"``: InceptionV3 (``inception_v3.preprocess_input``): scale to ``[-1, 1]``.
        - ``"center"``: the small models: ``(x - 0.5) / 0.25``.

    Shape:
        - input and output: ``(N, H, W, 3)`` float32.
    """

    MODES = ("caffe", "tf", "center")
    _CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "center", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise SkinlibError(f"PixelPreprocess: unknown mode {mode!r}; valid: {', '.join(self.MODES)}")
        self.mode = mode

    def call(self, x):  # noqa: D102
        if self.mode == "caffe":
            x = ops.flip(x * 255.0, axis=-1)
            return x - ops.convert_to_tensor(self._CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x * 2.0 - 1.0
        return (x - 0.5) * 4.0

    def compute_output_shape(self, input_shape):  # noqa: D102
        return input_shape

    def get_config(self) -> dict[str, Any]:  # noqa: D102
        return {**super().get_config(), "mode": self.mode}


# --------------------------------------------------------------------------- registry
Builder = Callable[..., keras.Model]


@dataclass(frozen=True)
class ModelInfo:
    """One entry of :data:`MODELS`.

    ``builder(image_size, weights, num_classes) -> keras.Model`` (without the seed: set by
    :func:`build_model`). ``native_size`` is the backbone's input size (``None``: any size).
    ``weights_file`` is the ImageNet weights file name ``keras.utils.get_file`` caches in
    ``~/.keras/models/`` (``None``: no pretrained weights).
    """

    name: str
    family: str  # "resnet" | "inception"
    thesis_name: str  # "resnet50" | "inceptionv3"
    native_size: Optional[int]
    builder: Builder
    description: str
    paper: str
    weights_file: Optional[str] = None


def _head(x, num_classes: int, dropout: float):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, name="logits")(x)


def _keras_app(name: str, app: Callable[..., keras.Model], native: int, min_size: int, mode: str,
               weights_file: str) -> Builder:
    def build(image_size: int, weights: Optional[str], num_classes: int) -> keras.Model:
        inputs = keras.Input((image_size, image_size, 3), name="pixels")
        x = inputs
        # ImageNet features were learnt at the native size: resize to it. Trained from
        # scratch (weights None), the backbone runs at the input size itself when
        # keras.applications accepts it (at least ``min_size``), else it is resized too.
        size = native if (weights == "imagenet" or image_size < min_size) else image_size
        if image_size != size:
            x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
        x = PixelPreprocess(mode, name="preprocess")(x)
        try:
            base = app(include_top=False, weights=weights, input_shape=(size, size, 3))
        except Exception as exc:  # keras.utils.get_file raises a bare Exception on URL errors
            if weights != "imagenet":
                raise
            raise SkinlibError(
                f"{name}: ImageNet weights could not be downloaded ({type(exc).__name__}: no network?); "
                f"run without them with `train.weights: null` in the profile, or put {weights_file} "
                f"in ~/.keras/models/") from None
        base.name = "backbone"  # train_model freezes this layer for transfer learning
        # Transfer learning: keep BatchNorm in inference mode even when the base is
        # unfrozen for fine-tuning (Keras transfer-learning guide); from scratch, train it.
        x = base(x, training=False) if weights == "imagenet" else base(x)
        return keras.Model(inputs, _head(x, num_classes, 0.5), name=name)

    return build


def _conv_bn(x, filters: int, kernel: int, strides: int = 1, *, relu: bool = True, zero_gamma: bool = False,
             name: str):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(gamma_initializer="zeros" if zero_gamma else "ones", name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, strides: int, name: str):
    """ResNet basic block (He et al. 2016, Fig. 2 left); last BN starts at zero (Goyal et al. 2017)."""
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, name=f"{name}_1")
    y = _conv_bn(y, filters, 3, relu=False, zero_gamma=True, name=f"{name}_2")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, relu=False, name=f"{name}_proj")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _small_stem(image_size: int, stem: int, stem_pool: bool):
    """Input, normalisation and the stride-2 stem shared by the CPU-sized families."""
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = PixelPreprocess("center", name="preprocess")(inputs)
    x = _conv_bn(x, stem, 3, 2, name="stem")
    if stem_pool:
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    return inputs, x


def _small_resnet(name: str, stem: int, widths: tuple[int, ...], blocks: tuple[int, ...], *, stem_pool: bool,
                  dropout: float) -> Builder:
    def build(image_size: int, weights: Optional[str], num_classes: int) -> keras.Model:
        inputs, x = _small_stem(image_size, stem, stem_pool)
        for s, (w, n) in enumerate(zip(widths, blocks)):
            for b in range(n):
                x = _basic_block(x, w, 2 if (b == 0 and s > 0) else 1, f"stage{s + 1}_block{b + 1}")
        return keras.Model(inputs, _head(x, num_classes, dropout), name=name)

    return build


def _inception_module(x, b1: int, b3: int, b5: int, bp: int, name: str):
    """Inception module with factorised 5x5 (two 3x3; Szegedy et al. 2016, Fig. 5)."""
    r3, r5 = max(b3 // 2, 4), max(b5 // 2, 4)
    p1 = _conv_bn(x, b1, 1, name=f"{name}_1x1")
    p3 = _conv_bn(_conv_bn(x, r3, 1, name=f"{name}_3x3r"), b3, 3, name=f"{name}_3x3")
    p5 = _conv_bn(_conv_bn(_conv_bn(x, r5, 1, name=f"{name}_5x5r"), b5, 3, name=f"{name}_5x5a"), b5, 3,
                  name=f"{name}_5x5b")
    pp = _conv_bn(layers.AveragePooling2D(3, 1, padding="same", name=f"{name}_pool")(x), bp, 1,
                  name=f"{name}_poolproj")
    return layers.Concatenate(name=f"{name}_concat")([p1, p3, p5, pp])


def _grid_reduction(x, filters: int, name: str):
    """Grid-size reduction: a stride-2 3x3 conv branch beside a stride-2 max pool (Szegedy et al. 2016, Fig. 10)."""
    conv = _conv_bn(x, filters, 3, 2, name=f"{name}_conv3")
    pool = layers.MaxPooling2D(3, 2, padding="same", name=f"{name}_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([conv, pool])


def _small_inception(name: str, stem: int, stages: tuple[tuple[int, int, int, int], ...], reductions: tuple[int, ...],
                     *, stem_pool: bool, dropout: float) -> Builder:
    def build(image_size: int, weights: Optional[str], num_classes: int) -> keras.Model:
        inputs, x = _small_stem(image_size, stem, stem_pool)
        for s, branches in enumerate(stages):
            if s > 0:
                x = _grid_reduction(x, reductions[s - 1], f"reduce{s}")
            x = _inception_module(x, *branches, name=f"mixed{s + 1}")
        return keras.Model(inputs, _head(x, num_classes, dropout), name=name)

    return build


def _registry() -> dict[str, ModelInfo]:
    apps = keras.applications
    resnet_file = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    inception_file = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    entries = [
        ModelInfo("resnet50", "resnet", "resnet50", 224,
                  _keras_app("resnet50", apps.ResNet50, 224, 32, "caffe", resnet_file),
                  "keras.applications ResNet50 (23.5M parameters) + GAP + dropout 0.5 + Dense(7); the thesis's model.",
                  HE_2016, resnet_file),
        ModelInfo("inceptionv3", "inception", "inceptionv3", 299,
                  _keras_app("inceptionv3", apps.InceptionV3, 299, 75, "tf", inception_file),
                  "keras.applications InceptionV3 (21.8M parameters) + GAP + dropout 0.5 + Dense(7); "
                  "the thesis's model.",
                  SZEGEDY_2016, inception_file),
        ModelInfo("resnet_small", "resnet", "resnet50", None,
                  _small_resnet("resnet_small", 32, (32, 64, 128), (1, 1, 1), stem_pool=True, dropout=0.2),
                  "CPU-sized ResNet (310k parameters): 3x3/2 stem + max pool, three stages of basic "
                  "residual blocks (32/64/128 channels).",
                  HE_2016),
        ModelInfo("inception_small", "inception", "inceptionv3", None,
                  _small_inception("inception_small", 32, ((16, 24, 16, 8), (32, 48, 32, 16), (64, 96, 64, 32)),
                                   (64, 96), stem_pool=True, dropout=0.2),
                  "CPU-sized Inception (333k parameters): 3x3/2 stem + max pool, three inception modules "
                  "separated by grid reductions.",
                  SZEGEDY_2016),
        ModelInfo("resnet_tiny", "resnet", "resnet50", None,
                  _small_resnet("resnet_tiny", 8, (8, 16), (1, 1), stem_pool=False, dropout=0.0),
                  "Smoke-test ResNet (5.4k parameters): stem + two basic residual blocks.",
                  HE_2016),
        ModelInfo("inception_tiny", "inception", "inceptionv3", None,
                  _small_inception("inception_tiny", 8, ((4, 8, 4, 4), (8, 8, 8, 8)), (8,), stem_pool=False,
                                   dropout=0.0),
                  "Smoke-test Inception (4.8k parameters): stem + two small inception modules.",
                  SZEGEDY_2016),
    ]
    return {e.name: e for e in entries}


#: Every model, by name.
MODELS: dict[str, ModelInfo] = _registry()


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a one-line error naming the valid ones."""
    if name not in MODELS:
        raise SkinlibError(f"model: unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, image_size: int, *, weights: Optional[str] = None, num_classes: int = NUM_CLASSES,
                seed: int = 0) -> keras.Model:
    """Build registry model ``name`` for ``(image_size, image_size, 3)`` ``[0, 1]`` pixels, returning logits.

    ``weights``: ``"imagenet"`` (only ``resnet50``/``inceptionv3``; downloaded by Keras on
    first use and cached in ``~/.keras/models/``) or ``None`` (random initialisation,
    seeded by ``seed`` through ``keras.utils.set_random_seed``, which also seeds Python,
    NumPy and TensorFlow's global generators).

    Examples:
        >>> model = build_model("resnet_tiny", 32)
        >>> model(np.zeros((2, 32, 32, 3), "float32")).shape
        TensorShape([2, 7])
    """
    info = get_model_info(name)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise SkinlibError(f"{name}: image_size must be an integer of at least 16, got {image_size!r}")
    if weights not in (None, "imagenet"):
        raise SkinlibError(f"{name}: weights must be 'imagenet' or None, got {weights!r}")
    if weights == "imagenet" and info.weights_file is None:
        pretrained = [m for m, i in MODELS.items() if i.weights_file]
        raise SkinlibError(f"{name}: no ImageNet weights for this model (only {', '.join(pretrained)}); "
                           "set `train.weights: null`")
    if num_classes < 2:
        raise SkinlibError(f"{name}: num_classes must be at least 2, got {num_classes}")
    keras.utils.set_random_seed(seed)
    return info.builder(int(image_size), weights, num_classes)


# --------------------------------------------------------------------------- input pipeline
def _check_images(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        shape = getattr(x, "shape", None)
        raise SkinlibError(f"{what}: expected images of shape (N, S, S, 3), got {shape}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise SkinlibError(f"{what}: expected uint8 or float pixels, got dtype {x.dtype}")
    return x


def _check_xy(data: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise SkinlibError(f"{what}: expected a pair (images, labels)")
    x, y = _check_images(data[0], f"{what} images"), np.asarray(data[1])
    if x.dtype != np.uint8:
        raise SkinlibError(f"{what} images: expected uint8 pixels for training, got dtype {x.dtype}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise SkinlibError(f"{what} labels: expected {x.shape[0]} integer labels, got shape {y.shape} dtype {y.dtype}")
    if len(y) == 0:
        raise SkinlibError(f"{what}: no images")
    return x, y.astype(np.int32)


def _augment(xb, seed):
    """A random element of the dihedral group D4 per image: flips and 90-degree rotations.

    Dermoscopy has no canonical orientation, so all 8 are equally plausible. ``seed`` is a
    stateless-RNG seed (shape ``(2,)``): the same seed gives the same transforms. One
    gather through precomputed pixel maps (4-5x cheaper than flipping the whole batch
    three times and selecting).

    Shape:
        - xb: ``(B, S, S, C)`` (square images, ``S`` known when traced), any dtype; output: the same.
    """
    import tensorflow as tf

    s, c = int(xb.shape[1]), int(xb.shape[3])
    grid = np.arange(s * s, dtype=np.int32).reshape(s, s)
    maps = np.stack([np.rot90(g, k).ravel() for g in (grid, grid[:, ::-1]) for k in range(4)])
    b = tf.shape(xb)[0]
    k = tf.random.stateless_uniform([b], seed=seed, minval=0, maxval=8, dtype=tf.int32)
    pixels = tf.gather(tf.reshape(xb, [b, s * s, c]), tf.gather(tf.constant(maps), k), batch_dims=1)
    return tf.reshape(pixels, tf.shape(xb))


class _EpochData:
    """A ``tf.data`` pipeline over uint8 arrays: per-epoch seeded shuffle and augmentation.

    The permutation of epoch ``e`` and the augmentation of its batch ``i`` come from
    stateless generators seeded with ``(seed, e)`` and ``(seed, e, i)``, so a resumed run
    sees exactly the batches of an uninterrupted one. Each batch is gathered from the
    uint8 images (one copy of them, kept on the CPU) and converted to float32 ``/255``
    on its own (never a float copy of all images), in parallel with training (prefetch).
    Everything runs in TensorFlow's threads: no Python (and no GIL) per batch.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, augment: bool,
                 class_weight: Optional[dict[int, float]]) -> None:
        import tensorflow as tf

        self.n, self.batch_size, self.seed, self.augment = len(y), batch_size, int(seed), augment
        self.steps = math.ceil(self.n / batch_size)
        w = np.ones(max(NUM_CLASSES, int(y.max()) + 1, *(int(c) + 1 for c in (class_weight or {}))), np.float32)
        for c, v in (class_weight or {}).items():
            w[c] = v
        with tf.device("/cpu:0"):
            self.x, self.y, self.w = tf.constant(x), tf.constant(y, tf.int32), tf.constant(w[y])

    def dataset(self, start_epoch: int, end_epoch: int):
        """Batches ``(x float32, y, sample weight)`` of epochs ``start_epoch .. end_epoch - 1``, in order."""
        import tensorflow as tf

        n, bs, seed = self.n, self.batch_size, tf.constant(self.seed, tf.int64)

        def epoch(e):
            order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([seed, e])))
            batches = tf.data.Dataset.from_tensor_slices(order).batch(bs).enumerate()
            return batches.map(lambda i, idx: (tf.stack([seed * 1_000_003 + e, i]), idx))

        def load(batch_seed, idx):
            xb = tf.gather(self.x, idx)
            if self.augment:
                xb = _augment(xb, batch_seed)
            return tf.cast(xb, tf.float32) / 255.0, tf.gather(self.y, idx), tf.gather(self.w, idx)

        ds = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(epoch)
        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _batches_float(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    for i in range(0, len(x), batch_size):
        yield (x[i:i + batch_size].astype(np.float32) * np.float32(scale)) if scale != 1.0 else \
            x[i:i + batch_size].astype(np.float32, copy=False)


# --------------------------------------------------------------------------- prediction
def predict_logits(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits ``(N, num_classes)`` for uint8 (0..255) or float (``[0, 1]``) images, batch by batch.

    Shape:
        - x: ``(N, S, S, 3)`` uint8 or float in ``[0, 1]``.
        - output: ``(N, num_classes)`` float32.
    """
    x = _check_images(x, "predict_logits")
    if x.dtype != np.uint8 and len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise SkinlibError("predict_logits: float images must lie in [0, 1] (pass uint8 for 0..255 pixels)")
    out = np.empty((len(x), model.output_shape[-1]), np.float32)
    for i, xb in enumerate(_batches_float(x, batch_size)):
        out[i * batch_size:i * batch_size + len(xb)] = np.asarray(model.predict_on_batch(xb))
    return out


def predict_labels(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices ``(N,)`` (argmax of :func:`predict_logits`)."""
    return predict_logits(model, x, batch_size).argmax(axis=1)


# --------------------------------------------------------------------------- save / load
def _atomic_path(path: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save ``model`` to ``path`` (``.keras``) atomically: a temporary file, then ``os.replace``."""
    path = Path(path)
    if path.suffix != ".keras":
        raise SkinlibError(f"{path}: a model file must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path, ".keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` model saved by :func:`save_model` (``safe_mode=True``: no arbitrary code)."""
    path = Path(path)
    if not path.is_file():
        raise SkinlibError(f"{path}: no such model file")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # corrupt zip, unknown layer, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SkinlibError(f"{path}: not a loadable .keras model ({first})") from None


# --------------------------------------------------------------------------- training
def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic.

    ``tf.config.experimental.enable_op_determinism`` is process-wide and cannot be turned
    off again. Its cost, measured on 2 shared CPU cores (resnet_small, 64 px): the train
    step's own speed did not change beyond the noise of the machine (deterministic kernels
    matter mostly on GPUs); Keras then refuses XLA, which on this CPU was 1.5-1.7x slower
    per step plus 5-15 s of compilation anyway; tf.data keeps its order; ops without a
    deterministic kernel raise instead of running.
    """
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _op_determinism_enabled() -> bool:
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return bool(is_op_determinism_enabled())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = _atomic_path(path, ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_save_weights(model: keras.Model, path: Path) -> None:
    tmp = _atomic_path(path, ".weights.h5")
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_save_arrays(arrays: list[np.ndarray], path: Path) -> None:
    tmp = _atomic_path(path, ".npz")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, *arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _restore_arrays(path: Path, variables: list) -> None:
    """Assign the arrays saved by :func:`_atomic_save_arrays` at ``path`` to ``variables``, in order,
    when they fit them one for one (count and shapes); else leave the variables as they are."""
    with np.load(path) as npz:
        arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    if len(arrays) == len(variables) and all(a.shape == tuple(v.shape) for a, v in zip(arrays, variables)):
        for v, a in zip(variables, arrays):
            v.assign(a)


def _seed_generators(model: keras.Model) -> list:
    """The random states of the model's layers (its dropout masks): not among its weights, so
    a checkpoint keeps them apart (without them a resumed run draws other masks)."""
    return [g for layer in model._flatten_layers() for g in (getattr(layer, "_seed_generators", None) or [])]


class _Checkpointer(keras.callbacks.Callback):
    """Validation metrics, best-on-validation tracking and a crash-safe checkpoint per epoch.

    After each epoch: the weights (``epoch-NNN.weights.h5``), the optimizer state
    (``epoch-NNN.optimizer.npz``), the layers' random states (``epoch-NNN.rng.npz``, see
    :func:`_seed_generators`) and, when the epoch is the best so far, the best weights
    (``best-NNN.weights.h5``) are written, each through a temporary file and ``os.replace``;
    then ``state.json`` (the commit point) is replaced to point at them, and older files
    are deleted. A run killed at any moment therefore finds a consistent ``state.json``
    naming files that exist.
    """

    def __init__(self, workdir: Path, state: dict, val: tuple[np.ndarray, np.ndarray], batch_size: int,
                 phase: str) -> None:
        super().__init__()
        self.workdir, self.state, self.val, self.batch_size, self.phase = workdir, state, val, batch_size, phase

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))  # at the epoch's first step

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs if logs is not None else {}
        xv, yv = self.val
        if self.model.distribute_strategy.num_replicas_in_sync > 1:
            # predict_on_batch would give each replica the whole batch: Keras's
            # distributed predict splits it (and its last, partial, batch) instead
            logits = np.concatenate([np.asarray(self.model.predict(xb, batch_size=len(xb), verbose=0))
                                     for xb in _batches_float(xv, self.batch_size * 4)])
        else:
            logits = predict_logits(self.model, xv, self.batch_size * 4)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        pred = logits.argmax(axis=1)
        logs["val_loss"] = float(-logp[np.arange(len(yv)), yv].mean())
        logs["val_accuracy"] = float(np.mean(pred == yv))
        logs["val_macro_recall"] = model_metrics(yv, pred)["macro_recall"]
        logs["learning_rate"] = self.lr
        st = self.state
        for k, v in logs.items():
            st["history"].setdefault(k, []).append(float(v))
        score = (logs["val_macro_recall"], -logs["val_loss"])
        tag = f"{epoch + 1:03d}"
        files = {"weights": f"epoch-{tag}.weights.h5", "optimizer": f"epoch-{tag}.optimizer.npz",
                 "rng": f"epoch-{tag}.rng.npz"}
        _atomic_save_weights(self.model, self.workdir / files["weights"])
        _atomic_save_arrays([ops.convert_to_numpy(v) for v in self.model.optimizer.variables],
                            self.workdir / files["optimizer"])
        _atomic_save_arrays([ops.convert_to_numpy(g.state) for g in _seed_generators(self.model)],
                            self.workdir / files["rng"])
        if st["best"] is None or score > tuple(st["best"]["score"]):
            best = f"best-{tag}.weights.h5"
            _atomic_save_weights(self.model, self.workdir / best)
            st["best"] = {"epoch": epoch + 1, "score": list(score), "file": best}
        st.update(epoch=epoch + 1, phase=self.phase, files=files)
        _atomic_write_text(self.workdir / "state.json", json.dumps(st, indent=1))
        _cleanup(self.workdir, st)


def _cleanup(workdir: Path, state: dict) -> None:
    keep = {"state.json", "history.json", *state.get("files", {}).values()}
    if state.get("best"):
        keep.add(state["best"]["file"])
    for p in workdir.iterdir():
        if p.is_file() and p.name not in keep and (p.name.startswith(("epoch-", "best-", ".")) and
                                                   (p.suffix in (".h5", ".npz", ".tmp", ".keras"))):
            p.unlink(missing_ok=True)


def discard_checkpoints(workdir: str | Path) -> None:
    """Delete the ``workdir`` of a training whose model is saved (its checkpoints only serve a resume).

    The last and the best epoch's weights (Keras writes the Adam moments into both) take
    about twice the room of the saved model. ``state.json`` (the commit point) goes first,
    so a run killed midway finds no checkpoint and trains again instead of reading a
    half-deleted one.

    Examples:
        >>> discard_checkpoints(Path(tempfile.mkdtemp()) / "never-made")   # a missing folder is fine
    """
    workdir = Path(workdir)
    (workdir / "state.json").unlink(missing_ok=True)
    shutil.rmtree(workdir, ignore_errors=True)


def _backbone(model: keras.Model) -> keras.layers.Layer:
    try:
        return model.get_layer("backbone")
    except ValueError:
        raise SkinlibError(f"{model.name}: train.weights is 'imagenet' but the model has no pretrained "
                           "backbone (use resnet50 or inceptionv3, or set `train.weights: null`)") from None


def _compile(model: keras.Model, lr: float, steps: int, jit: bool) -> None:
    """Adam with cosine decay of the learning rate over ``steps`` (to 1% of ``lr``)."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(steps, 1), alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=jit)
    # Creating the optimizer's slots eagerly, before fit traces the train step, avoids
    # tracing it twice (variables created inside tf.function): 2-5x faster start.
    model.optimizer.build(model.trainable_variables)


def _strategy(name: Optional[str]):
    """The ``tf.distribute`` strategy of ``train.distribute``, or ``None`` for one device.

    ``"mirrored"``: :class:`tf.distribute.MirroredStrategy` over every GPU of the node
    (synchronous data parallelism: each replica takes its share of the global batch
    ``train.batch_size``, gradients are summed across replicas); without GPUs, over the
    logical CPU devices (one unless the CPU was split with
    ``tf.config.set_logical_device_configuration``, as the tests do).
    """
    if name is None:
        return None
    if name != "mirrored":
        raise SkinlibError(f"train.distribute: must be mirrored or null (one device), got {name!r}")
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if gpus:
        return tf.distribute.MirroredStrategy(devices=gpus)
    # on CPU devices the default (RING collectives) mismatches the synchronised
    # BatchNormalization all-reduces of parallel branches (inception modules)
    return tf.distribute.MirroredStrategy(devices=[d.name for d in tf.config.list_logical_devices("CPU")],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


def _replicate(model: keras.Model, strategy) -> keras.Model:
    """A copy of ``model`` (same layers, names and weights) built inside ``strategy.scope()``,
    its variables mirrored over the replicas. Its BatchNormalization layers are
    ``synchronized``: batch statistics over the global batch, as on one device (each
    replica's own half-batch statistics would train a different model)."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    with strategy.scope():
        copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
        copy.set_weights(model.get_weights())
    return copy


def train_model(model: keras.Model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                cfg: TrainConfig, workdir: str | Path, *, class_weight: Optional[dict[int, float]] = None,
                seed: int = 0, epochs: Optional[int] = None, verbose: Optional[int] = None,
                deterministic: bool = True) -> dict[str, list[float]]:
    """Train ``model`` in place; resumable; keeps the best-on-validation weights.

    - Adam on ``SparseCategoricalCrossentropy(from_logits=True)``, batch ``cfg.batch_size``,
      learning rate ``cfg.learning_rate`` with cosine decay over the phase.
    - Class weights: ``class_weight`` if given, else :func:`skinlib.split.class_weights` of
      the training labels (tempered by ``cfg.class_weight_power``) when ``cfg.class_weights``
      (the thesis weights its classes).
    - Transfer learning when ``cfg.weights == "imagenet"``: ``cfg.epochs`` epochs with the
      ``backbone`` frozen, then ``cfg.fine_tune_epochs`` with it unfrozen at
      ``cfg.fine_tune_learning_rate``. ``epochs`` overrides ``cfg.epochs``.
    - Validation after every epoch: ``val_loss``, ``val_accuracy``, ``val_macro_recall``.
      The weights kept are those of the epoch with the best validation **macro recall**
      (balanced accuracy; ties: lower validation loss): with 67% nevi, accuracy and loss
      reward ignoring the rare malignant classes, macro recall does not.
    - ``workdir`` gets a checkpoint per epoch (see :class:`_Checkpointer`) and
      ``history.json``; calling again with the same ``workdir`` resumes after the last
      finished epoch (with ``epochs`` raised, it trains only the extra epochs).
    - Determinism (``deterministic=True``, the default): :func:`set_determinism` (seeds and
      op determinism); data order and augmentation of epoch ``e`` depend only on
      ``(seed, e)``: the same seed gives the same weights on the same machine, and a
      resumed run equals an uninterrupted one. Keras refuses XLA under op determinism, so
      ``cfg.jit_compile`` only applies with ``deterministic=False`` in a process that never
      enabled determinism (on CPU, XLA made training 1.5-1.7x slower here anyway).
    - Several GPUs (``cfg.distribute == "mirrored"``, see :func:`_strategy`): a copy of the
      model is built and compiled inside the ``MirroredStrategy`` scope (BatchNormalization
      synchronised over replicas), trained with the same global batch, data order,
      checkpoints and resume, and its weights are copied back into ``model``. The result
      equals one device's up to the order of floating-point sums.

    Shape:
        - train, val: ``(x, y)`` with x ``(N, S, S, 3)`` uint8 and y ``(N,)`` int labels.

    Returns:
        The history: ``{metric: [value per epoch]}`` (``loss``, ``accuracy``, ``val_loss``,
        ``val_accuracy``, ``val_macro_recall``, ``learning_rate``).
    """
    xt, yt = _check_xy(train, "train")
    xv, yv = _check_xy(val, "val")
    if xt.shape[1:] != tuple(model.input_shape[1:]) or xv.shape[1:] != xt.shape[1:]:
        raise SkinlibError(f"train/val images of shape {xt.shape[1:]}/{xv.shape[1:]} do not fit the model's input "
                           f"{tuple(model.input_shape[1:])}")
    head_epochs = cfg.epochs if epochs is None else int(epochs)
    if head_epochs < 1:
        raise SkinlibError(f"epochs: must be at least 1, got {head_epochs}")
    phases = [("train", head_epochs, cfg.learning_rate)]
    if cfg.weights == "imagenet":
        _backbone(model)
        phases[0] = ("head", head_epochs, cfg.learning_rate)
        if cfg.fine_tune_epochs > 0:
            phases.append(("fine_tune", cfg.fine_tune_epochs, cfg.fine_tune_learning_rate))
    if class_weight is None and cfg.class_weights:
        from skinlib.split import class_weights

        class_weight = class_weights(yt, power=cfg.class_weight_power)

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / "state.json"
    identity = {"input_shape": list(xt.shape[1:]), "weights": len(model.weights), "params": int(model.count_params())}
    state: dict[str, Any] = {"model": model.name, **identity, "seed": seed, "epoch": 0, "phase": None, "files": {},
                             "best": None, "history": {}}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            saved = {k: state[k] for k in identity}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError):
            raise SkinlibError(f"{state_path}: corrupt training state; delete {workdir} to start over") from None
        if saved != identity or state.get("seed") != seed:
            raise SkinlibError(f"{state_path}: checkpoint of another run ({saved}, seed {state.get('seed')}), not "
                               f"of this one ({identity}, seed {seed}); use another workdir")
        model.load_weights(workdir / state["files"]["weights"])
        _cleanup(workdir, state)

    if deterministic:
        set_determinism(seed)
    else:
        keras.utils.set_random_seed(seed)
    jit = cfg.jit_compile and not _op_determinism_enabled()
    data = _EpochData(xt, yt, cfg.batch_size, seed=seed, augment=cfg.augment, class_weight=class_weight)
    strategy = _strategy(cfg.distribute)
    net = model if strategy is None else _replicate(model, strategy)  # the model that trains
    if state["epoch"] > 0 and "rng" in state["files"]:  # resume the dropout masks where they stopped
        _restore_arrays(workdir / state["files"]["rng"], [g.state for g in _seed_generators(net)])
    start = 0
    for phase, n, lr in phases:
        end = start + n
        if state["epoch"] < end:
            if phase in ("head", "fine_tune"):
                _backbone(net).trainable = phase == "fine_tune"
            if strategy is None:
                _compile(net, lr, n * data.steps, jit)
            else:
                with strategy.scope():
                    _compile(net, lr, n * data.steps, jit)
            if state["epoch"] > start and state["phase"] == phase:  # resume mid-phase: optimizer state too
                _restore_arrays(workdir / state["files"]["optimizer"], net.optimizer.variables)
            first = max(state["epoch"], start)
            ckpt = _Checkpointer(workdir, state, (xv, yv), cfg.batch_size, phase)
            net.fit(data.dataset(first, end), epochs=end, initial_epoch=first, steps_per_epoch=data.steps,
                    callbacks=[ckpt], shuffle=False,
                    verbose=(1 if show_progress() else 0) if verbose is None else verbose)
        start = end
    if net is not model:  # back from the replicas into the caller's model
        model.set_weights(net.get_weights())
        if cfg.weights == "imagenet":
            _backbone(model).trainable = _backbone(net).trainable

    if state["best"] is not None:
        model.load_weights(workdir / state["best"]["file"])
    history = {k: list(v) for k, v in state["history"].items()}
    _atomic_write_text(workdir / "history.json", json.dumps(history, indent=1))
    return history
