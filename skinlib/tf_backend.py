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

import contextlib
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np

from skinlib.errors import SkinlibError
from skinlib.labels import NUM_CLASSES

def _tf():
    import tensorflow as tf

    # Each model, defence and loss gets its own compiled attack step: the retracing
    # warnings that follow are expected here, not a sign of a loop recompiling.
    tf.get_logger().setLevel("ERROR")
    return tf


def art_classifier(model: Any, *, preprocessing_defences: Any = None,
                   input_shape: Optional[tuple[int, ...]] = None,
                   nb_classes: int = NUM_CLASSES, compiled_gradient: bool = True) -> Any:
    """Wrap a Keras 3 model as an ART ``TensorFlowV2Classifier``.

    The classifier has ``clip_values=(0, 1)`` and a
    ``CategoricalCrossentropy(from_logits=True)`` loss: ART hands that loss one-hot labels
    (its attacks call ``check_and_transform_label_format`` first; :func:`loss_gradient`
    does the same). No optimizer or train step is attached: the classifier is used for
    predictions and gradients only (training stays in :mod:`skinlib.models`).

    ART compiles its forward pass but computes ``loss_gradient`` eagerly, which on these
    small models costs about ten times the compiled gradient per call; ART's UAP asks for
    one gradient per image. ``compiled_gradient`` (default) returns
    :class:`CompiledGradientClassifier`, which computes the same gradient (same loss
    object, same preprocessing and BPDA) in a ``tf.function`` traced once per model;
    ``False`` gives ART's stock classifier (the benchmarks' baseline).

    Args:
        model: a ``keras.Model`` returning logits for float32 inputs in ``[0, 1]``.
        preprocessing_defences: ART ``Preprocessor`` instance(s), e.g.
            :class:`skinlib.defences.LowLevelTransformation`. Predictions then run through
            the defence, and gradients through its ``estimate_gradient`` (BPDA), so an
            attack given this classifier is a white-box attack on the defended model.
        input_shape: one input's shape; read from ``model.input_shape`` when omitted.
        nb_classes: number of classes (7).
        compiled_gradient: the compiled ``loss_gradient`` (see above).

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
    kind = _compiled_gradient_classifier() if compiled_gradient else TensorFlowV2Classifier
    return kind(
        model=model,
        nb_classes=nb_classes,
        input_shape=tuple(input_shape),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
        preprocessing_defences=preprocessing_defences,
        preprocessing=None,
    )


_GRADIENTS: Any = None  # WeakKeyDictionary: model -> {loss config: compiled gradient}


def _compiled_gradient_fn(model: Any, loss_object: Any, shape: tuple[int, ...], nb_classes: int) -> Callable:
    """``(x, y_onehot) -> d loss_object(y, model(x)) / dx``, compiled once per model, loss and shape."""
    import weakref

    global _GRADIENTS
    tf = _tf()
    if _GRADIENTS is None:
        _GRADIENTS = weakref.WeakKeyDictionary()
    per_model = _GRADIENTS.setdefault(model, {})
    key = (type(loss_object).__name__, repr(sorted(loss_object.get_config().items())), shape, nb_classes)
    if key not in per_model:
        ref = weakref.ref(model)

        @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.float32),
                                      tf.TensorSpec((None, nb_classes), tf.float32)])
        def gradient(x, y):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                loss = loss_object(y, ref()(x, training=False))
            return tape.gradient(loss, x)

        per_model[key] = gradient
    return per_model[key]


_CLASSIFIER_KIND: Any = None


def _compiled_gradient_classifier() -> type:
    """:class:`CompiledGradientClassifier`, defined on first use (ART is imported lazily)."""
    global _CLASSIFIER_KIND
    if _CLASSIFIER_KIND is not None:
        return _CLASSIFIER_KIND
    from art.estimators.classification import TensorFlowV2Classifier

    class CompiledGradientClassifier(TensorFlowV2Classifier):
        """ART's ``TensorFlowV2Classifier`` whose ``loss_gradient`` runs compiled.

        The gradient is ART's: the numpy preprocessing defences run first, the loss object's
        gradient at their output is taken (in a ``tf.function`` cached per model), then ART's
        ``_apply_preprocessing_gradient`` maps it back (BPDA for the LLT). Training mode,
        sparse labels, framework preprocessing and tensor inputs take ART's own path.
        """

        def loss_gradient(self, x: Any, y: Any, training_mode: bool = False, **kwargs: Any) -> Any:
            framework_ops = self.all_framework_preprocessing and bool(self.preprocessing_operations)
            if training_mode or self._reduce_labels or framework_ops or not isinstance(x, np.ndarray) \
                    or np.ndim(y) != 2:
                return super().loss_gradient(x, y, training_mode=training_mode, **kwargs)
            x_pre, y_pre = self._apply_preprocessing(x, y=y, fit=False)
            fn = _compiled_gradient_fn(self._model, self._loss_object, tuple(self.input_shape), self.nb_classes)
            grads = fn(np.asarray(x_pre, np.float32), np.asarray(y_pre, np.float32)).numpy()
            if not self.all_framework_preprocessing:
                grads = self._apply_preprocessing_gradient(x, grads)
            return grads

    _CLASSIFIER_KIND = CompiledGradientClassifier
    return _CLASSIFIER_KIND


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


@contextlib.contextmanager
def remembered_predictions(classifier: Any) -> Iterator[Any]:
    """Inside the block, the ART ``classifier``'s ``predict`` runs only on inputs it has not seen.

    Square (ART) predicts every image once per iteration and the still-robust ones again,
    though only its new candidates have changed. Here each input's output is remembered
    under a SHA-256 of its bytes, so an unchanged image costs neither a WebP round trip nor
    a model call. New inputs go through the classifier's preprocessing (the LLT), and the
    model runs only on preprocessed images it has not seen either: a candidate that WebP
    maps onto the current image gets the very same logits, so Square rejects it exactly as
    ART's own repeated call would (a tie). Other outputs can differ from ART's by float
    rounding (the model runs on other batches). Valid for deterministic preprocessing, as
    the LLT's; the memory is dropped when the block ends.

    Shape:
        - ``classifier.predict``: ``(N, S, S, 3)`` -> ``(N, C)``, unchanged.

    Examples:
        >>> with remembered_predictions(art_classifier(model)) as clf:   # doctest: +SKIP
        ...     SquareAttack(clf, eps=2/255).generate(x)
    """
    import hashlib

    def digests(rows: np.ndarray) -> list[bytes]:
        return [hashlib.sha256(row.tobytes()).digest() for row in np.ascontiguousarray(rows)]

    by_input: dict[bytes, np.ndarray] = {}  # the input's digest -> output
    by_seen: dict[bytes, np.ndarray] = {}  # the preprocessed input's digest -> output
    own = vars(classifier).get("predict")  # an instance-level predict already in place, restored after

    def predict(x: np.ndarray, batch_size: int = 128, **kwargs: Any) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if not len(x):
            return type(classifier).predict(classifier, x, batch_size=batch_size, **kwargs)
        keys = digests(x)
        new = [i for i, k in enumerate(keys) if k not in by_input]
        if new:
            seen = np.asarray(classifier._apply_preprocessing(x[new], y=None, fit=False)[0], np.float32)
            seen_keys = digests(seen)
            todo = [j for j, k in enumerate(seen_keys) if k not in by_seen]
            if todo:
                logits = np.asarray(classifier._forward_pass(classifier._model, seen[todo], training=False))
                by_seen.update(zip((seen_keys[j] for j in todo),
                                   classifier._apply_postprocessing(preds=logits, fit=False)))
            by_input.update((keys[i], by_seen[k]) for i, k in zip(new, seen_keys))
        return np.stack([by_input[k] for k in keys])

    classifier.predict = predict
    try:
        yield classifier
    finally:
        if own is None:
            del classifier.predict
        else:
            classifier.predict = own


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
    """LLT's flip as a TensorFlow function (``None`` for ``"none"``).

    The flip alone, without WebP: the backward pass of :func:`llt_transform`. (Attacking
    through the flip alone would be a transfer attack from a flip-only surrogate, not
    BPDA: BPDA runs the real WebP forward, :func:`llt_transform`.)
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
        self.l2_scale = l2_scale = float(np.sqrt(np.prod(shape)))
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
    for cache in (_STEPS, _GRADIENTS):
        if cache is None:
            continue
        if model is None:
            cache.clear()
        else:
            cache.pop(model, None)


