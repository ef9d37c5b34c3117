"""Train/validation/test splits, class weights and label-flip poisoning.

The default split is *by lesion*: HAM10000 holds several pictures of the same lesion
(10,015 images of 7,470 lesions), and a lesion whose pictures land in both the training
and the test set inflates test scores. The split is stratified by class at the lesion
level, so every class keeps roughly its share in every split.

Examples:
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(7), 30)
    >>> lesions = np.array([f"L{i // 2}" for i in range(labels.size)])
    >>> parts = split_dataset(labels, lesions, seed=0)
    >>> sorted(parts), sum(p.size for p in parts.values()) == labels.size
    (['test', 'train', 'val'], True)
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from skinlib.errors import SkinlibError
from skinlib.labels import NUM_CLASSES, check_labels

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_MODES: tuple[str, ...] = ("by_lesion", "by_image")


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1) > 1e-6:
        raise SkinlibError(f"fractions: must be three positive shares (train, val, test) summing to 1, got {fractions!r}")
    return fr  # type: ignore[return-value]


def _group_labels(labels: np.ndarray, lesion_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One label per lesion (its most common one; ties go to the lower class index).

    Returns ``(group_of_image, label_of_group)``: ``group_of_image[i]`` indexes the lesion
    of image ``i`` in ``label_of_group``.
    """
    _, group = np.unique(lesion_ids, return_inverse=True)
    n_groups = int(group.max()) + 1 if group.size else 0
    counts = np.zeros((n_groups, NUM_CLASSES), dtype=np.int64)
    np.add.at(counts, (group, labels), 1)
    return group, counts.argmax(axis=1)


