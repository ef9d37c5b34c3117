"""Per-image gradient attacks: FGSM and PGD through ART, APGD (CE and DLR losses) through ART.

Each takes a list of epsilons and returns ``{eps: adversarial images}`` (foolbox 3's
convention), so a robustness curve is one call. Given an ART classifier that carries a
preprocessing defence (the LLT), ART runs the defence forward and differentiates it with
the preprocessor's ``estimate_gradient`` (BPDA): a white-box attack on the defended model.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from skinlib import tf_backend
from skinlib.attacks._common import (_check_eps_list, _check_norm, _check_positive_int, _labels, art_per_eps,
                                     as_float_images)
from skinlib.errors import SkinlibError



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




def pgd_art(classifier: Any, x: np.ndarray, y: Optional[np.ndarray], eps_list: Sequence[float], steps: int = 10,
        step_size: Optional[float] = None, seed: int = 0, batch_size: int = 64,
        norm: str = "inf") -> dict[float, np.ndarray]:
    """Projected Gradient Descent (Madry et al.), one run per epsilon, via ART (the cross-check of :func:`skinlib.attacks.pgd`).

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
        >>> adv = pgd_art(art_classifier(model), x, y, [2/255, 8/255], steps=10)   # doctest: +SKIP
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
    return art_per_eps(lambda e: ProjectedGradientDescent(
        classifier, norm=np.inf if norm == "inf" else 2, eps=e,
        eps_step=float(step_size) if step_size is not None else e / 4, max_iter=steps,
        targeted=False, num_random_init=1, batch_size=batch_size, verbose=False), x, yh, eps, seed)
