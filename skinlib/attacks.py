"""Evasion attacks: FGSM, PGD, a random-noise control and universal perturbations.

One registry, :data:`ATTACKS`, describes every attack (the names of DESIGN.md's
``attack`` column). Gradient attacks run through ART (Adversarial Robustness Toolbox):
pass them the classifier from :func:`skinlib.tf_backend.art_classifier`; when that
classifier carries a preprocessing defence (LLT), the attack goes through the defence
with BPDA gradients, i.e. it is a white-box attack on the defended model.

Following foolbox 3, the per-image attacks take a list of epsilons and return one
adversarial batch per epsilon, so a robustness curve is one call.

Images are float32 pixels in ``[0, 1]`` with shape ``(N, S, S, 3)`` (uint8 images are
accepted and divided by 255); labels are integer class indices ``(N,)`` (one-hot accepted).
"""

from __future__ import annotations

import random as _pyrandom
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from skinlib import tf_backend
from skinlib.errors import SkinlibError

#: The norms of the perturbation budgets: L-inf and L2.
NORMS = ("inf", "2")


@dataclass(frozen=True)
class AttackInfo:
    """One entry of :data:`ATTACKS`."""

    name: str
    description: str
    paper: str
    function: Callable[..., Any]
    universal: bool = False


# ---------------------------------------------------------------------------- helpers


def as_float_images(x: np.ndarray, name: str = "x") -> np.ndarray:
    """``x`` as float32 in ``[0, 1]``: uint8 is divided by 255; floats are range-checked."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise SkinlibError(f"{name}: expected images of shape (N, S, S, 3), got {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32, copy=False)
    if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise SkinlibError(f"{name}: float pixels must lie in [0, 1] (got {float(x.min()):.3g}..{float(x.max()):.3g})")
    return x


def _labels(y: Optional[np.ndarray], n: int, name: str = "y") -> Optional[np.ndarray]:
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if y.shape != (n,):
        raise SkinlibError(f"{name}: expected {n} labels, got shape {y.shape}")
    return y.astype(np.int64)


def _check_eps_list(eps_list: Sequence[float]) -> list[float]:
    if isinstance(eps_list, (int, float)):
        raise SkinlibError(f"eps_list: expected a list of epsilons, got the number {eps_list!r}")
    eps = [float(e) for e in eps_list]
    if not eps or any(not np.isfinite(e) or e < 0 for e in eps):
        raise SkinlibError(f"eps_list: expected non-negative epsilons, got {list(eps_list)!r}")
    return eps


def _check_norm(norm: Any) -> str:
    norm = {np.inf: "inf", float("inf"): "inf", 2: "2"}.get(norm, norm) if not isinstance(norm, str) else norm
    if norm not in NORMS:
        raise SkinlibError(f"norm: {norm!r} is not 'inf' or '2'")
    return norm


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SkinlibError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def apply_perturbation(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``clip(x + delta, 0, 1)``: a (universal) perturbation applied to images.

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]`` (uint8 accepted).
        - delta: ``(S, S, 3)`` or ``(1, S, S, 3)`` (broadcast) or ``(N, S, S, 3)``.
        - output: ``(N, S, S, 3)`` float32.
    """
    x = as_float_images(x)
    return np.clip(x + np.asarray(delta, np.float32), 0.0, 1.0).astype(np.float32)


def amplify_for_display(delta: np.ndarray) -> np.ndarray:
    """A perturbation stretched to a uint8 image for figures (0 maps to mid-grey 128).

    Symmetric scaling by the largest absolute value, so the sign is kept:
    ``128 + 127 * delta / max|delta|``. An all-zero perturbation gives flat grey.

    Shape:
        - delta: ``(S, S, 3)`` or ``(1, S, S, 3)``; output ``(S, S, 3)`` uint8.
    """
    d = np.asarray(delta, np.float64)
    if d.ndim == 4 and d.shape[0] == 1:
        d = d[0]
    m = float(np.abs(d).max()) if d.size else 0.0
    scaled = 128.0 + (127.0 * d / m if m > 0 else 0.0 * d)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def flip_rate(clean_pred: np.ndarray, adv_pred: np.ndarray) -> float:
    """Share of images whose prediction changed (Moosavi-Dezfooli et al.'s fooling rate)."""
    return float(np.mean(np.asarray(clean_pred) != np.asarray(adv_pred))) if len(clean_pred) else 0.0


