"""Universal adversarial perturbations: ART's (Moosavi-Dezfooli et al.) and the fast batched one (Shafahi et al.)."""

from __future__ import annotations

import random as _pyrandom
import time
from typing import Any, Callable, Optional

import numpy as np

from skinlib import tf_backend
from skinlib.attacks._common import (_check_norm, _check_positive_int, _labels, apply_perturbation, as_float_images,
                                     flip_rate)
from skinlib.errors import SkinlibError



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
             max_steps: Optional[int] = None, warmup_steps: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Universal perturbation by minibatch stochastic gradient ascent (Shafahi et al. 2020).

    One perturbation ``delta`` (start: zeros, or ``init="uniform"``: a small seeded random
    start) is updated on shuffled minibatches by gradient ASCENT on the mean cross-entropy
    ``CE(model(clip(x + delta, 0, 1)), y)`` (``loss="clipped"``: ``min(CE, beta)``, so
    images already fooled stop dominating, as in the paper). The step is
    ``learning_rate * sign(grad)`` for L-inf, ``learning_rate * sqrt(d) * grad/|grad|`` for
    L2 (same per-pixel size), or an Adam step (``step="adam"``); after each step
    ``delta`` is PROJECTED onto the budget (L-inf: clip to ``[-eps, eps]``; L2: rescale
    to norm ``<= eps``). ``warmup_steps``: the first steps move ``delta`` by the whole
    budget (step size ``eps``, a universal FGSM step on each minibatch) before
    ``learning_rate`` takes over, so the perturbation is strong after a few steps and is
    then refined by the small steps. The minibatch step is compiled with ``tf.function``
    (:func:`skinlib.tf_backend.fast_uap`). Deterministic for a seed.

    Early stopping: with ``stop_at`` set, every ``check_every`` steps the flip rate on
    ``x_monitor`` (default: the first 256 training images) is measured and training stops
    once it reaches ``stop_at``. ``max_steps`` caps the number of minibatch steps.

    | Paper link: https://arxiv.org/abs/1811.11304

    Args:
        model: a Keras model (or an ART classifier: its Keras model is used; preprocessing
            defences are NOT applied: pass ``input_transform``, e.g.
            :meth:`skinlib.defences.LowLevelTransformation.tf_transform` for BPDA through
            the LLT: real WebP forward, straight-through gradient).
        x_train, y_train: images and true labels (``None``: the clean predictions of the
            system attacked, each image's predicted when a minibatch first draws it).
        norm, eps: the budget; batch_size, epochs, learning_rate, seed: the optimiser;
            warmup_steps: how many first steps take the whole budget as their size.

    Returns:
        ``(perturbation (S, S, 3) float32, info)`` with ``wall_s`` (the optimisation, with
        the clean predictions it needed when ``y_train`` is ``None``),
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
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise SkinlibError(f"warmup_steps: expected a whole number >= 0, got {warmup_steps!r}")
    keras_model = tf_backend.keras_model_of(model)
    x = as_float_images(x_train, "x_train")
    y = _labels(y_train, len(x), "y_train")
    xm = None if x_monitor is None else as_float_images(x_monitor, "x_monitor")
    v, info = tf_backend.fast_uap(keras_model, x, y, norm=norm, eps=float(eps), batch_size=batch_size,
                                  epochs=epochs, learning_rate=float(learning_rate), seed=seed, step=step,
                                  loss=loss, beta=float(beta), init=init, x_monitor=xm,
                                  stop_at=None if stop_at is None else float(stop_at), check_every=check_every,
                                  input_transform=input_transform, max_steps=max_steps,
                                  warmup_steps=int(warmup_steps))
    info.update({"method": "uap_fast", "n_train": len(x), "norm": norm, "eps": float(eps),
                 "warmup_steps": int(warmup_steps)})
    info.update(_universal_info(keras_model, x, y, v, batch_size))
    return v, info
