"""Classification, health and attack metrics, with percentile-bootstrap intervals.

All metrics are fractions in 0..1 and use the class order of :mod:`skinlib.labels`.
Every metric is computed from a 7x7 confusion matrix (rows: true class, columns:
predicted class) by one vectorised function, :func:`_from_confusion`, so the point
estimate (confusion matrix from scikit-learn) and the bootstrap resamples (confusion
matrices counted with ``np.bincount``) share the same formulas.

Definitions (``n_c`` images of class ``c``):

- ``accuracy``: share of correct predictions.
- ``recall_<cls>``: TP/(TP+FN) of one class; NaN when the class has no image.
- ``macro_recall``: mean of ``recall_<cls>`` over the classes present in ``y_true``
  (absent classes have no recall to average; counting them as 0 would penalise a
  model for a test set's composition).
- ``macro_specificity``: mean over the classes present in ``y_true`` of
  TN/(TN+FP), one class against the rest.
- health metrics collapse the 7 classes to positive (malignant) / negative with
  :data:`skinlib.labels.GROUPINGS`: ``health_accuracy``, ``sensitivity`` TP/(TP+FN),
  ``health_specificity`` TN/(TN+FP), ``npv`` TN/(TN+FN), ``fnr`` FN/(FN+TP).
- ``error_rate``: 1 - accuracy under attack (the thesis' "fooling rate");
  ``flip_rate``: share of images whose prediction differs from the clean one (the
  fooling rate of Moosavi-Dezfooli et al. 2017).

A ratio whose denominator is 0 is NaN, never an error or a warning.

Examples:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 5]); p = np.array([0, 1, 1, 5])
    >>> model_metrics(y, p)["accuracy"]
    0.75
    >>> health_metrics(y, p, "clinical")["sensitivity"]
    1.0
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix

from skinlib.errors import SkinlibError
from skinlib.labels import CLASSES, GROUPINGS, NUM_CLASSES, check_labels, positive_mask

MODEL_METRICS: tuple[str, ...] = ("accuracy", "macro_recall", "macro_specificity") + tuple(
    f"recall_{c}" for c in CLASSES
)
HEALTH_METRICS: tuple[str, ...] = ("health_accuracy", "sensitivity", "health_specificity", "npv", "fnr")
ATTACK_METRICS: tuple[str, ...] = ("error_rate", "flip_rate")

_LABELS = list(range(NUM_CLASSES))
_BOOT_CHUNK_ELEMENTS = 4_000_000  # resample indices drawn per chunk (bounds memory)


# --------------------------------------------------------------------------- input


def _pair(y_true: Any, y_pred: Any, pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    t, p = check_labels(y_true, "y_true"), check_labels(y_pred, pred_name)
    if t.size == 0:
        raise SkinlibError("y_true: empty; no metric can be computed")
    if t.shape != p.shape:
        raise SkinlibError(f"{pred_name}: {p.size} predictions for {t.size} labels")
    return t, p


def _check_grouping(grouping: str) -> None:
    if grouping not in GROUPINGS:
        raise SkinlibError(f"grouping: unknown grouping {grouping!r}; valid: {', '.join(GROUPINGS)}")


# --------------------------------------------------------------------------- core


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den`` is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the last axis of ``values`` where ``mask`` (and not NaN); NaN if none."""
    use = mask & ~np.isnan(values)
    return _ratio(np.where(use, values, 0.0).sum(axis=-1), use.sum(axis=-1))