# ---------------------------------------------------------------------------- FGSM


def fgsm(classifier: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float],
         batch_size: int = 64) -> dict[float, np.ndarray]:
    """Fast Gradient Sign Method (untargeted, L-inf), for several epsilons at once.

    ``x_adv = clip(x + eps * sign(grad_x CE(model(x), y)), 0, 1)``. The sign of the
    gradient does not depend on eps, so it is computed ONCE (with ART's
    ``classifier.loss_gradient``, in the same batches as ART's ``FastGradientMethod``) and
    reused for every eps; the result equals ART's ``FastGradientMethod(norm=inf, eps=e)``
    bit for bit (tested). With ``y=None`` the clean predictions are used as labels (ART's
    convention, avoids label leaking).

    | Paper link: https://arxiv.org/abs/1412.6572

    Args:
        classifier: an ART classifier (:func:`skinlib.tf_backend.art_classifier`); with a
            preprocessing defence the gradient goes through it (BPDA).
        x: images; y: true labels or ``None``.
        eps_list: L-inf budgets in pixel units of ``[0, 1]`` (2/255 is 2 grey levels).
        batch_size: gradient batch size.

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y: ``(N,)`` int.
        - output: ``{eps: (N, S, S, 3) float32}``.

    Examples:
        >>> adv = fgsm(art_classifier(model), x, y, [1/255, 2/255, 4/255])   # doctest: +SKIP
        >>> adv[2/255].shape == x.shape                                      # doctest: +SKIP
    """
    eps = _check_eps_list(eps_list)
    batch_size = _check_positive_int(batch_size, "batch_size")
    x = as_float_images(x)
    y = _labels(y, len(x))
    if y is None:
        y = tf_backend.predict_labels(classifier, x, batch_size=max(batch_size, 256))
    sign = np.sign(tf_backend.loss_gradient(classifier, x, y, batch_size=batch_size)).astype(np.float32)
    return {e: np.clip(x + np.float32(e) * sign, 0.0, 1.0).astype(np.float32) for e in eps}


# ---------------------------------------------------------------------------- PGD


def pgd(classifier: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], steps: int = 10,
        step_size: Optional[float] = None, seed: int = 0, batch_size: int = 64,
        norm: str = "inf") -> dict[float, np.ndarray]:
    """Projected Gradient Descent (Madry et al.), one run per epsilon, via ART.

    ART ``ProjectedGradientDescent`` with one random start inside the ball
    (``num_random_init=1``) and ``max_iter=steps``. ``step_size`` defaults to ``eps / 4``
    (so 10 steps can travel 2.5 eps, the usual choice); a number is used for every eps.
    ART draws the random start from NumPy's global generator: it is seeded with
    ``seed`` before each eps, and the global state is restored afterwards.

    | Paper link: https://arxiv.org/abs/1706.06083

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y: ``(N,)`` int or ``None`` (predictions).
        - output: ``{eps: (N, S, S, 3) float32}``.

    Examples:
        >>> adv = pgd(art_classifier(model), x, y, [2/255, 8/255], steps=10)   # doctest: +SKIP
    """
    from art.attacks.evasion import ProjectedGradientDescent

    eps = _check_eps_list(eps_list)
    steps = _check_positive_int(steps, "steps")
    batch_size = _check_positive_int(batch_size, "batch_size")
    norm = _check_norm(norm)
    if step_size is not None and not (float(step_size) > 0):
        raise SkinlibError(f"step_size: expected a positive number or None, got {step_size!r}")
    x = as_float_images(x)
    y = _labels(y, len(x))
    yh = None if y is None else tf_backend.one_hot(y, classifier.nb_classes)
    out: dict[float, np.ndarray] = {}
    state = np.random.get_state()
    try:
        for e in eps:
            if e == 0:
                out[e] = x.copy()
                continue
            attack = ProjectedGradientDescent(
                classifier, norm=np.inf if norm == "inf" else 2, eps=e,
                eps_step=float(step_size) if step_size is not None else e / 4, max_iter=steps,
                targeted=False, num_random_init=1, batch_size=batch_size, verbose=False)
            np.random.seed(seed)
            out[e] = attack.generate(x, yh).astype(np.float32)
    finally:
        np.random.set_state(state)
    return out