def fast_uap(model: Any, x: np.ndarray, y: Optional[np.ndarray], *, norm: str, eps: float, batch_size: int,
             epochs: int, learning_rate: float, seed: int, step: str = "sign", loss: str = "ce",
             beta: float = 9.0, init: str = "zeros", x_monitor: Optional[np.ndarray] = None,
             stop_at: Optional[float] = None, check_every: int = 5,
             input_transform: Optional[Callable] = None,
             max_steps: Optional[int] = None, warmup_steps: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Compiled stochastic-gradient universal perturbation (the core of ``attacks.uap_fast``).

    See :func:`skinlib.attacks.uap_fast` for the method and the arguments. ``x`` float32
    in ``[0, 1]``; ``y`` integer labels, or ``None`` for the clean predictions of the
    system attacked (through ``input_transform``), each image's predicted when its first
    minibatch is drawn, so a run cut short by ``max_steps`` or ``stop_at`` predicts only
    the images it used. Returns ``(delta (S, S, 3) float32, info)``.
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
    # Warm-up: the first `warmup_steps` steps move delta by the whole budget (a sign step of
    # size eps in L-inf, a step of L2 length eps in L2), then `learning_rate` takes over.
    warm_lr = float(eps) if norm == "inf" else float(eps) / runner.l2_scale
    runner.reset(d0, warm_lr if warmup_steps > 0 else float(learning_rate), float(eps))

    def monitor_preds(xm: np.ndarray, d: Any) -> np.ndarray:
        return np.concatenate([runner.predict(xm[i:i + 256], d).numpy() for i in range(0, len(xm), 256)])

    monitoring = stop_at is not None
    if monitoring:
        xm = np.asarray(x_monitor if x_monitor is not None else x[: min(n, 256)], np.float32)
        clean_m = monitor_preds(xm, np.zeros(shape, np.float32))
    x32 = np.asarray(x, np.float32)
    lazy_labels = y is None
    y64 = np.full(n, -1, np.int64) if lazy_labels else np.asarray(y, np.int64)

    def clean_labels(xb: np.ndarray) -> np.ndarray:  # Keras's own predict: no step of ours to trace
        return predict_labels(model, xb if input_transform is None else np.asarray(input_transform(xb), np.float32))
    history: list[tuple[int, float, float]] = []
    steps = 0
    stopped = False
    epoch = 0
    for epoch in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if lazy_labels and (unseen := idx[y64[idx] < 0]).size:
                y64[unseen] = clean_labels(x32[unseen])
            runner.train_step(x32[idx], y64[idx])
            steps += 1
            if steps == warmup_steps:
                runner.lr.assign(float(learning_rate))
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


# ---------------------------------------------------------------------------- defences in the graph (BPDA)


def straight_through(forward: Callable[[np.ndarray], np.ndarray],
                     backward: Optional[Callable[[Any], Any]] = None) -> Callable[[Any], Any]:
    """A TensorFlow op whose value is ``forward(x)`` (NumPy) and whose gradient is ``backward``'s.

    BPDA (Athalye et al. 2018): the real, non-differentiable transform runs in the forward
    pass (so every prediction an attack sees is the defended system's), and the backward
    pass uses the vector-Jacobian product of a differentiable approximation ``backward``
    (``None``: the identity, i.e. the straight-through estimator). The forward output is
    exactly ``forward(x)``.

    | Paper link: https://arxiv.org/abs/1802.00420

    Shape:
        - x: ``(N, S, S, 3)`` float32 tensor; output: same shape.

    Examples:
        >>> op = straight_through(lambda a: np.round(a * 255) / 255)   # doctest: +SKIP
        >>> y = op(tf.constant(x))                                     # doctest: +SKIP
    """
    tf = _tf()

    def run(a: np.ndarray) -> np.ndarray:
        return np.asarray(forward(a), np.float32)

    @tf.custom_gradient
    def op(x):
        y = tf.numpy_function(run, [x], tf.float32, stateful=False)
        y = tf.reshape(y, tf.shape(x))

        def grad(dy):
            if backward is None:
                return dy
            with tf.GradientTape() as tape:
                tape.watch(x)
                approx = backward(x)
            return tape.gradient(approx, x, output_gradients=dy)

        return y, grad

    return op


#: BT.601 full-range RGB -> YUV (what lossy WebP and JPEG code; chroma is centred at 0 here).
_RGB_TO_YUV = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                       np.float32)
#: Block size of the stand-in's DCT (VP8 codes 4x4 luma blocks and 2x subsampled chroma; 8 px covers both).
CODEC_BLOCK = 8


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def codec_response(z: Any, gains: np.ndarray) -> Any:
    """The codec stand-in: a linear map that scales each block-DCT frequency of each YUV channel.

    ``z`` (images or perturbations) goes to YUV, to 8x8 block DCT coefficients, is
    multiplied by ``gains[u, v, c]`` (the codec's measured transmission of frequency
    ``(u, v)`` of channel ``c``, see :func:`fit_codec_gains`), and back. With all gains 1
    it is the identity. Sides that are not a multiple of 8 are edge-padded, then cropped.
    Differentiable (it is linear), so it can serve as BPDA's backward pass for WebP, in
    the spirit of Shin & Song 2017's differentiable JPEG (https://machine-learning-and-security.github.io/papers/mlsec17_paper_54.pdf).

    Shape:
        - z: ``(N, H, W, 3)`` float32 tensor; gains ``(8, 8, 3)``; output: same shape as z.
    """
    tf = _tf()
    b = CODEC_BLOCK
    z = tf.convert_to_tensor(z, tf.float32)
    h, w = int(z.shape[1]), int(z.shape[2])
    ph, pw = (-h) % b, (-w) % b
    if ph or pw:
        z = tf.pad(z, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="SYMMETRIC")
    hh, ww = (h + ph) // b, (w + pw) // b
    m = tf.constant(_RGB_TO_YUV)
    minv = tf.constant(np.linalg.inv(_RGB_TO_YUV).astype(np.float32))
    d = tf.constant(_dct_matrix(b))
    yuv = tf.einsum("nhwc,kc->nhwk", z, m)
    blocks = tf.reshape(yuv, (-1, hh, b, ww, b, 3))
    coef = tf.einsum("ui,nhiwjc,vj->nhwuvc", d, blocks, d) * tf.constant(np.asarray(gains, np.float32))
    back = tf.einsum("ui,nhwuvc,vj->nhiwjc", d, coef, d)
    out = tf.einsum("nhwk,ck->nhwc", tf.reshape(back, (-1, hh * b, ww * b, 3)), minv)
    return out[:, :h, :w, :]