def _two_way(keys: np.ndarray, strata: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split of ``keys``; unstratified when there are too few items per class."""
    try:
        return train_test_split(keys, test_size=test_size, random_state=seed, shuffle=True, stratify=strata)
    except ValueError:
        # scikit-learn refuses to stratify when a class has a single member or the
        # smaller part is shorter than the number of classes (tiny smoke data sets).
        return train_test_split(keys, test_size=test_size, random_state=seed, shuffle=True)


def _ensure_presence(assign: np.ndarray, strata: np.ndarray, seed: int) -> np.ndarray:
    """Move units so that each class with at least 3 units is present in all 3 splits.

    ``assign[u]`` is the split (0 train, 1 val, 2 test) of unit ``u``. A split missing a
    class takes one (seeded random) unit of that class from the split holding most of
    them. A no-op on data of HAM10000's size, where stratification already ensures it.
    """
    assign = assign.copy()
    rng = np.random.default_rng(seed)
    for c in np.unique(strata):
        members = np.flatnonzero(strata == c)
        if members.size < 3:
            continue
        for s in range(3):
            held = np.bincount(assign[members], minlength=3)
            if held[s] == 0:
                donor = int(held.argmax())
                candidates = members[assign[members] == donor]
                assign[rng.choice(candidates)] = s
    return assign


def _split_units(strata: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Split label ``strata`` of units (lesions or images) into splits 0/1/2."""
    n = strata.size
    if n < 3:
        raise SkinlibError(f"labels: {n} lesions/images are too few to split into train, val and test")
    f_train, f_val, f_test = fractions
    units = np.arange(n)
    rest, test = _two_way(units, strata, f_test, seed)
    train, val = _two_way(rest, strata[rest], f_val / (f_train + f_val), seed + 1)
    assign = np.zeros(n, dtype=np.int64)
    assign[val] = 1
    assign[test] = 2
    return _ensure_presence(assign, strata, seed)


def split_dataset(
    labels: np.ndarray,
    lesion_ids: np.ndarray,
    *,
    fractions: Sequence[float] = (0.70, 0.175, 0.125),
    by: str = "by_lesion",
    seed: int = 0,
    predefined: Optional[np.ndarray] = None,
) -> dict[str, np.ndarray]:
    """Indices of the ``train``, ``val`` and ``test`` images (sorted int64 arrays).

    ``by_lesion`` (default): the split is drawn over lesions, stratified by each lesion's
    label (its most common image label), so no lesion appears in two splits; the
    image shares then match ``fractions`` closely (within about a point on HAM10000).
    ``by_image``: stratified over images, lesions ignored (what the thesis did).
    Either way every class with at least 3 lesions (resp. images) is present in every
    split. The same ``seed`` gives the same split. ``predefined`` (an array of
    ``"train"/"val"/"test"`` per image, e.g. DermaMNIST's) overrides everything else.

    Shape:
        - labels, lesion_ids, predefined: ``(N,)``.
        - returned arrays: ``(n_split,)`` int64, disjoint, together ``arange(N)``.
    """
    labels = check_labels(labels)
    n = labels.size
    if predefined is not None:
        pre = np.asarray(predefined).astype(str)
        if pre.shape != (n,):
            raise SkinlibError(f"predefined: expected shape ({n},) like labels, got {pre.shape}")
        bad = sorted(set(np.unique(pre)) - set(SPLITS))
        if bad:
            raise SkinlibError(f"predefined: unknown split name(s) {bad}; valid: {', '.join(SPLITS)}")
        return {s: np.flatnonzero(pre == s).astype(np.int64) for s in SPLITS}

    fr = _check_fractions(fractions)
    if by not in SPLIT_MODES:
        raise SkinlibError(f"by: unknown split mode {by!r}; valid: {', '.join(SPLIT_MODES)}")
    if by == "by_image":
        assign = _split_units(labels, fr, seed)
    else:
        lesion_ids = np.asarray(lesion_ids)
        if lesion_ids.shape != (n,):
            raise SkinlibError(f"lesion_ids: expected shape ({n},) like labels, got {lesion_ids.shape}")
        group, group_label = _group_labels(labels, lesion_ids)
        assign = _split_units(group_label, fr, seed)[group]
    return {s: np.flatnonzero(assign == i).astype(np.int64) for i, s in enumerate(SPLITS)}


def class_weights(labels_train: np.ndarray, num_classes: int = NUM_CLASSES, power: float = 1.0) -> dict[int, float]:
    """Inverse-frequency ("balanced") class weights, as the thesis used.

    ``power`` tempers them: ``w_c ** power`` (1: the thesis's inverse frequency; 0.5:
    square root, a milder correction that trades some macro recall for accuracy; 0: none).

    ``w_c = n / (k * n_c)`` with ``k`` the number of classes present in ``labels_train``
    (scikit-learn's ``compute_class_weight("balanced")``). Classes absent from training
    get ``1.0``: no training sample carries them, so the value never touches the loss,
    and a neutral 1.0 (unlike 0.0) cannot silently mute a class if the same weights are
    later reused on data that does contain it (e.g. adversarial retraining). Every class
    index ``0..num_classes-1`` is a key, as Keras' ``class_weight`` requires.
    """
    y = check_labels(labels_train, "labels_train", num_classes)
    if y.size == 0:
        raise SkinlibError("labels_train: empty; cannot compute class weights")
    present = np.unique(y)
    w = compute_class_weight("balanced", classes=present, y=y)
    out = {c: 1.0 for c in range(num_classes)}
    out.update({int(c): float(v) ** power for c, v in zip(present, w)})
    return out


def poison_labels(labels: np.ndarray, fraction: float, source: int, target: int, seed: int) -> np.ndarray:
    """Label-flip poisoning: a copy of ``labels`` where some ``source`` images say ``target``.

    ``round(fraction * n_source)`` images (halves rounded up) of class ``source``, drawn
    at random, get label ``target``. The draw is one seeded permutation of the source
    images from which a prefix is taken, so for one seed the images flipped at a
    smaller fraction are a subset of those flipped at a larger one (nested sweeps).
    """
    y = check_labels(labels)
    for name, c in (("source", source), ("target", target)):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < NUM_CLASSES:
            raise SkinlibError(f"{name}: expected a class index in 0..{NUM_CLASSES - 1}, got {c!r}")
    if source == target:
        raise SkinlibError(f"target: must differ from source (both {source})")
    if not 0.0 <= float(fraction) <= 1.0:
        raise SkinlibError(f"fraction: must lie in [0, 1], got {fraction!r}")
    idx = np.flatnonzero(y == source)
    order = np.random.default_rng(seed).permutation(idx)
    k = int(np.floor(float(fraction) * idx.size + 0.5 + 1e-9))
    out = y.copy()
    out[order[:k]] = target
    return out
