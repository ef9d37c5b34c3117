"""Class order and the malignant/benign groupings used by every metric.

Class order follows DESIGN.md: ``akiec, bcc, bkl, df, mel, nv, vasc`` (indices 0..6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skinlib.errors import SkinlibError

CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
NUM_CLASSES = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

CLASS_NAMES: dict[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}

#: The "positive" (malignant / "cancerous") classes of each health grouping.
#: ``clinical`` is the medically correct one; ``thesis`` reproduces how the thesis
#: counted (melanocytic nevi counted as cancerous), needed to compare with its numbers.
GROUPINGS: dict[str, frozenset[str]] = {
    "clinical": frozenset({"mel", "bcc", "akiec"}),
    "thesis": frozenset({"nv", "mel", "bcc", "akiec"}),
}


def positive_mask(grouping: str) -> list[bool]:
    """Per class index, whether the class counts as malignant under ``grouping``."""
    return [c in GROUPINGS[grouping] for c in CLASSES]


def check_labels(labels: Any, name: str = "labels", num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``labels`` as a 1-D int64 array of class indices in ``0..num_classes-1``; else a
    :class:`SkinlibError` naming ``name`` (whole-valued floats are accepted)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise SkinlibError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0)):
            raise SkinlibError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)][0]
        raise SkinlibError(f"{name}: class index {bad} outside 0..{num_classes - 1}")
    return arr