def _from_confusion(cm: np.ndarray, groupings: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """All model metrics (and health metrics per grouping) from stacked confusion matrices.

    Shape:
        - cm: ``(B, 7, 7)`` counts, rows true class, columns predicted class.
        - returned values: ``(B,)`` float64; health metrics keyed ``(grouping, metric)``.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.sum(axis=(1, 2))
    diag = np.diagonal(cm, axis1=1, axis2=2)
    row = cm.sum(axis=2)  # images per true class (TP + FN)
    col = cm.sum(axis=1)  # predictions per class (TP + FP)
    present = row > 0
    recall = _ratio(diag, row)
    tn = n[:, None] - row - col + diag
    specificity = _ratio(tn, n[:, None] - row)  # TN / (TN + FP), FP = col - diag
    out: dict[Any, np.ndarray] = {
        "accuracy": _ratio(diag.sum(axis=1), n),
        "macro_recall": _masked_mean(recall, present),
        "macro_specificity": _masked_mean(specificity, present),
    }
    for i, c in enumerate(CLASSES):
        out[f"recall_{c}"] = recall[:, i]
    for g in groupings:
        pos = np.array(positive_mask(g))
        tp = cm[:, pos][:, :, pos].sum(axis=(1, 2))
        fn = cm[:, pos][:, :, ~pos].sum(axis=(1, 2))
        fp = cm[:, ~pos][:, :, pos].sum(axis=(1, 2))
        tn2 = cm[:, ~pos][:, :, ~pos].sum(axis=(1, 2))
        out[(g, "health_accuracy")] = _ratio(tp + tn2, n)
        out[(g, "sensitivity")] = _ratio(tp, tp + fn)
        out[(g, "health_specificity")] = _ratio(tn2, tn2 + fp)
        out[(g, "npv")] = _ratio(tn2, tn2 + fn)
        out[(g, "fnr")] = _ratio(fn, fn + tp)
    return out


def _sk_confusion(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return confusion_matrix(t, p, labels=_LABELS)[None]


# --------------------------------------------------------------------------- public metrics


def confusion(y_true: Any, y_pred: Any, normalize: Optional[str] = "true") -> np.ndarray:
    """7x7 confusion matrix (scikit-learn), rows true class, columns predicted.

    ``normalize``: ``"true"`` (rows sum to 1; a class with no image gives a row of 0),
    ``"pred"``, ``"all"`` or ``None`` (counts).
    """
    if normalize not in (None, "true", "pred", "all"):
        raise SkinlibError(f"normalize: must be true, pred, all or None, got {normalize!r}")
    t, p = _pair(y_true, y_pred)
    return confusion_matrix(t, p, labels=_LABELS, normalize=normalize)


def health_confusion(y_true: Any, y_pred: Any, grouping: str) -> np.ndarray:
    """2x2 counts of the malignant/benign collapse: rows true, columns predicted,
    index 0 negative (benign), 1 positive (malignant), i.e. ``[[TN, FP], [FN, TP]]``."""
    _check_grouping(grouping)
    t, p = _pair(y_true, y_pred)
    pos = np.array(positive_mask(grouping))
    return confusion_matrix(pos[t].astype(int), pos[p].astype(int), labels=[0, 1])


def model_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``accuracy``, ``macro_recall``, ``macro_specificity`` and ``recall_<cls>`` per class."""
    t, p = _pair(y_true, y_pred)
    m = _from_confusion(_sk_confusion(t, p))
    return {k: float(m[k][0]) for k in MODEL_METRICS}


def health_metrics(y_true: Any, y_pred: Any, grouping: str) -> dict[str, float]:
    """``health_accuracy``, ``sensitivity``, ``health_specificity``, ``npv``, ``fnr``
    under ``grouping`` (``clinical`` or ``thesis``); NaN where a denominator is 0."""
    _check_grouping(grouping)
    t, p = _pair(y_true, y_pred)
    m = _from_confusion(_sk_confusion(t, p), (grouping,))
    return {k: float(m[(grouping, k)][0]) for k in HEALTH_METRICS}


def attack_metrics(y_true: Any, y_pred_clean: Any, y_pred_adv: Any) -> dict[str, float]:
    """``error_rate`` (1 - accuracy on the attacked images) and ``flip_rate`` (share of
    images whose attacked prediction differs from the clean prediction)."""
    t, adv = _pair(y_true, y_pred_adv, "y_pred_adv")
    _, clean = _pair(y_true, y_pred_clean, "y_pred_clean")
    return {"error_rate": float(np.mean(adv != t)), "flip_rate": float(np.mean(adv != clean))}


# --------------------------------------------------------------------------- bootstrap


def _resample_chunks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``range(n)``, as ``(chunk, n)`` index arrays.

    The one source of resamples: :func:`bootstrap_ci` and :func:`evaluate` draw the
    same indices for the same ``seed``, so their intervals agree.
    """
    rng = np.random.default_rng(seed)
    per = max(1, _BOOT_CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(per, n_boot - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of ``samples`` ignoring NaN resamples; NaN if all are NaN."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def _check_boot(n_boot: int, alpha: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise SkinlibError(f"n_boot: expected an integer >= 0, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise SkinlibError(f"alpha: must lie in (0, 1), got {alpha!r}")


def bootstrap_ci(
    fn: Callable[..., float],
    arrays: Sequence[Any],
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(*arrays)`` over the images.

    Each resample draws ``len(arrays[0])`` image indices with replacement and calls
    ``fn`` on every array indexed by them (so paired arrays stay paired). Resamples
    where ``fn`` is NaN are left out. ``n_boot=0`` gives ``(nan, nan)``. This calls
    ``fn`` once per resample; :func:`evaluate` computes its many metrics vectorised
    from the very same resamples.

    Examples:
        >>> import numpy as np
        >>> y = np.array([0, 1, 1, 2] * 50); p = np.array([0, 1, 2, 2] * 50)
        >>> lo, hi = bootstrap_ci(lambda t, q: float(np.mean(t == q)), [y, p], 200, seed=0)
        >>> bool(lo < 0.75 < hi)
        True
    """
    _check_boot(n_boot, alpha)
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise SkinlibError("arrays: need at least one array to resample")
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise SkinlibError(f"arrays: lengths differ ({', '.join(str(a.shape[0]) for a in arrs)})")
    if n_boot == 0 or n == 0:
        return (float("nan"), float("nan"))
    samples = []
    for chunk in _resample_chunks(n, n_boot, seed):
        for idx in chunk:
            samples.append(fn(*(a[idx] for a in arrs)))
    return _interval(np.asarray(samples, dtype=np.float64), alpha)


def _boot_confusions(t: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices of resamples ``idx`` (``(B, n)``) as ``(B, 7, 7)`` counts."""
    b = idx.shape[0]
    code = (np.arange(b)[:, None] * (NUM_CLASSES * NUM_CLASSES) + t[idx] * NUM_CLASSES + p[idx]).ravel()
    return np.bincount(code, minlength=b * NUM_CLASSES * NUM_CLASSES).reshape(b, NUM_CLASSES, NUM_CLASSES)


def evaluate(
    y_true: Any,
    y_pred: Any,
    *,
    y_pred_clean: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Every metric as rows ``{grouping, metric, value, ci_low, ci_high}``.

    Model metrics (grouping ``""``), health metrics under ``clinical`` and ``thesis``,
    and, when ``y_pred_clean`` is given (``y_pred`` then being the predictions on
    attacked images), ``error_rate`` and ``flip_rate`` (grouping ``""``). Intervals are
    ``1 - alpha`` percentile bootstrap intervals over test images with ``n_boot``
    resamples (NaN when ``n_boot`` is 0); about 0.1 s for 1,000 resamples of 1,250 images.
    """
    _check_boot(n_boot, alpha)
    t, p = _pair(y_true, y_pred)
    groupings = tuple(GROUPINGS)
    point = _from_confusion(_sk_confusion(t, p), groupings)
    keys: list[Any] = list(MODEL_METRICS) + [(g, m) for g in groupings for m in HEALTH_METRICS]
    values = {k: float(point[k][0]) for k in keys}
    if y_pred_clean is not None:
        _, clean = _pair(t, y_pred_clean, "y_pred_clean")
        wrong, flipped = (p != t).astype(np.float64), (p != clean).astype(np.float64)
        values.update(error_rate=float(wrong.mean()), flip_rate=float(flipped.mean()))
        keys += list(ATTACK_METRICS)

    boots: dict[Any, list[np.ndarray]] = {k: [] for k in keys}
    if n_boot > 0:
        for idx in _resample_chunks(t.size, n_boot, seed):
            m = _from_confusion(_boot_confusions(t, p, idx), groupings)
            if y_pred_clean is not None:
                m["error_rate"] = wrong[idx].mean(axis=1)
                m["flip_rate"] = flipped[idx].mean(axis=1)
            for k in keys:
                boots[k].append(m[k])

    rows = []
    for k in keys:
        grouping, metric = k if isinstance(k, tuple) else ("", k)
        lo, hi = _interval(np.concatenate(boots[k]), alpha) if n_boot > 0 else (float("nan"), float("nan"))
        rows.append({"grouping": grouping, "metric": metric, "value": values[k], "ci_low": lo, "ci_high": hi})
    return rows
