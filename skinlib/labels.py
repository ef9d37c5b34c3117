"""Class order and the malignant/benign groupings used by every metric.

Class order follows DESIGN.md: ``akiec, bcc, bkl, df, mel, nv, vasc`` (indices 0..6).
"""

from __future__ import annotations

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