# ---------------------------------------------------------------------------- random control


def random_noise(x: np.ndarray, eps_list: Sequence[float], seed: int = 0, norm: str = "inf",
                 universal: bool = False) -> dict[float, np.ndarray]:
    """Random perturbations of the same size as an attack's: the control.

    L-inf: each pixel moves by ``+eps`` or ``-eps`` (random signs, the corner of the ball an
    FGSM step also lands on). L2: a random Gaussian direction scaled to L2 norm ``eps``.
    One draw is scaled to every eps. ``universal=True`` draws ONE perturbation for all
    images (the control of a UAP). Results are clipped to ``[0, 1]``. An attack that does
    no better than this is not an attack.

    Shape:
        - x: ``(N, S, S, 3)``; output ``{eps: (N, S, S, 3) float32}``.

    Examples:
        >>> noisy = random_noise(x, [2/255, 8/255], seed=0)   # doctest: +SKIP
    """
    eps = _check_eps_list(eps_list)
    norm = _check_norm(norm)
    x = as_float_images(x)
    rng = np.random.default_rng(seed)
    shape = (1,) + x.shape[1:] if universal else x.shape
    if norm == "inf":
        direction = rng.choice(np.array([-1.0, 1.0], np.float32), size=shape)
    else:
        g = rng.standard_normal(shape).astype(np.float32)
        nrm = np.linalg.norm(g.reshape(len(g), -1), axis=1).reshape((-1,) + (1,) * (g.ndim - 1))
        direction = g / np.maximum(nrm, 1e-12)
    return {e: np.clip(x + np.float32(e) * direction, 0.0, 1.0).astype(np.float32) for e in eps}


# ---------------------------------------------------------------------------- universal perturbations


def uap_budget(x: np.ndarray, norm: str, eps: Optional[float] = None, zeta: Optional[float] = None) -> float:
    """The size of a universal perturbation.

    L-inf: ``eps`` itself (pixel units of ``[0, 1]``). L2: after Hirano et al. (2020),
    ``zeta`` times the mean L2 norm of the images (``zeta = 0.04``: 4%); an explicit
    ``eps`` is used as is when ``zeta`` is not given.

    | Paper link: https://doi.org/10.1186/s12880-020-00530-y

    Shape:
        - x: ``(N, S, S, 3)`` images (float in ``[0, 1]`` or uint8).
    """
    norm = _check_norm(norm)
    if norm == "inf":
        if eps is None or not float(eps) > 0:
            raise SkinlibError(f"eps: an L-inf budget must be a positive number, got {eps!r}")
        return float(eps)
    if zeta is None:
        if eps is None or not float(eps) > 0:
            raise SkinlibError("uap_budget: an L2 budget needs zeta (share of the mean image norm) or eps")
        return float(eps)
    if not 0 < float(zeta) <= 1:
        raise SkinlibError(f"zeta: expected a share in (0, 1], got {zeta!r}")
    xf = as_float_images(x)
    return float(zeta) * float(np.linalg.norm(xf.reshape(len(xf), -1), axis=1).mean())


