"""TensorFlow / ART glue: the one module that knows the models are TensorFlow models.

Everything framework-specific used by :mod:`skinlib.attacks` and
:mod:`skinlib.defences` lives here: the ART estimator wrapper, batched predictions and
loss gradients, the compiled (``tf.function``) inner loop of the fast universal
perturbation (cached per model, held weakly), and a toy model and data set for tests and
benchmarks. Another Keras 3 backend would be added by writing a sibling of this module.

Model contract: a ``keras.Model`` maps float32 pixels in ``[0, 1]``, shape ``(N, S, S, 3)``,
to 7 logits (no softmax); normalisation is inside the model.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np

from skinlib.errors import SkinlibError
from skinlib.labels import NUM_CLASSES

def _tf():
    import tensorflow as tf

    return tf


def art_classifier(model: Any, *, preprocessing_defences: Any = None,
                   input_shape: Optional[tuple[int, ...]] = None,
                   nb_classes: int = NUM_CLASSES) -> Any:
    """Wrap a Keras 3 model as an ART ``TensorFlowV2Classifier``.

    The classifier has ``clip_values=(0, 1)`` and a
    ``CategoricalCrossentropy(from_logits=True)`` loss: ART hands that loss one-hot labels
    (its attacks call ``check_and_transform_label_format`` first; :func:`loss_gradient`
    does the same). No optimizer or train step is attached: the classifier is used for
    predictions and gradients only (training stays in :mod:`skinlib.models`).

    Args:
        model: a ``keras.Model`` returning logits for float32 inputs in ``[0, 1]``.
        preprocessing_defences: ART ``Preprocessor`` instance(s), e.g.
            :class:`skinlib.defences.LowLevelTransformation`. Predictions then run through
            the defence, and gradients through its ``estimate_gradient`` (BPDA), so an
            attack given this classifier is a white-box attack on the defended model.
        input_shape: one input's shape; read from ``model.input_shape`` when omitted.
        nb_classes: number of classes (7).

    Shape:
        - model input: ``(N, S, S, 3)`` float32 in ``[0, 1]``; output ``(N, nb_classes)`` logits.

    Examples:
        >>> clf = art_classifier(model)                      # doctest: +SKIP
        >>> clf_llt = art_classifier(model, preprocessing_defences=LowLevelTransformation())  # doctest: +SKIP
    """
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    if input_shape is None:
        shape = getattr(model, "input_shape", None)
        if shape is None or len(shape) != 4 or any(s is None for s in shape[1:]):
            raise SkinlibError(f"art_classifier: cannot read a fixed (S, S, 3) input shape from the model ({shape!r}); "
                               "pass input_shape")
        input_shape = tuple(int(s) for s in shape[1:])
    return TensorFlowV2Classifier(
        model=model,
        nb_classes=nb_classes,
        input_shape=tuple(input_shape),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
        preprocessing_defences=preprocessing_defences,
        preprocessing=None,
    )


def is_art_classifier(obj: Any) -> bool:
    """Whether ``obj`` is an ART estimator (rather than a bare Keras model)."""
    from art.estimators.estimator import BaseEstimator

    return isinstance(obj, BaseEstimator)


def keras_model_of(model_or_classifier: Any) -> Any:
    """The Keras model inside an ART classifier (or the model itself)."""
    return model_or_classifier.model if is_art_classifier(model_or_classifier) else model_or_classifier


def one_hot(y: np.ndarray, nb_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels ``(N,)`` (or already one-hot ``(N, C)``) as float32 one-hot ``(N, C)``."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(np.float32)
    return np.eye(nb_classes, dtype=np.float32)[y.astype(np.int64)]


def predict_logits(model_or_classifier: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits ``(N, C)`` in batches: a Keras model through :func:`skinlib.models.predict_logits`,
    an ART classifier through its preprocessing defences.

    (ART 1.20's ``TensorFlowV2Classifier.predict`` ignores its ``batch_size``; this batches.)
    """
    if not is_art_classifier(model_or_classifier):
        from skinlib import models

        return models.predict_logits(model_or_classifier, x, batch_size)
    x = np.asarray(x, dtype=np.float32)
    out = [np.asarray(model_or_classifier.predict(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    if not out:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return np.concatenate(out).astype(np.float32)


def predict_labels(model_or_classifier: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices ``(N,)``."""
    return predict_logits(model_or_classifier, x, batch_size).argmax(axis=1)


def loss_gradient(classifier: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Gradient of the cross-entropy w.r.t. the input, batched, through any defence (BPDA).

    ``y``: integer labels or one-hot. Batches match ART's ``FastGradientMethod`` batches
    (same ``batch_size``) so the result is bit-identical to what ART uses internally.
    """
    x = np.asarray(x, dtype=np.float32)
    yh = one_hot(y, classifier.nb_classes)
    out = np.empty_like(x)
    for i in range(0, len(x), batch_size):
        out[i:i + batch_size] = classifier.loss_gradient(x[i:i + batch_size], yh[i:i + batch_size])
    return out


# ---------------------------------------------------------------------------- fast UAP core


def _flip_h(x: Any) -> Any:
    return _tf().reverse(x, axis=[2])


def _flip_v(x: Any) -> Any:
    return _tf().reverse(x, axis=[1])


def flip_transform(flip: str) -> Optional[Callable]:
    """A differentiable TensorFlow stand-in for LLT's flip (``None`` for ``"none"``).

    Passed as ``input_transform`` to :func:`fast_uap`, it makes the fast UAP a BPDA
    white-box attack on the LLT-defended model: the flip is differentiated exactly and
    WebP is approximated by the identity (the same estimate as
    :meth:`skinlib.defences.LowLevelTransformation.estimate_gradient`).
    """
    if flip == "horizontal":
        return _flip_h
    if flip == "vertical":
        return _flip_v
    if flip == "none":
        return None
    raise SkinlibError(f"flip: {flip!r} is not horizontal, vertical or none")


def project(delta: np.ndarray, norm: str, eps: float) -> np.ndarray:
    """Project a perturbation onto the ``norm`` ball of radius ``eps`` (numpy)."""
    delta = np.asarray(delta, dtype=np.float32)
    if norm == "inf":
        return np.clip(delta, -eps, eps)
    n = float(np.linalg.norm(delta.ravel()))
    return delta if n <= eps else (delta * (eps / n)).astype(np.float32)


class _UAPStep:
    """The compiled minibatch step of :func:`fast_uap` for one model and one configuration.

    The perturbation, the Adam moments, the step size and the budget are variables, so a
    new call (new seed, eps or learning rate) reuses the traced graph instead of tracing
    again. The model is held through a weak reference (the cache must not keep it alive).
    """

    def __init__(self, model: Any, shape: tuple[int, ...], norm: str, step: str, loss: str, beta: float,
                 transform: Optional[Callable]) -> None:
        import weakref

        tf = _tf()
        ref = weakref.ref(model)
        self.delta = tf.Variable(tf.zeros(shape), trainable=False)
        self.m = tf.Variable(tf.zeros(shape), trainable=False)
        self.v = tf.Variable(tf.zeros(shape), trainable=False)
        self.t = tf.Variable(0.0, trainable=False)
        self.lr = tf.Variable(0.0, trainable=False)
        self.eps = tf.Variable(0.0, trainable=False)
        # L2 steps are scaled by sqrt(dim) so that the learning rate is a per-pixel step in
        # both norms (a sign step has L2 length sqrt(dim) * lr).
        l2_scale = float(np.sqrt(np.prod(shape)))
        tx = transform if transform is not None else (lambda z: z)
        delta, m, v, t, lr, eps = self.delta, self.m, self.v, self.t, self.lr, self.eps
        b1, b2, tiny = 0.9, 0.999, 1e-8

        @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.float32), tf.TensorSpec((None,), tf.int64)])
        def train_step(xb, yb):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(delta)
                xa = tf.clip_by_value(xb + delta, 0.0, 1.0)
                logits = ref()(tx(xa), training=False)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits)
                if loss == "clipped":
                    ce = tf.minimum(ce, beta)
                objective = tf.reduce_mean(ce)
            g = tape.gradient(objective, delta)
            if step == "adam":
                t.assign_add(1.0)
                m.assign(b1 * m + (1 - b1) * g)
                v.assign(b2 * v + (1 - b2) * tf.square(g))
                direction = (m / (1 - tf.pow(b1, t))) / (tf.sqrt(v / (1 - tf.pow(b2, t))) + tiny)
            elif norm == "inf":
                direction = tf.sign(g)
            else:
                direction = g / (tf.norm(g) + 1e-12) * l2_scale
            new = delta + lr * direction  # gradient ASCENT on the loss
            if norm == "inf":
                new = tf.clip_by_value(new, -eps, eps)
            else:
                nrm = tf.norm(new)
                new = tf.where(nrm > eps, new * (eps / (nrm + 1e-12)), new)
            delta.assign(new)
            return objective

        @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.float32), tf.TensorSpec(shape, tf.float32)])
        def predict(xb, d):
            return tf.argmax(ref()(tx(tf.clip_by_value(xb + d, 0.0, 1.0)), training=False), axis=1)

        self.train_step = train_step
        self.predict = predict

    def reset(self, d0: np.ndarray, lr: float, eps: float) -> None:
        self.delta.assign(d0)
        self.m.assign(np.zeros_like(d0))
        self.v.assign(np.zeros_like(d0))
        self.t.assign(0.0)
        self.lr.assign(lr)
        self.eps.assign(eps)