def _coefficients(z: np.ndarray) -> np.ndarray:
    """Block-DCT coefficients of YUV ``z``, ``(N * blocks, 8, 8, 3)`` (for fitting and checking the gains)."""
    tf = _tf()
    b = CODEC_BLOCK
    z = tf.convert_to_tensor(np.asarray(z, np.float32))
    h, w = int(z.shape[1]), int(z.shape[2])
    z = z[:, : h - h % b, : w - w % b, :]
    yuv = tf.einsum("nhwc,kc->nhwk", z, tf.constant(_RGB_TO_YUV))
    blocks = tf.reshape(yuv, (-1, (h - h % b) // b, b, (w - w % b) // b, b, 3))
    coef = tf.einsum("ui,nhiwjc,vj->nhwuvc", tf.constant(_dct_matrix(b)), blocks, tf.constant(_dct_matrix(b)))
    return coef.numpy().reshape(-1, b, b, 3)


def fit_codec_gains(codec: Callable[[np.ndarray], np.ndarray], x: np.ndarray, eps: float,
                    seed: int = 0) -> np.ndarray:
    """Least-squares transmission of each YUV block-DCT frequency through ``codec``, for perturbations of size ``eps``.

    Random ``+-eps`` sign perturbations ``d`` (white: every frequency equally excited) are
    added to ``x``; the codec's response is ``codec(x + d) - codec(x)``. Per frequency and
    channel, ``gain = sum(coef(d) * coef(response)) / sum(coef(d) ** 2)``: 1 where the
    codec passes a perturbation through, 0 where it erases it.

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; output: gains ``(8, 8, 3)``.
    """
    rng = np.random.default_rng(seed)
    d = (np.clip(x + eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape), 0, 1) - x).astype(np.float32)
    response = codec(np.clip(x + d, 0, 1)) - codec(x)
    a, r = _coefficients(d), _coefficients(response)
    return (np.sum(a * r, axis=0) / np.maximum(np.sum(a * a, axis=0), 1e-12)).astype(np.float32)


def codec_fidelity(codec: Callable[[np.ndarray], np.ndarray], x: np.ndarray, d: np.ndarray,
                   gains: np.ndarray) -> dict[str, float]:
    """How well the identity and the stand-in predict what ``codec`` does to perturbations ``d``.

    Returns the share of the response's energy each predicts (R^2 = 1 - SSE / SST, with
    the response ``codec(x + d) - codec(x)``; 1 is perfect, 0 no better than predicting
    nothing), and the share of the perturbation's energy that survives the codec.

    Shape:
        - x, d: ``(N, S, S, 3)`` float32 (``x + d`` in ``[0, 1]``).
    """
    response = codec(np.clip(x + d, 0, 1)) - codec(x)
    predicted = np.asarray(codec_response(d, gains))
    sst = float(np.sum(response.astype(np.float64) ** 2))
    return {"r2_identity": 1.0 - float(np.sum((response - d).astype(np.float64) ** 2)) / max(sst, 1e-20),
            "r2_standin": 1.0 - float(np.sum((response - predicted).astype(np.float64) ** 2)) / max(sst, 1e-20),
            "energy_kept": sst / max(float(np.sum(d.astype(np.float64) ** 2)), 1e-20)}


def llt_transform(quality: int, flip: str, gradient: str = "identity",
                  gains: Optional[np.ndarray] = None) -> Callable[[Any], Any]:
    """The LLT (WebP round trip, then flip) as a BPDA op for attacks written in TensorFlow.

    Forward: exactly :func:`skinlib.defences.apply_llt` (real WebP). Backward: the flip
    differentiated exactly, and for WebP either the identity (``gradient="identity"``,
    the straight-through estimator; the same estimate as
    :meth:`skinlib.defences.LowLevelTransformation.estimate_gradient`) or the codec
    stand-in :func:`codec_response` with ``gains`` (``gradient="codec"``).

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; output: same shape.
    """
    if gradient not in ("identity", "codec"):
        raise SkinlibError(f"gradient: {gradient!r} is not identity or codec")
    if gradient == "codec" and gains is None:
        raise SkinlibError("gradient: codec needs the codec's gains (fit_codec_gains)")
    key = (int(quality), flip, gradient, None if gains is None else np.asarray(gains, np.float32).tobytes())
    if key not in _LLT_OPS:  # one op per configuration: compiled attacks keyed on it trace once
        _LLT_OPS[key] = _llt_op(quality, flip, gradient, gains)
    return _LLT_OPS[key]


_LLT_OPS: dict[tuple, Callable[[Any], Any]] = {}


def _llt_op(quality: int, flip: str, gradient: str, gains: Optional[np.ndarray]) -> Callable[[Any], Any]:
    from skinlib.defences import apply_llt

    flip_op = flip_transform(flip) or (lambda z: z)

    def forward(a: np.ndarray) -> np.ndarray:
        return apply_llt(np.clip(a, 0.0, 1.0), quality=quality, flip=flip)

    if gradient == "identity":
        backward = flip_op
    else:
        def backward(z):
            return flip_op(codec_response(z, gains))
    return straight_through(forward, backward)


# ---------------------------------------------------------------------------- iterated attacks (PGD family)

#: Losses the compiled PGD climbs: cross-entropy of the true label (untargeted), minus the
#: cross-entropy of a target label (targeted), Croce & Hein's difference-of-logits ratio.
PGD_LOSSES = ("ce", "targeted", "dlr")


class _PGDStep:
    """Compiled PGD step and prediction for one model, input shape, transform, loss and resolution."""

    def __init__(self, model: Any, shape: tuple[int, ...], low: Optional[tuple[int, int]],
                 transform: Optional[Callable], loss: str) -> None:
        import weakref

        tf = _tf()
        ref = weakref.ref(model)
        tx = transform if transform is not None else (lambda z: z)
        size = shape[:2]
        dshape = shape if low is None else (low[0], low[1], shape[2])

        def full(d):
            return d if low is None else tf.image.resize(d, size, method="bilinear")

        def objective(logits, yb, tb):
            if loss == "ce":
                return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits)
            if loss == "targeted":
                return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tb, logits=logits)
            srt = tf.sort(logits, axis=1, direction="DESCENDING")
            z_y = tf.gather(logits, yb, axis=1, batch_dims=1)
            mask = tf.one_hot(yb, tf.shape(logits)[1], on_value=-1e9, off_value=0.0)
            z_other = tf.reduce_max(logits + mask, axis=1)
            return -(z_y - z_other) / (srt[:, 0] - srt[:, 2] + 1e-12)

        spec_x = tf.TensorSpec((None,) + shape, tf.float32)
        spec_d = tf.TensorSpec((None,) + dshape, tf.float32)
        spec_y = tf.TensorSpec((None,), tf.int64)
        scalar = tf.TensorSpec((), tf.float32)

        @tf.function(input_signature=[spec_x, spec_d, spec_y, spec_y, scalar, scalar])
        def step(xb, d, yb, tb, alpha, eps):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(d)
                logits = ref()(tx(tf.clip_by_value(xb + full(d), 0.0, 1.0)), training=False)
                value = tf.reduce_sum(objective(logits, yb, tb))
            g = tape.gradient(value, d, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            new = tf.clip_by_value(d + alpha * tf.sign(g), -eps, eps)
            if low is None:  # stay inside the image box too
                new = tf.clip_by_value(xb + new, 0.0, 1.0) - xb
            return new, tf.argmax(logits, axis=1)

        @tf.function(input_signature=[spec_x, spec_d])
        def predict(xb, d):
            return tf.argmax(ref()(tx(tf.clip_by_value(xb + full(d), 0.0, 1.0)), training=False), axis=1)

        @tf.function(input_signature=[spec_d])
        def upsample(d):
            return full(d)

        self.dshape = dshape
        self.step, self.predict, self.upsample = step, predict, upsample


_PGD_STEPS: Any = None  # WeakKeyDictionary: model -> {config: _PGDStep}


def _pgd_step(model: Any, shape: tuple[int, ...], low: Optional[tuple[int, int]], transform: Optional[Callable],
              loss: str) -> _PGDStep:
    import weakref

    global _PGD_STEPS
    if _PGD_STEPS is None:
        _PGD_STEPS = weakref.WeakKeyDictionary()
    per_model = _PGD_STEPS.setdefault(model, {})
    key = (shape, low, transform, loss)
    if key not in per_model:
        per_model[key] = _PGDStep(model, shape, low, transform, loss)
    return per_model[key]


def iterated_attack(model: Any, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int, step_size: float,
                    restarts: int = 1, seed: int = 0, loss: str = "ce", target: Optional[np.ndarray] = None,
                    success: Optional[np.ndarray] = None, transform: Optional[Callable] = None,
                    low_resolution: Optional[int] = None, random_start: bool = True,
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Compiled L-inf PGD with random restarts (the core of :func:`skinlib.attacks.pgd` and its variants).

    Each restart starts uniformly inside the ball (``random_start``) and takes ``steps``
    signed-gradient steps of ``step_size`` on ``loss`` through ``transform`` (a BPDA op
    such as :func:`llt_transform`, or any differentiable TensorFlow function), projecting
    onto ``[-eps, eps]`` and the image box after each. ``low_resolution=k`` optimises the
    perturbation on a ``k x k`` grid, bilinearly upsampled to the image (a low-frequency
    attack; upsampling keeps the L-inf budget). Every prediction the attack sees is the
    transformed system's, so the bookkeeping is exact: an image counts as broken at the
    first (restart, step) at which ``success[y, prediction]`` holds (default: any wrong
    class), and its adversarial image is the one of that moment. Only images not yet broken
    are stepped (a broken image's record is final), so the cost falls as the attack succeeds;
    the random starts are drawn for whole batches, so the result does not depend on it.

    Returns ``(x_adv, first)``: ``first[i] = restart * (steps + 1) + step`` of the first
    success of image ``i`` (``step`` 0 is the start, ``steps`` the last iterate), or -1.

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y, target: ``(N,)`` int; success ``(C, C)`` bool.
    """
    tf = _tf()
    if loss not in PGD_LOSSES:
        raise SkinlibError(f"loss: {loss!r} is not one of {', '.join(PGD_LOSSES)}")
    shape = tuple(int(s) for s in x.shape[1:])
    low = None if low_resolution is None else (int(low_resolution), int(low_resolution))
    runner = _pgd_step(model, shape, low, transform, loss)
    n = len(x)
    y64 = np.asarray(y, np.int64)
    t64 = y64 if target is None else np.asarray(target, np.int64)
    ok = ~np.eye(NUM_CLASSES, dtype=bool) if success is None else np.asarray(success, bool)
    rng = np.random.default_rng(seed)
    x_adv = np.array(x, np.float32, copy=True)
    first = np.full(n, -1, np.int64)
    alpha, budget = tf.constant(float(step_size)), tf.constant(float(eps))
    for r in range(restarts):
        last_restart = r == restarts - 1
        for i in range(0, n, batch_size):
            xb = np.asarray(x[i:i + batch_size], np.float32)
            yb, tb = y64[i:i + batch_size], t64[i:i + batch_size]
            live = np.flatnonzero(first[i:i + batch_size] < 0)  # positions (in the batch) not yet broken
            if not live.size:
                continue
            # the start is drawn for the whole batch, so the random stream does not depend on what broke
            d0 = rng.uniform(-eps, eps, (len(xb),) + runner.dshape).astype(np.float32) if random_start \
                else np.zeros((len(xb),) + runner.dshape, np.float32)
            d = tf.constant(d0[live])
            for t in range(steps + 1):
                # only the images not yet broken are stepped: a broken image's record is final
                xl, yl = xb[live], yb[live]
                if t < steps:
                    new, pred = runner.step(xl, d, yl, tb[live], alpha, budget)
                else:
                    new, pred = None, runner.predict(xl, d)
                hit = ok[yl, pred.numpy()]
                final = t == steps and last_restart
                if hit.any() or final:
                    adv = np.clip(xl + runner.upsample(d).numpy(), 0.0, 1.0)
                    keep = hit | final
                    x_adv[i + live[keep]] = adv[keep]
                    first[i + live[hit]] = r * (steps + 1) + t
                if new is None:
                    break
                d = new
                if hit.any():
                    stay = np.flatnonzero(~hit)
                    if not stay.size:
                        break
                    live, d = live[stay], tf.gather(d, stay)
    return x_adv, first


def pgd_last_iterate(model: Any, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int, step_size: float,
                     rng: Optional[np.random.Generator], transform: Optional[Callable] = None) -> np.ndarray:
    """PGD's last iterate, from a uniform random start (``rng``) or the clean image (``rng=None``).

    Unlike :func:`iterated_attack` it keeps climbing after an image is misclassified and
    returns where it ended: Madry et al.'s inner maximisation for training (the strongest
    example, not the first that works), and ART's ``ProjectedGradientDescent`` semantics
    for the benchmark that compares the two. ``transform``: a BPDA op, as in
    :func:`iterated_attack`.

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y ``(N,)``; output like x.
    """
    tf = _tf()
    runner = _pgd_step(model, tuple(int(s) for s in x.shape[1:]), None, transform, "ce")
    xb = np.asarray(x, np.float32)
    yb = np.asarray(y, np.int64)
    d0 = np.zeros(xb.shape, np.float32) if rng is None else rng.uniform(-eps, eps, xb.shape).astype(np.float32)
    d = tf.constant(d0)
    alpha, budget = tf.constant(float(step_size)), tf.constant(float(eps))
    for _ in range(steps):
        d, _ = runner.step(xb, d, yb, yb, alpha, budget)
    return np.clip(xb + d.numpy(), 0.0, 1.0)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a batch to ``size x size`` (how the low-frequency attack upsamples).

    Shape:
        - x: ``(N, h, w, C)``; output ``(N, size, size, C)`` float32.
    """
    return _tf().image.resize(np.asarray(x, np.float32), (size, size), method="bilinear").numpy()