def _universal_info(model_or_classifier: Any, x: np.ndarray, y: Optional[np.ndarray], delta: np.ndarray,
                    batch_size: int) -> dict[str, float]:
    clean = tf_backend.predict_labels(model_or_classifier, x, batch_size=max(256, batch_size))
    adv = tf_backend.predict_labels(model_or_classifier, apply_perturbation(x, delta), batch_size=max(256, batch_size))
    info = {"train_flip_rate": flip_rate(clean, adv)}
    if y is not None:
        info["train_error_rate"] = float(np.mean(adv != y))
    return info


def uap_art(classifier: Any, x_train: np.ndarray, y_train: Optional[np.ndarray] = None, *, norm: str = "inf",
            eps: float, max_iter: int = 5, delta: float = 0.2, attacker_eps: Optional[float] = None,
            batch_size: int = 64, seed: int = 0, verbose: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Universal adversarial perturbation, Moosavi-Dezfooli et al.'s algorithm, with ART (as the thesis).

    ART ``UniversalPerturbation(attacker="fgsm")``: each pass visits the training images
    in random order, one at a time; for an image the current perturbation does not fool,
    an FGSM step of size ``attacker_eps`` is taken from ``x + v`` and, if it changes the
    prediction, ``v`` becomes that step's total perturbation projected onto the ``norm``
    ball of radius ``eps``. Passes stop after ``max_iter`` or once ART's fooling rate
    reaches ``1 - delta``. ``attacker_eps`` defaults to ``eps / 4``: a fraction of the
    budget, so one image's step cannot use the whole budget at once (ART's FGSM default,
    0.3, would). ART's image order comes from Python's ``random``: seeded here with
    ``seed`` (global states restored).

    Slow by construction (three model calls per image per pass, one image at a time);
    :func:`uap_fast` is the batched alternative.

    | Paper link: https://arxiv.org/abs/1610.08401

    Args:
        classifier: ART classifier (through a defence when it carries one).
        x_train: the images the perturbation is fitted on; y_train: their true labels
            (``None``: the clean predictions; ART's fooling rate is then a flip rate).
        norm: ``"inf"`` or ``"2"``; eps: the budget (see :func:`uap_budget`).
        max_iter: passes over ``x_train``; delta: ART's stop criterion.

    Returns:
        ``(perturbation (S, S, 3) float32, info)`` with ``wall_s``, ``passes`` (the passes
        ART ran), ``converged``, ``art_fooling_rate`` (ART's rate, against ``y_train``),
        ``train_flip_rate``, ``train_error_rate`` (when labels are given), ``n_train``.

    Shape:
        - x_train: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y_train ``(N,)``.

    Examples:
        >>> v, info = uap_art(art_classifier(model), x_tr, y_tr, norm="inf", eps=8/255)   # doctest: +SKIP
        >>> x_adv = apply_perturbation(x_test, v)                                         # doctest: +SKIP
    """
    from art.attacks.evasion import UniversalPerturbation

    norm = _check_norm(norm)
    if not float(eps) > 0:
        raise SkinlibError(f"eps: expected a positive budget, got {eps!r}")
    max_iter = _check_positive_int(max_iter, "max_iter")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if not 0 <= float(delta) <= 1:
        raise SkinlibError(f"delta: expected a number in [0, 1], got {delta!r}")
    a_eps = float(attacker_eps) if attacker_eps is not None else float(eps) / 4
    if not a_eps > 0:
        raise SkinlibError(f"attacker_eps: expected a positive number, got {attacker_eps!r}")
    x = as_float_images(x_train, "x_train")
    y = _labels(y_train, len(x), "y_train")
    attack = UniversalPerturbation(
        classifier, attacker="fgsm",
        attacker_params={"eps": a_eps, "norm": np.inf if norm == "inf" else 2, "batch_size": 1},
        delta=float(delta), max_iter=max_iter, eps=float(eps), norm=np.inf if norm == "inf" else 2,
        batch_size=batch_size, verbose=verbose)
    py_state, np_state = _pyrandom.getstate(), np.random.get_state()
    _pyrandom.seed(seed)
    np.random.seed(seed)
    try:
        start = time.perf_counter()
        attack.generate(x, None if y is None else tf_backend.one_hot(y, classifier.nb_classes))
        wall = time.perf_counter() - start
    finally:
        _pyrandom.setstate(py_state)
        np.random.set_state(np_state)
    v = np.asarray(attack.noise, np.float32).reshape(x.shape[1:])
    info: dict[str, Any] = {"method": "uap_art", "wall_s": wall, "art_fooling_rate": float(attack.fooling_rate),
                            "converged": bool(attack.converged), "n_train": len(x), "norm": norm, "eps": float(eps),
                            "attacker_eps": a_eps, "max_iter": max_iter}
    # ART's loop does not report its pass count; it ran max_iter passes unless it converged.
    info["passes"] = max_iter if not attack.converged else None
    info.update(_universal_info(classifier, x, y, v, batch_size))
    return v, info


def uap_fast(model: Any, x_train: np.ndarray, y_train: Optional[np.ndarray] = None, *, norm: str = "inf",
             eps: float, batch_size: int = 64, epochs: int = 5, learning_rate: float = 0.005, seed: int = 0,
             step: str = "sign", loss: str = "ce", beta: float = 9.0, init: str = "zeros",
             x_monitor: Optional[np.ndarray] = None, stop_at: Optional[float] = None, check_every: int = 5,
             input_transform: Optional[Callable] = None,
             max_steps: Optional[int] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Universal perturbation by minibatch stochastic gradient ascent (Shafahi et al. 2020).

    One perturbation ``delta`` (start: zeros, or ``init="uniform"``: a small seeded random
    start) is updated on shuffled minibatches by gradient ASCENT on the mean cross-entropy
    ``CE(model(clip(x + delta, 0, 1)), y)`` (``loss="clipped"``: ``min(CE, beta)``, so
    images already fooled stop dominating, as in the paper). The step is
    ``learning_rate * sign(grad)`` for L-inf, ``learning_rate * sqrt(d) * grad/|grad|`` for
    L2 (same per-pixel size), or an Adam step (``step="adam"``); after each step
    ``delta`` is PROJECTED onto the budget (L-inf: clip to ``[-eps, eps]``; L2: rescale
    to norm ``<= eps``). The minibatch step is compiled with ``tf.function``
    (:func:`skinlib.tf_backend.fast_uap`). Deterministic for a seed.

    Early stopping: with ``stop_at`` set, every ``check_every`` steps the flip rate on
    ``x_monitor`` (default: the first 256 training images) is measured and training stops
    once it reaches ``stop_at``. ``max_steps`` caps the number of minibatch steps.

    | Paper link: https://arxiv.org/abs/1811.11304

    Args:
        model: a Keras model (or an ART classifier: its Keras model is used; preprocessing
            defences are NOT applied: pass ``input_transform`` for a differentiable
            stand-in, e.g. :func:`skinlib.tf_backend.flip_transform` for LLT).
        x_train, y_train: images and true labels (``None``: the clean predictions).
        norm, eps: the budget; batch_size, epochs, learning_rate, seed: the optimiser.

    Returns:
        ``(perturbation (S, S, 3) float32, info)`` with ``wall_s`` (the optimisation only),
        ``steps``, ``epochs_run``, ``stopped_early``, ``monitor_history``
        (``(step, seconds, flip rate)``), ``train_flip_rate``, ``train_error_rate``.

    Shape:
        - x_train: ``(N, S, S, 3)`` float32 in ``[0, 1]``; y_train ``(N,)``.

    Examples:
        >>> v, info = uap_fast(model, x_tr, y_tr, norm="inf", eps=8/255, epochs=5)   # doctest: +SKIP
        >>> float(abs(v).max()) <= 8/255                                            # doctest: +SKIP
        True
    """
    norm = _check_norm(norm)
    if not float(eps) > 0:
        raise SkinlibError(f"eps: expected a positive budget, got {eps!r}")
    batch_size = _check_positive_int(batch_size, "batch_size")
    epochs = _check_positive_int(epochs, "epochs")
    check_every = _check_positive_int(check_every, "check_every")
    if not float(learning_rate) > 0:
        raise SkinlibError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if step not in ("sign", "adam"):
        raise SkinlibError(f"step: {step!r} is not 'sign' or 'adam'")
    if loss not in ("ce", "clipped"):
        raise SkinlibError(f"loss: {loss!r} is not 'ce' or 'clipped'")
    if init not in ("zeros", "uniform"):
        raise SkinlibError(f"init: {init!r} is not 'zeros' or 'uniform'")
    if stop_at is not None and not 0 < float(stop_at) <= 1:
        raise SkinlibError(f"stop_at: expected a flip rate in (0, 1], got {stop_at!r}")
    if max_steps is not None:
        max_steps = _check_positive_int(max_steps, "max_steps")
    keras_model = tf_backend.keras_model_of(model)
    x = as_float_images(x_train, "x_train")
    y = _labels(y_train, len(x), "y_train")
    if y is not None:
        y_fit = y
    else:  # the clean predictions of the system attacked (through the stand-in transform)
        y_fit = tf_backend.predict_labels(keras_model, x if input_transform is None else
                                          np.asarray(input_transform(x), np.float32))
    xm = None if x_monitor is None else as_float_images(x_monitor, "x_monitor")
    v, info = tf_backend.fast_uap(keras_model, x, y_fit, norm=norm, eps=float(eps), batch_size=batch_size,
                                  epochs=epochs, learning_rate=float(learning_rate), seed=seed, step=step,
                                  loss=loss, beta=float(beta), init=init, x_monitor=xm,
                                  stop_at=None if stop_at is None else float(stop_at), check_every=check_every,
                                  input_transform=input_transform, max_steps=max_steps)
    info.update({"method": "uap_fast", "n_train": len(x), "norm": norm, "eps": float(eps)})
    info.update(_universal_info(keras_model, x, y, v, batch_size))
    return v, info


# ---------------------------------------------------------------------------- registry

ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo("fgsm", "Fast Gradient Sign Method: one L-inf signed-gradient step per image (ART); "
                       "all epsilons from one gradient.", "https://arxiv.org/abs/1412.6572", fgsm),
    "pgd": AttackInfo("pgd", "Projected Gradient Descent: iterated FGSM steps with a random start, projected "
                      "onto the eps ball (ART).", "https://arxiv.org/abs/1706.06083", pgd),
    "random": AttackInfo("random", "Control: random +-eps sign noise (L-inf) or a random L2 direction of the "
                         "same size.", "", random_noise),
    "uap_art": AttackInfo("uap_art", "Universal adversarial perturbation, Moosavi-Dezfooli et al.'s image-by-image "
                          "algorithm with an FGSM inner attacker (ART, as in the thesis).",
                          "https://arxiv.org/abs/1610.08401", uap_art, universal=True),
    "uap_fast": AttackInfo("uap_fast", "Universal perturbation by batched stochastic gradient ascent, projected "
                           "onto the budget (Shafahi et al.), compiled with tf.function.",
                           "https://arxiv.org/abs/1811.11304", uap_fast, universal=True),
}


def get_attack(name: str) -> AttackInfo:
    """The :data:`ATTACKS` entry of ``name``; an unknown name is a :class:`SkinlibError`."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise SkinlibError(f"attack: unknown attack {name!r}; valid: {', '.join(ATTACKS)}") from None
