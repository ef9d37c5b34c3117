"""Shared pieces of the attacks: input checks, applying and measuring perturbations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from skinlib.errors import SkinlibError

#: The norms of the perturbation budgets: L-inf and L2.
NORMS = ("inf", "2")


@dataclass(frozen=True)
class AttackInfo:
    """One entry of :data:`skinlib.attacks.ATTACKS`."""

    name: str
    description: str
    paper: str
    function: Callable[..., Any]
    universal: bool = False



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


def art_per_eps(make_attack: Callable[[float], Any], x: np.ndarray, y_onehot: Optional[np.ndarray],
                eps: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """``{eps: make_attack(eps).generate(x, y_onehot)}`` for ART attacks, clipped to ``[0, 1]``.

    ART draws its random starts and orders from NumPy's global generator: it is seeded
    with ``seed`` before each eps and restored afterwards. ``eps == 0`` returns ``x``.
    """
    out: dict[float, np.ndarray] = {}
    state = np.random.get_state()
    try:
        for e in eps:
            if e == 0:
                out[e] = x.copy()
                continue
            attack = make_attack(e)
            np.random.seed(seed)
            out[e] = np.clip(attack.generate(x, y_onehot), 0.0, 1.0).astype(np.float32)
    finally:
        np.random.set_state(state)
    return out
