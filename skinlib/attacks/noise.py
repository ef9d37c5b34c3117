"""The control: random perturbations of an attack's size."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from skinlib.attacks._common import _check_eps_list, _check_norm, as_float_images



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
