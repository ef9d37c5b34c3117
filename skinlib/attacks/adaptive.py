"""Adaptive attacks: iterated, through the defence, of several kinds (Carlini et al. 2019).

- :func:`pgd`: compiled L-inf PGD with random restarts; against a system with a
  preprocessing defence it runs the real defence forward and BPDA backward.
- :func:`pgd_lowfreq`: the same, with the perturbation optimised on a coarse grid and
  upsampled, so that it survives a codec that erases high frequencies (Guo et al. 2019).
- :func:`pgd_codec`: BPDA whose backward pass is a differentiable stand-in of the codec
  fitted to the real one, instead of the identity (after Shin & Song 2017).
- :func:`pgd_targeted`: pushes malignant lesions to a benign target class (nv).
- :func:`apgd`: Croce & Hein's parameter-free APGD with the CE or DLR loss (ART).
- :func:`square`: the gradient-free Square Attack (ART): a check for gradient masking.
- :func:`worst_case`: per image, the worst of several attacks' predictions.

Like the other per-image attacks, each takes a list of epsilons and returns
``{eps: adversarial images}``; ``trace`` (a dict) receives, per eps, the index of the
first (restart, step) at which each image broke, from which :func:`accuracy_by_step`
draws convergence curves.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from skinlib import tf_backend
from skinlib.attacks._common import _check_eps_list, _check_positive_int, _labels, art_per_eps, as_float_images
from skinlib.errors import SkinlibError
from skinlib.labels import CLASS_INDEX, CLASSES, GROUPINGS, NUM_CLASSES


def _defence_op(model_or_classifier: Any, through: Optional[Callable], gradient: str,
                gains: Optional[np.ndarray]) -> Optional[Callable]:
    """The BPDA op of the system attacked: ``through`` if given, else the LLT an ART classifier carries."""
    if through is not None:
        return through
    defences = getattr(model_or_classifier, "preprocessing_defences", None) or []
    ops = [d.tf_transform(gradient=gradient, gains=gains) for d in defences if hasattr(d, "tf_transform")]
    if len(ops) > 1:
        raise SkinlibError("pgd: more than one preprocessing defence; pass `through` explicitly")
    if len(defences) != len(ops):
        raise SkinlibError("pgd: the classifier carries a preprocessing defence with no TensorFlow BPDA op")
    return ops[0] if ops else None


def pgd(model: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], *, steps: int = 10,
        step_size: Optional[float] = None, restarts: int = 1, seed: int = 0, through: Optional[Callable] = None,
        gradient: str = "identity", gains: Optional[np.ndarray] = None, low_resolution: Optional[int] = None,
        loss: str = "ce", target: Optional[np.ndarray] = None, success: Optional[np.ndarray] = None,
        random_start: bool = True, batch_size: int = 256, trace: Optional[dict] = None) -> dict[float, np.ndarray]:
    """Projected Gradient Descent (Madry et al.), L-inf, compiled, through the defence (BPDA).

    ``restarts`` runs from uniform random starts in the ball (``random_start=False``: from
    the clean image), each of ``steps`` signed
    steps of ``step_size`` (default ``eps / 4``), projected onto the ball and the image
    box. An image is broken at the first iterate the system misclassifies (so more steps
    or restarts can only lower the accuracy: the curves of :func:`accuracy_by_step` are
    monotone). ``model`` is a Keras model or an ART classifier; an ART classifier that
    carries the LLT is attacked through it (real WebP forward; backward: the identity,
    or ``gradient="codec"`` with ``gains``); ``through`` gives the op explicitly.

    | Paper link: https://arxiv.org/abs/1706.06083 (PGD); https://arxiv.org/abs/1802.00420 (BPDA)

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y: ``(N,)`` int or ``None`` (predictions).
        - output: ``{eps: (N, S, S, 3) float32}``.

    Examples:
        >>> adv = pgd(model, x, y, [2/255, 8/255], steps=50, restarts=2)                  # doctest: +SKIP
        >>> adv = pgd(art_classifier(model, preprocessing_defences=llt), x, y, [2/255])  # doctest: +SKIP
    """
    eps = _check_eps_list(eps_list)
    steps = _check_positive_int(steps, "steps")
    restarts = _check_positive_int(restarts, "restarts")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if step_size is not None and not float(step_size) > 0:
        raise SkinlibError(f"step_size: expected a positive number or None, got {step_size!r}")
    if low_resolution is not None:
        low_resolution = _check_positive_int(low_resolution, "low_resolution")
    x = as_float_images(x)
    op = _defence_op(model, through, gradient, gains)
    keras_model = tf_backend.keras_model_of(model)
    y = _labels(y, len(x))
    if y is None:
        y = tf_backend.predict_labels(keras_model if op is None else model, x)
    out: dict[float, np.ndarray] = {}
    for e in eps:
        if e == 0:
            out[e] = x.copy()
            continue
        adv, first = tf_backend.iterated_attack(
            keras_model, x, y, eps=e, steps=steps, step_size=float(step_size) if step_size else e / 4,
            restarts=restarts, seed=seed, loss=loss, target=target, success=success, transform=op,
            low_resolution=low_resolution, random_start=random_start, batch_size=batch_size)
        out[e] = adv
        if trace is not None:
            trace[e] = {"first": first, "steps": steps, "restarts": restarts}
    return out


def pgd_lowfreq(model: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], *,
                factor: int = 4, **kwargs: Any) -> dict[float, np.ndarray]:
    """Low-frequency PGD: the perturbation lives on a ``round(S / factor)`` grid, bilinearly upsampled.

    A codec such as WebP keeps the coarse structure of an image and discards fine
    detail, so a perturbation made only of coarse structure passes through it; bilinear
    upsampling keeps every pixel inside the L-inf ball. Other arguments as :func:`pgd`.

    | Paper link: https://arxiv.org/abs/1809.08758 (Guo et al. 2019, low frequency adversarial perturbation)

    Shape:
        - x: ``(N, S, S, 3)``; output ``{eps: (N, S, S, 3)}``.

    Examples:
        >>> adv = pgd_lowfreq(clf_llt, x, y, [2/255], factor=4, steps=50)   # doctest: +SKIP
    """
    factor = _check_positive_int(factor, "factor")
    size = int(np.asarray(x).shape[1])
    return pgd(model, x, y, eps_list, low_resolution=max(1, round(size / factor)), **kwargs)


def pgd_codec(model: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], *,
              gains: np.ndarray, **kwargs: Any) -> dict[float, np.ndarray]:
    """BPDA with a differentiable codec stand-in: real WebP forward, the stand-in's gradient backward.

    ``gains`` are the codec's measured transmission per YUV block-DCT frequency
    (:func:`skinlib.tf_backend.fit_codec_gains`); the gradient is projected on what the
    codec lets through, rather than assuming (identity) that it lets everything through.
    ``model`` must carry the LLT (an ART classifier from ``art_classifier(model,
    preprocessing_defences=llt)``). Other arguments as :func:`pgd`.

    | Paper link: https://arxiv.org/abs/1802.00420 (BPDA with a differentiable approximation)

    Examples:
        >>> gains = tf_backend.fit_codec_gains(llt.codec, x_fit, eps=2/255)   # doctest: +SKIP
        >>> adv = pgd_codec(clf_llt, x, y, [2/255], gains=gains, steps=50)    # doctest: +SKIP
    """
    return pgd(model, x, y, eps_list, gradient="codec", gains=gains, **kwargs)


def malignant_to_benign(grouping: str = "clinical") -> np.ndarray:
    """The success matrix of the clinical targeted attack: a malignant image predicted benign.

    ``success[true, predicted]`` is True when ``true`` is malignant and ``predicted``
    benign in ``grouping``; images of benign classes can never count.

    Shape:
        - output: ``(C, C)`` bool.
    """
    positive = GROUPINGS[grouping]
    malignant = np.array([c in positive for c in CLASSES])
    return malignant[:, None] & ~malignant[None, :]


def pgd_targeted(model: Any, x: np.ndarray, y: np.ndarray, eps_list: Sequence[float], *,
                 target_class: str = "nv", grouping: str = "clinical", **kwargs: Any) -> dict[float, np.ndarray]:
    """Targeted PGD of the clinical threat: malignant lesions pushed to a benign class (``nv``).

    Malignant images (``grouping``: mel, bcc, akiec in ``clinical``) are attacked by
    descending the cross-entropy of ``target_class``; an image counts as broken as soon
    as it is predicted any benign class (the missed cancer). Benign images are returned
    unchanged. Other arguments as :func:`pgd`.

    Shape:
        - x: ``(N, S, S, 3)``; y ``(N,)`` (true labels, required); output ``{eps: (N, S, S, 3)}``.

    Examples:
        >>> adv = pgd_targeted(model, x, y, [2/255], steps=50)   # doctest: +SKIP
    """
    if target_class not in CLASS_INDEX:
        raise SkinlibError(f"target_class: unknown class {target_class!r}; valid: {', '.join(CLASSES)}")
    x = as_float_images(x)
    y = _labels(y, len(x))
    if y is None:
        raise SkinlibError("pgd_targeted: needs the true labels y")
    ok = malignant_to_benign(grouping)
    attacked = ok.any(axis=1)[y]
    eps = _check_eps_list(eps_list)
    out = {e: x.copy() for e in eps}
    trace = kwargs.pop("trace", None)
    if attacked.any():
        sub_trace: dict = {}
        adv = pgd(model, x[attacked], y[attacked], eps, loss="targeted",
                  target=np.full(int(attacked.sum()), CLASS_INDEX[target_class]), success=ok, trace=sub_trace,
                  **kwargs)
        for e in eps:
            out[e][attacked] = adv[e]
            if trace is not None and e in sub_trace:
                first = np.full(len(x), -1, np.int64)
                first[attacked] = sub_trace[e]["first"]
                trace[e] = {**sub_trace[e], "first": first, "attacked": attacked}
    return out


def accuracy_by_step(first: np.ndarray, steps: int, restarts: int, correct_clean: np.ndarray) -> np.ndarray:
    """Accuracy after each (restart, step) from :func:`pgd`'s trace: share of images not yet broken.

    ``correct_clean``: which images the system gets right before any attack (a wrong
    image stays wrong). Entry ``[r, t]`` is the accuracy after all of restarts ``0..r-1``
    and ``t`` steps of restart ``r``.

    Shape:
        - first, correct_clean: ``(N,)``; output ``(restarts, steps + 1)``.
    """
    first = np.asarray(first)
    grid = np.arange(restarts * (steps + 1)).reshape(restarts, steps + 1)
    broken = (first[None, None, :] >= 0) & (first[None, None, :] <= grid[..., None])
    return np.mean(np.asarray(correct_clean, bool)[None, None, :] & ~broken, axis=-1)


def apgd(classifier: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], *,
         loss: str = "ce", steps: int = 50, restarts: int = 1, seed: int = 0,
         batch_size: int = 128) -> dict[float, np.ndarray]:
    """Auto-PGD (Croce & Hein 2020) with the cross-entropy (``ce``) or difference-of-logits-ratio (``dlr``) loss, via ART.

    APGD chooses its step size itself (halving it when progress stalls, with momentum):
    the parameter-free second opinion on PGD. The DLR loss is invariant to the scale of
    the logits, so it is not fooled by a model that saturates its softmax. Given an ART
    classifier carrying the LLT, ART runs WebP forward and BPDA backward. ART's random
    starts come from NumPy's global generator: seeded with ``seed``, state restored.

    | Paper link: https://arxiv.org/abs/2003.01690

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y ``(N,)`` or ``None``; output ``{eps: (N, S, S, 3)}``.

    Examples:
        >>> adv = apgd(art_classifier(model), x, y, [2/255], loss="dlr")   # doctest: +SKIP
    """
    from art.attacks.evasion import AutoProjectedGradientDescent

    losses = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}
    if loss not in losses:
        raise SkinlibError(f"loss: {loss!r} is not ce or dlr")
    eps = _check_eps_list(eps_list)
    steps = _check_positive_int(steps, "steps")
    restarts = _check_positive_int(restarts, "restarts")
    x = as_float_images(x)
    y = _labels(y, len(x))
    if y is None:
        y = tf_backend.predict_labels(classifier, x)
    return art_per_eps(lambda e: AutoProjectedGradientDescent(
        classifier, norm=np.inf, eps=e, eps_step=2 * e, max_iter=steps, targeted=False, nb_random_init=restarts,
        batch_size=batch_size, loss_type=losses[loss], verbose=False), x, tf_backend.one_hot(y, NUM_CLASSES), eps, seed)


def square(classifier: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], *,
           queries: int = 1000, p_init: float = 0.05, restarts: int = 1, seed: int = 0,
           batch_size: int = 128) -> dict[float, np.ndarray]:
    """Square Attack (Andriushchenko et al. 2020), L-inf, gradient-free, via ART.

    Random square-shaped updates at the corners of the ball, kept when they raise the
    margin loss: it needs only the defended system's predictions (``queries`` per
    image), so a non-differentiable step cannot mask it. If it beats the gradient
    attacks on a system, those were masked. ART asks again for predictions of images
    that have not changed; :func:`skinlib.tf_backend.remembered_predictions` answers
    those from memory (the same result, about a third of the model calls).

    | Paper link: https://arxiv.org/abs/1912.00049

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y ``(N,)`` or ``None``; output ``{eps: (N, S, S, 3)}``.

    Examples:
        >>> adv = square(art_classifier(model, preprocessing_defences=llt), x, y, [2/255], queries=1000)  # doctest: +SKIP
    """
    from art.attacks.evasion import SquareAttack

    eps = _check_eps_list(eps_list)
    queries = _check_positive_int(queries, "queries")
    x = as_float_images(x)
    y = _labels(y, len(x))
    if y is None:
        y = tf_backend.predict_labels(classifier, x)
    with tf_backend.remembered_predictions(classifier) as remembering:  # same result, a third of the model calls
        return art_per_eps(lambda e: SquareAttack(
            remembering, norm=np.inf, eps=e, max_iter=queries, p_init=p_init, nb_restarts=restarts,
            batch_size=batch_size, verbose=False), x, tf_backend.one_hot(y, NUM_CLASSES), eps, seed)


def worst_case(y: np.ndarray, predictions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the worst of several attacks: a wrong prediction if any attack produced one.

    Returns ``(prediction, by)``: the first wrong prediction among the attacks (in the
    order given), or the true label where every attack failed; ``by[i]`` names the
    attack that broke image ``i`` ("" where none did).

    Shape:
        - y: ``(N,)``; each prediction ``(N,)``; outputs ``(N,)``.

    Examples:
        >>> pred, by = worst_case(y, {"pgd": p1, "apgd_ce": p2, "square": p3})   # doctest: +SKIP
    """
    y = np.asarray(y)
    if not predictions:
        raise SkinlibError("worst_case: needs at least one attack's predictions")
    pred = y.copy()
    by = np.full(len(y), "", dtype=object)
    for name, p in predictions.items():
        p = np.asarray(p)
        if p.shape != y.shape:
            raise SkinlibError(f"worst_case: predictions of {name!r} have shape {p.shape}, expected {y.shape}")
        new = (p != y) & (by == "")
        pred[new] = p[new]
        by[new] = name
    return pred, by