_STEPS: Any = None  # WeakKeyDictionary: model -> {config: _UAPStep}


def _uap_step(model: Any, shape: tuple[int, ...], norm: str, step: str, loss: str, beta: float,
              transform: Optional[Callable]) -> _UAPStep:
    import weakref

    global _STEPS
    if _STEPS is None:
        _STEPS = weakref.WeakKeyDictionary()
    per_model = _STEPS.setdefault(model, {})
    key = (shape, norm, step, loss, float(beta), transform)
    if key not in per_model:
        per_model[key] = _UAPStep(model, shape, norm, step, loss, beta, transform)
    return per_model[key]


def forget_compiled(model: Any = None) -> None:
    """Drop the cached compiled functions (of ``model``, or of every model): the next call traces again."""
    if _STEPS is None:
        return
    if model is None:
        _STEPS.clear()
    else:
        _STEPS.pop(model, None)


def fast_uap(model: Any, x: np.ndarray, y: np.ndarray, *, norm: str, eps: float, batch_size: int,
             epochs: int, learning_rate: float, seed: int, step: str = "sign", loss: str = "ce",
             beta: float = 9.0, init: str = "zeros", x_monitor: Optional[np.ndarray] = None,
             stop_at: Optional[float] = None, check_every: int = 5,
             input_transform: Optional[Callable] = None,
             max_steps: Optional[int] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Compiled stochastic-gradient universal perturbation (the core of ``attacks.uap_fast``).

    See :func:`skinlib.attacks.uap_fast` for the method and the arguments. ``x`` float32
    in ``[0, 1]``; ``y`` integer labels. Returns ``(delta (S, S, 3) float32, info)``.
    The compiled step is cached per model and configuration: the first call traces it
    (``info["traced"]``), later calls reuse it.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = len(x)
    shape = tuple(int(s) for s in x.shape[1:])
    cached = _STEPS is not None and model in _STEPS and \
        (shape, norm, step, loss, float(beta), input_transform) in _STEPS[model]
    runner = _uap_step(model, shape, norm, step, loss, beta, input_transform)
    if init == "zeros":
        d0 = np.zeros(shape, np.float32)
    else:  # "uniform": a small random start inside the ball
        d0 = project(rng.uniform(-eps, eps, shape).astype(np.float32) * 0.1, norm, eps)
    runner.reset(d0, float(learning_rate), float(eps))

    def monitor_preds(xm: np.ndarray, d: Any) -> np.ndarray:
        return np.concatenate([runner.predict(xm[i:i + 256], d).numpy() for i in range(0, len(xm), 256)])

    monitoring = stop_at is not None
    if monitoring:
        xm = np.asarray(x_monitor if x_monitor is not None else x[: min(n, 256)], np.float32)
        clean_m = monitor_preds(xm, np.zeros(shape, np.float32))
    y64 = np.asarray(y, np.int64)
    x32 = np.asarray(x, np.float32)
    history: list[tuple[int, float, float]] = []
    steps = 0
    stopped = False
    epoch = 0
    for epoch in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            runner.train_step(x32[idx], y64[idx])
            steps += 1
            if max_steps is not None and steps >= max_steps:
                stopped = True
                break
            if monitoring and steps % check_every == 0:
                rate = float(np.mean(monitor_preds(xm, runner.delta) != clean_m))
                history.append((steps, time.perf_counter() - start, rate))
                if rate >= stop_at:
                    stopped = True
                    break
        if stopped:
            break
    delta = runner.delta.numpy().astype(np.float32)
    wall = time.perf_counter() - start
    info = {"wall_s": wall, "steps": steps, "epochs_run": epoch + 1 if epochs else 0,
            "stopped_early": stopped, "monitor_history": history, "traced": not cached}
    return delta, info


# ---------------------------------------------------------------------------- toy problem (tests, benchmarks)


def toy_data(n: int, size: int = 16, seed: int = 0, spread: float = 0.06,
             noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Colour-coded synthetic images for tests and benchmarks (not a dataset of the book).

    Class ``c`` is a flat colour ``0.5 + spread * u_c`` (``u_c`` a fixed random unit vector)
    plus per-image colour jitter and per-pixel Gaussian ``noise``. Classes are close in
    colour, so a small model learns them well yet small perturbations flip it.

    Shape:
        - output: x ``(n, size, size, 3)`` float32 in ``[0, 1]``, y ``(n,)`` int64 in 0..6.
    """
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(123).normal(0, 1, (NUM_CLASSES, 3))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    y = rng.integers(0, NUM_CLASSES, n)
    colour = 0.5 + spread * base[y] + rng.normal(0, 0.01, (n, 3))
    x = np.clip(colour[:, None, None, :] + rng.normal(0, noise, (n, size, size, 3)), 0, 1).astype(np.float32)
    return x, y.astype(np.int64)


def toy_model(size: int = 16, seed: int = 0) -> Any:
    """A tiny Keras CNN obeying the model contract (pixels in [0, 1] -> 7 logits), compiled.

    ``Rescaling -> Conv(16) -> GlobalAveragePooling -> Dense(32) -> Dense(7)``.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    h = keras.layers.Rescaling(4.0, -2.0)(inp)
    h = keras.layers.Conv2D(16, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    out = keras.layers.Dense(NUM_CLASSES)(h)
    model = keras.Model(inp, out, name="toy_cnn")
    model.compile(keras.optimizers.Adam(0.005), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model
