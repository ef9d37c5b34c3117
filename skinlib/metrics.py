"""Classification, health and attack metrics, with percentile-bootstrap intervals.

Intervals resample lesions when each image's lesion id is given (``groups``): a
resample draws as many lesions as the test set has, with replacement, and keeps all
images of each drawn lesion together (images of one lesion are not independent). A
difference between two systems on the same images (:func:`paired_difference`) gets its
interval from the same resamples applied to both.

All metrics are fractions in 0..1 and use the class order of :mod:`skinlib.labels`.
Every metric is computed from a 7x7 confusion matrix (rows: true class, columns:
predicted class) by one vectorised function, :func:`_from_confusion`, so the point
estimate (confusion matrix from scikit-learn) and the bootstrap resamples (confusion
matrices from per-lesion counts, one matrix product per chunk of resamples) share the
same formulas.

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
from scipy import sparse
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
#
# A resample draws ``L`` clusters with replacement out of ``L`` (images when ``groups`` is
# None: each image its own cluster; lesions otherwise) and keeps every image of a drawn
# cluster. Drawing cluster ``l`` ``k`` times counts each of its images ``k`` times, so a
# resample is fully described by its per-cluster counts ``(L,)``, and its confusion matrix
# is ``counts @ table`` where ``table[l]`` holds cluster ``l``'s 49 confusion cells (plus its
# attack counts). Those weighted counts equal the counts of the concatenated images of the
# drawn clusters exactly; one matrix product per chunk of resamples replaces the index arrays.


def _cluster_codes(groups: Any, n: int) -> tuple[np.ndarray, int]:
    """Cluster index ``0..L-1`` of each image (sorted cluster ids) and ``L``.

    ``groups=None`` makes every image its own cluster (the image bootstrap).
    """
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups)
    if g.ndim != 1:
        raise SkinlibError(f"groups: expected a 1-D array of lesion ids, got shape {g.shape}")
    if g.shape[0] != n:
        raise SkinlibError(f"groups: {g.shape[0]} lesion ids for {n} images")
    if g.dtype == object and any(v is None for v in g):
        raise SkinlibError("groups: holds None; every image needs a lesion id")
    if np.issubdtype(g.dtype, np.floating) and not np.all(np.isfinite(g)):
        raise SkinlibError("groups: holds NaN or inf; every image needs a lesion id")
    try:
        _, codes = np.unique(g, return_inverse=True)
    except TypeError:
        raise SkinlibError(f"groups: lesion ids of mixed types cannot be ordered ({g.dtype})") from None
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1 if n else 0


def _resample_chunks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap draws of ``range(n)`` (``n`` clusters), as ``(chunk, n)`` index arrays.

    The one source of resamples: :func:`bootstrap_ci`, :func:`evaluate` and
    :func:`paired_difference` draw the same clusters for the same ``seed`` and ``n``, so
    their intervals agree.
    """
    rng = np.random.default_rng(seed)
    per = max(1, _BOOT_CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(per, n_boot - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _cluster_counts(draws: np.ndarray, n_clusters: int) -> np.ndarray:
    """How often each cluster was drawn in each resample.

    Shape: ``(B, L)`` draws give ``(L, B)`` float64 counts (clusters first, for
    :meth:`_System.metrics`' sparse product).
    """
    b = draws.shape[0]
    code = (draws * b + np.arange(b)[:, None]).ravel()
    return np.bincount(code, minlength=b * n_clusters).reshape(n_clusters, b).astype(np.float64)


def _cluster_members(codes: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images sorted by cluster, and each cluster's start in that order and size."""
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_clusters)
    return order, np.cumsum(sizes) - sizes, sizes


def _cluster_index(draws: np.ndarray, members: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Image indices of the drawn clusters ``(L,)``, concatenated (a cluster's images together)."""
    order, starts, sizes = members
    take = sizes[draws]
    offsets = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
    return order[np.repeat(starts[draws], take) + offsets]


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
    groups: Any = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(*arrays)``, resampling images or lesions.

    With ``groups=None`` each resample draws ``len(arrays[0])`` image indices with
    replacement. With ``groups`` (``(N,)`` lesion ids) it draws as many lesions as there
    are, with replacement, and takes every image of each drawn lesion (a cluster
    bootstrap: a lesion's images stay together). ``fn`` gets every array indexed the same
    way (so paired arrays stay paired). Resamples where ``fn`` is NaN are left out;
    ``n_boot=0`` gives ``(nan, nan)``. This calls ``fn`` once per resample;
    :func:`evaluate` computes its many metrics vectorised from the very same resamples.

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
    codes, n_clusters = _cluster_codes(groups, n)
    if n_boot == 0 or n == 0:
        return (float("nan"), float("nan"))
    members = None if groups is None else _cluster_members(codes, n_clusters)
    samples = []
    for chunk in _resample_chunks(n_clusters, n_boot, seed):
        for draws in chunk:
            idx = draws if members is None else _cluster_index(draws, members)
            samples.append(fn(*(a[idx] for a in arrs)))
    return _interval(np.asarray(samples, dtype=np.float64), alpha)


_CELLS = NUM_CLASSES * NUM_CLASSES


def _boot_confusions(t: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices of image resamples ``idx`` (``(B, n)``) as ``(B, 7, 7)`` counts."""
    b = idx.shape[0]
    code = (np.arange(b)[:, None] * _CELLS + t[idx] * NUM_CLASSES + p[idx]).ravel()
    return np.bincount(code, minlength=b * _CELLS).reshape(b, NUM_CLASSES, NUM_CLASSES)


def _cluster_table(t: np.ndarray, p: np.ndarray, clean: Optional[np.ndarray], codes: np.ndarray,
                   n_clusters: int) -> np.ndarray:
    """Per-cluster counts: 49 confusion cells, then wrong and flipped images when ``clean``.

    Shape: ``(L, 49)`` or ``(L, 51)`` float64.
    """
    cols = _CELLS + (2 if clean is not None else 0)
    table = np.zeros((n_clusters, cols))
    np.add.at(table, (codes, t * NUM_CLASSES + p), 1.0)
    if clean is not None:
        np.add.at(table[:, _CELLS], codes, (p != t).astype(np.float64))
        np.add.at(table[:, _CELLS + 1], codes, (p != clean).astype(np.float64))
    return table


class _System:
    """One prediction set, prepared for the resamples: image arrays or a cluster table."""

    def __init__(self, t: np.ndarray, p: np.ndarray, clean: Optional[np.ndarray], codes: np.ndarray,
                 n_clusters: int, by_image: bool):
        self.t, self.p, self.attack = t, p, clean is not None
        if by_image:
            self.table = None
            if clean is not None:
                self.wrong, self.flipped = (p != t).astype(np.float64), (p != clean).astype(np.float64)
        else:  # (51, L) sparse: a lesion fills few cells, so the product costs B x nnz
            self.table = sparse.csr_matrix(_cluster_table(t, p, clean, codes, n_clusters).T)

    def metrics(self, draws: np.ndarray, counts: Optional[np.ndarray], groupings: Sequence[str]) -> dict[Any, np.ndarray]:
        """Every metric of each resample of a chunk: ``draws`` ``(B, n)`` image indices, or
        ``counts`` ``(L, B)`` per-cluster counts (:func:`_cluster_counts`)."""
        if self.table is None:
            m = _from_confusion(_boot_confusions(self.t, self.p, draws), groupings)
            if self.attack:
                m["error_rate"] = self.wrong[draws].mean(axis=1)
                m["flip_rate"] = self.flipped[draws].mean(axis=1)
            return m
        summed = (self.table @ counts).T  # weighted counts = counts of the concatenated lesions
        cm = np.rint(summed[:, :_CELLS]).astype(np.int64).reshape(-1, NUM_CLASSES, NUM_CLASSES)
        m = _from_confusion(cm, groupings)
        if self.attack:
            n = cm.sum(axis=(1, 2))
            m["error_rate"] = _ratio(summed[:, _CELLS], n)
            m["flip_rate"] = _ratio(summed[:, _CELLS + 1], n)
        return m


def _resampled(systems: Sequence[_System], n_clusters: int, by_image: bool, n_boot: int, seed: int,
               groupings: Sequence[str]) -> Iterator[list[dict[Any, np.ndarray]]]:
    """Per chunk of resamples, every system's metrics on the very same resamples."""
    for draws in _resample_chunks(n_clusters, n_boot, seed):
        counts = None if by_image else _cluster_counts(draws, n_clusters)
        yield [s.metrics(draws, counts, groupings) for s in systems]


def _point_values(t: np.ndarray, p: np.ndarray, clean: Optional[np.ndarray], keys: Sequence[Any],
                  groupings: Sequence[str]) -> dict[Any, float]:
    point = _from_confusion(_sk_confusion(t, p), groupings)
    if clean is not None:
        point["error_rate"] = np.array([np.mean(p != t)])
        point["flip_rate"] = np.array([np.mean(p != clean)])
    return {k: float(point[k][0]) for k in keys}


def _metric_keys(groupings: Sequence[str], attack: bool) -> list[Any]:
    keys: list[Any] = list(MODEL_METRICS) + [(g, m) for g in groupings for m in HEALTH_METRICS]
    return keys + list(ATTACK_METRICS) if attack else keys


def evaluate(
    y_true: Any,
    y_pred: Any,
    *,
    y_pred_clean: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Any = None,
) -> list[dict[str, Any]]:
    """Every metric as rows ``{grouping, metric, value, ci_low, ci_high}``.

    Model metrics (grouping ``""``), health metrics under ``clinical`` and ``thesis``,
    and, when ``y_pred_clean`` is given (``y_pred`` then being the predictions on
    attacked images), ``error_rate`` and ``flip_rate`` (grouping ``""``). Intervals are
    ``1 - alpha`` percentile bootstrap intervals with ``n_boot`` resamples (NaN when
    ``n_boot`` is 0): over lesions when ``groups`` gives each image's lesion id (a
    lesion's images stay together, see :func:`bootstrap_ci`), over images when it is
    None. About 0.05 s for 1,000 resamples of 1,250 images.

    Shape:
        - y_true, y_pred, y_pred_clean, groups: ``(N,)``.
    """
    _check_boot(n_boot, alpha)
    t, p = _pair(y_true, y_pred)
    clean = None if y_pred_clean is None else _pair(t, y_pred_clean, "y_pred_clean")[1]
    codes, n_clusters = _cluster_codes(groups, t.size)
    groupings = tuple(GROUPINGS)
    keys = _metric_keys(groupings, clean is not None)
    values = _point_values(t, p, clean, keys, groupings)

    boots: dict[Any, list[np.ndarray]] = {k: [] for k in keys}
    if n_boot > 0:
        system = _System(t, p, clean, codes, n_clusters, by_image=groups is None)
        for (m,) in _resampled([system], n_clusters, groups is None, n_boot, seed, groupings):
            for k in keys:
                boots[k].append(m[k])

    rows = []
    for k in keys:
        grouping, metric = k if isinstance(k, tuple) else ("", k)
        lo, hi = _interval(np.concatenate(boots[k]), alpha) if n_boot > 0 else (float("nan"), float("nan"))
        rows.append({"grouping": grouping, "metric": metric, "value": values[k], "ci_low": lo, "ci_high": hi})
    return rows


def difference_key(grouping: str, metric: str) -> str:
    """The key of a metric in :func:`paired_difference`: ``metric`` for grouping ``""``,
    else ``"<grouping>:<metric>"`` (``"clinical:sensitivity"``)."""
    return f"{grouping}:{metric}" if grouping else metric


def paired_difference(
    y_true: Any,
    y_pred_a: Any,
    y_pred_b: Any,
    *,
    groups: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    metrics: Optional[Sequence[str]] = None,
    y_pred_clean_a: Any = None,
    y_pred_clean_b: Any = None,
) -> dict[str, tuple[float, float, float]]:
    """``value(a) - value(b)`` of every metric of :func:`evaluate`, with a paired interval.

    Both prediction sets are scored on the same test images; each resample (of lesions
    when ``groups`` is given, else of images) is applied to both, and the interval is the
    ``1 - alpha`` percentile interval of the per-resample differences (resamples where
    either value is NaN left out). Keys are :func:`difference_key`: ``"accuracy"``,
    ``"clinical:fnr"``, ...; ``error_rate`` and ``flip_rate`` come when both
    ``y_pred_clean_a`` and ``y_pred_clean_b`` are given. ``metrics`` keeps only those keys.
    Values are ``(difference, ci_low, ci_high)``; NaN intervals when ``n_boot`` is 0.

    Shape:
        - y_true, y_pred_a, y_pred_b, y_pred_clean_a, y_pred_clean_b, groups: ``(N,)``.

    Examples:
        >>> import numpy as np
        >>> y = np.array([0, 1, 5, 5]); a = np.array([0, 1, 5, 2])
        >>> paired_difference(y, a, a, n_boot=50)["accuracy"]
        (0.0, 0.0, 0.0)
    """
    _check_boot(n_boot, alpha)
    t, pa = _pair(y_true, y_pred_a, "y_pred_a")
    _, pb = _pair(t, y_pred_b, "y_pred_b")
    if (y_pred_clean_a is None) != (y_pred_clean_b is None):
        given, other = ("y_pred_clean_a", "y_pred_clean_b") if y_pred_clean_b is None else \
            ("y_pred_clean_b", "y_pred_clean_a")
        raise SkinlibError(f"{other}: needed with {given} (attack metrics compare both systems' clean predictions)")
    ca = None if y_pred_clean_a is None else _pair(t, y_pred_clean_a, "y_pred_clean_a")[1]
    cb = None if y_pred_clean_b is None else _pair(t, y_pred_clean_b, "y_pred_clean_b")[1]
    codes, n_clusters = _cluster_codes(groups, t.size)
    groupings = tuple(GROUPINGS)
    keys = _metric_keys(groupings, ca is not None)
    names = {difference_key(*(k if isinstance(k, tuple) else ("", k))): k for k in keys}
    if metrics is not None:
        if isinstance(metrics, str):
            raise SkinlibError(f"metrics: expected a list of metric keys, got the string {metrics!r}")
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise SkinlibError(f"metrics: unknown metric {unknown[0]!r}; valid: {', '.join(names)}")
        names = {m: names[m] for m in metrics}
    keys = list(names.values())
    va = _point_values(t, pa, ca, keys, groupings)
    vb = _point_values(t, pb, cb, keys, groupings)

    diffs: dict[Any, list[np.ndarray]] = {k: [] for k in keys}
    if n_boot > 0:
        systems = [_System(t, q, c, codes, n_clusters, by_image=groups is None) for q, c in ((pa, ca), (pb, cb))]
        for ma, mb in _resampled(systems, n_clusters, groups is None, n_boot, seed, groupings):
            for k in keys:
                diffs[k].append(ma[k] - mb[k])

    out = {}
    for name, k in names.items():
        lo, hi = _interval(np.concatenate(diffs[k]), alpha) if n_boot > 0 else (float("nan"), float("nan"))
        out[name] = (va[k] - vb[k], lo, hi)
    return out


def pool_over_seeds(cells: Sequence[tuple[float, float, float]],
                    alpha: float = 0.05) -> tuple[float, float, float, float]:
    """One estimate from several training seeds' ``(value, ci_low, ci_high)``, and whether they differ.

    Fixed-effect inverse-variance pooling (Borenstein et al. 2009,
    https://doi.org/10.1002/9780470743386, ch. 11): each seed's standard error is read off
    its ``1 - alpha`` interval as half its width over the normal quantile, the seeds are
    weighted by ``1 / se**2``, and the pooled value gets a normal interval. It assumes one
    effect shared by the seeds, with independent test sets (a seed draws its own split);
    Cochran's Q tests that assumption, and its p-value is returned last (small: the seeds
    measure different effects, and the pooled value should not be read alone). Cells
    without a finite interval are left out; NaNs where fewer than two are left.

    Shape: ``K`` cells in, ``(value, ci_low, ci_high, heterogeneity p)`` out.

    Examples:
        >>> v, lo, hi, p = pool_over_seeds([(0.04, -0.014, 0.099), (0.113, 0.058, 0.174)])
        >>> round(v, 3), round(lo, 3), round(hi, 3), round(p, 2)
        (0.076, 0.035, 0.116, 0.08)
    """
    from scipy.stats import chi2, norm

    z = float(norm.ppf(1 - alpha / 2))
    rows = np.array([c for c in cells if np.all(np.isfinite(c)) and c[2] > c[1]], dtype=float).reshape(-1, 3)
    if len(rows) < 2:
        return (np.nan, np.nan, np.nan, np.nan)
    se = (rows[:, 2] - rows[:, 1]) / (2 * z)
    w = 1 / se ** 2
    value = float(np.sum(w * rows[:, 0]) / np.sum(w))
    half = z / float(np.sqrt(np.sum(w)))
    q = float(np.sum(w * (rows[:, 0] - value) ** 2))
    return value, value - half, value + half, float(chi2.sf(q, len(rows) - 1))
