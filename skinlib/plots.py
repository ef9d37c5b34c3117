"""The book's figures: every function returns a :class:`matplotlib.figure.Figure`.

All figures share one seaborn theme (:func:`set_theme`: white grid, the colour-blind
safe ``colorblind`` palette, sequential ``Blues`` for matrices), are sized for a book
page (at most :data:`PAGE_WIDTH` inches wide) and show classes in DESIGN.md order
(``akiec, bcc, bkl, df, mel, nv, vasc``). The figure functions apply the theme only
while they draw (they do not change global settings); call :func:`set_theme` once in
a notebook to give other plots the same look.

Examples:
    >>> import numpy as np
    >>> fig = confusion_matrices({"resnet": np.eye(7) * 5}, list(CLASSES), "Clean test set")
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

import contextlib
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from skinlib.errors import SkinlibError
from skinlib.labels import CLASS_INDEX, CLASS_NAMES, CLASSES, GROUPINGS
from skinlib.report import (
    check_unique,
    filter_grouping,
    is_health_metric,
    metric_label,
    ordered_metrics,
    param_matches,
    param_value,
    tidy,
)

PAGE_WIDTH = 10.0  # inches; Jupyter Book scales figures to the text width
PALETTE = "colorblind"
MATRIX_CMAP = "Blues"
#: Vermillion and bluish green of the colour-blind palette: wrong / right predictions.
WRONG_COLOUR = sns.color_palette(PALETTE)[3]
RIGHT_COLOUR = sns.color_palette(PALETTE)[2]

#: Per health grouping: (negative name, positive name, axis-label note).
GROUPING_TEXT: dict[str, tuple[str, str, str]] = {
    "clinical": ("benign", "malignant", "malignant/benign"),
    "thesis": ("healthy", "cancerous", "cancerous/healthy as in the thesis"),
}
#: The recap's stages (thesis figs. 5.1/5.2): label and defence (None: clean, no attack).
RECAP_STAGES: tuple[tuple[str, Optional[str]], ...] = (
    ("clean", None),
    ("attacked", "none"),
    ("+ retraining", "retraining"),
    ("+ LLT", "llt"),
    ("+ retraining\n+ LLT", "retraining+llt"),
)


def _theme_rc() -> dict[str, Any]:
    rc: dict[str, Any] = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("notebook", font_scale=0.85))
    rc.update({
        "axes.prop_cycle": cycler(color=sns.color_palette(PALETTE)),
        "figure.constrained_layout.use": True,
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "axes.titleweight": "bold",
        "image.cmap": MATRIX_CMAP,
    })
    return rc


def set_theme() -> None:
    """Apply the book's theme globally (seaborn whitegrid, colour-blind palette)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.85)
    mpl.rcParams.update(_theme_rc())


@contextlib.contextmanager
def _themed() -> Iterator[None]:
    with mpl.rc_context(_theme_rc()):
        yield


def _new_figure(nrows: int, ncols: int, figsize: tuple[float, float], **kw: Any) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure outside pyplot's registry (so notebooks show it once)."""
    fig = Figure(figsize=(min(figsize[0], PAGE_WIDTH), figsize[1]), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def figure_title(fig: Figure) -> str:
    """Every title of ``fig`` in one line: the suptitle, then each panel's title (" | " between).

    :func:`save_figure` and ``Run.save_figure`` write it into the PNG's ``Title`` text
    chunk, so a built page's images can be checked for a title naming their model.

    Examples:
        >>> fig = Figure(); _ = fig.suptitle("FGSM 2/255, grey box")
        >>> _ = fig.add_subplot(1, 1, 1).set_title("resnet_small")
        >>> figure_title(fig)
        'FGSM 2/255, grey box | resnet_small'
    """
    parts = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) is not None else []
    parts += [ax.get_title() for ax in fig.axes]
    return " | ".join(" ".join(p.split()) for p in parts if p.strip())


def png_metadata(fig: Figure) -> dict[str, str]:
    """PNG text chunks for ``fig``: its :func:`figure_title` as ``Title`` (none when untitled)."""
    title = figure_title(fig)
    return {"Title": title} if title else {}


def save_figure(fig: Figure, path: str | Path, **savefig: Any) -> Path:
    """Write ``fig`` (PNG, or the format of the suffix), creating folders; returns the path.
    A PNG carries the figure's titles in its ``Title`` chunk (:func:`figure_title`);
    ``savefig`` goes to :meth:`~matplotlib.figure.Figure.savefig` (``dpi``, ``bbox_inches``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, metadata=png_metadata(fig) if p.suffix.lower() in ("", ".png") else None, **savefig)
    return p


def save_page_figure(fig: Figure, folder: str | Path, name: str) -> Path:
    """Save a book page's figure as ``<folder>/figures/<name>.png`` at the pages' resolution
    (110 dpi, tight box), its titles in the PNG (:func:`figure_title`); written whole, then
    renamed, so a crash never leaves half a PNG. Returns the path."""
    from skinlib.paths import safe_name

    path = Path(folder) / "figures" / f"{safe_name(name, 'figure name')}.png"
    tmp = save_figure(fig, path.with_name(f".{path.name}.tmp.png"), dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- helpers


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (recall per true class); NaN for rows without images."""
    cm = np.asarray(cm, dtype=float)
    sums = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, cm / np.where(sums > 0, sums, 1), np.nan)


def _to_unit(images: np.ndarray) -> np.ndarray:
    """Images as floats in [0, 1] (uint8 scaled by 1/255)."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def _as_delta(delta: np.ndarray) -> np.ndarray:
    a = np.asarray(delta)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / 255.0  # integer deltas are in pixel levels
    return a.astype(np.float32)


def amplify(delta: np.ndarray, eps: Optional[float] = None) -> tuple[np.ndarray, float]:
    """Map a perturbation from ``[-eps, eps]`` to ``[0, 1]`` (0 -> mid grey) to make it visible.

    ``eps`` defaults to the largest absolute value of ``delta``. Returns the image and eps.
    """
    d = _as_delta(delta)
    if eps is None:
        eps = float(np.max(np.abs(d))) if d.size else 0.0
    if eps <= 0:
        return np.full(d.shape, 0.5, dtype=np.float32), 0.0
    return np.clip(d / (2 * eps) + 0.5, 0.0, 1.0), float(eps)


def _class_indices(labels: Any, names: Sequence[str] = CLASSES) -> np.ndarray:
    """Class indices from indices, one-hot/probability rows or class names."""
    a = np.asarray(labels)
    if a.ndim == 2:
        return a.argmax(axis=1)
    if a.dtype.kind in "USO":
        lookup = {n: i for i, n in enumerate(names)}
        try:
            return np.array([lookup[str(x)] for x in a], dtype=int)
        except KeyError as exc:
            raise SkinlibError(f"unknown class name {exc.args[0]!r}; valid: {', '.join(names)}") from None
    idx = a.astype(int)
    if idx.size and (idx.min() < 0 or idx.max() >= len(names)):
        raise SkinlibError(f"class index out of range 0..{len(names) - 1}: {idx.min()}..{idx.max()}")
    return idx


def _ordered_classes(keys: Sequence[str]) -> list[str]:
    """Class names in DESIGN.md order, other keys after them (as met)."""
    return [c for c in CLASSES if c in keys] + [k for k in keys if k not in CLASS_INDEX]


def _pct(ax: Any, axis: str = "y") -> None:
    fmt = mpl.ticker.PercentFormatter(xmax=1.0, decimals=0)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


# --------------------------------------------------------------------------- split leakage


def split_leakage(table: pd.DataFrame) -> Figure:
    """Clean test accuracy of one model trained on a lesion split and on an image split
    (rows of :func:`skinlib.experiments.split_leakage`), with 95% lesion-bootstrap bars,
    and the share of each split's test images whose lesion was also seen in training."""
    t = table.sort_values("split").reset_index(drop=True)
    with _themed():
        fig, axes = _new_figure(1, 2, (8.0, 3.2))
        colours = sns.color_palette(PALETTE, len(t))
        x = np.arange(len(t))
        acc, seen = axes[0]
        acc.bar(x, t["accuracy"], color=colours)
        acc.errorbar(x, t["accuracy"], yerr=[t["accuracy"] - t["ci_low"], t["ci_high"] - t["accuracy"]],
                     fmt="none", ecolor="black", capsize=4)
        seen.bar(x, t["seen_lesion_share"], color=colours)
        for ax, label in ((acc, "test accuracy"), (seen, "test images of a lesion seen in training")):
            ax.set_xticks(x, [s.replace("_", " ") for s in t["split"]])
            ax.set_ylim(0, 1)
            ax.set_title(label, fontsize="medium")
            _pct(ax)
        fig.suptitle(f"{t['model'].iloc[0]}, clean test set: split by lesion vs split by image")
    return fig


# --------------------------------------------------------------------------- training


def _history_quantities(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    found: list[str] = []
    for h in histories.values():
        for key, vals in h.items():
            try:
                arr = np.asarray(vals, dtype=float)
            except (TypeError, ValueError):
                continue
            if arr.ndim != 1 or arr.size == 0:
                continue
            base = key[4:] if key.startswith("val_") else key
            if base not in found:
                found.append(base)
    first = [q for q in ("accuracy", "loss") if q in found]
    return first + [q for q in found if q not in first]


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Train and validation curves per epoch (thesis fig. 4.1): one row per model.

    Columns are the quantities recorded (``accuracy`` and ``loss`` first, then any other
    key; ``val_<q>`` is the validation curve of ``<q>``). Missing curves are skipped.
    """
    if not histories:
        raise SkinlibError("training_curves: no histories given")
    quantities = _history_quantities(histories)
    if not quantities:
        raise SkinlibError("training_curves: the histories hold no numeric curves")
    colours = sns.color_palette(PALETTE)
    with _themed():
        nrows, ncols = len(histories), len(quantities)
        fig, axes = _new_figure(nrows, ncols, (4.0 * ncols + 0.5, 2.8 * nrows + 0.4))
        for i, (model, h) in enumerate(histories.items()):
            for j, q in enumerate(quantities):
                ax = axes[i][j]
                drawn = False
                for key, label, colour, style in ((q, "train", colours[0], "-"),
                                                  (f"val_{q}", "validation", colours[1], "--")):
                    vals = h.get(key)
                    if vals is None or len(vals) == 0:
                        continue
                    y = np.asarray(vals, dtype=float)
                    sns.lineplot(x=np.arange(1, len(y) + 1), y=y, ax=ax, color=colour, linestyle=style,
                                 marker="o" if len(y) <= 30 else None, markersize=4, label=label)
                    drawn = True
                ax.set_title(f"{model}: {metric_label(q)}")
                ax.set_xlabel("epoch")
                ax.set_ylabel(metric_label(q))
                ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
                if drawn:
                    ax.legend(loc="best", fontsize="small")
                else:
                    ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle("Training curves (clean training and validation sets, no attack)")
    return fig


# --------------------------------------------------------------------------- confusion matrices


def _matrix_title(model: str, cm: np.ndarray) -> str:
    """``"resnet (n = 1,252 images)"`` for a matrix of counts; the model alone when normalised."""
    a = np.nan_to_num(np.asarray(cm, dtype=float))
    if a.size and np.allclose(a, np.round(a)) and a.sum() > 0:
        return f"{model} (n = {int(round(a.sum())):,} images)"
    return str(model)


def confusion_matrices(cms: Mapping[str, np.ndarray], labels: Sequence[str], title: str,
                       normalize_note: str = "row-normalised") -> Figure:
    """Side-by-side confusion matrices, one per model (thesis figs. 4.2, 4.8, ...).

    Rows are true classes, columns predictions, in the order of ``labels``; each row is
    divided by its number of images (so the diagonal is the recall of each class) and
    annotated with two decimals; a class without test images shows an empty row. Pass
    matrices of counts: each panel's title names its model and the number of images
    (the sum of its counts); a matrix that is already normalised (not whole numbers)
    carries no count, so its title gives the model only.
    """
    if not cms:
        raise SkinlibError("confusion_matrices: no matrices given")
    k = len(labels)
    for model, cm in cms.items():
        if np.shape(cm) != (k, k):
            raise SkinlibError(f"confusion_matrices: {model}: shape {np.shape(cm)}, expected ({k}, {k}) "
                               "for the labels given")
    n = len(cms)
    side = 0.5 * k + 1.2
    with _themed():
        fig, axes = _new_figure(1, n, (side * n + 0.3, side + 0.6))
        for ax, (model, cm) in zip(axes[0], cms.items()):
            norm = row_normalise(cm)
            sns.heatmap(norm, ax=ax, vmin=0, vmax=1, cmap=MATRIX_CMAP, annot=True, fmt=".2f",
                        annot_kws={"fontsize": 8 if k > 5 else 10}, cbar=False, square=True,
                        linewidths=0.5, linecolor="white", xticklabels=labels, yticklabels=labels)
            ax.set_title(_matrix_title(model, cm))
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.tick_params(axis="x", rotation=0)
            ax.tick_params(axis="y", rotation=0)
        fig.suptitle(f"{title} ({normalize_note})")
    return fig


def health_confusions(cms: Mapping[str, Mapping[str, np.ndarray]], title: str = "") -> Figure:
    """2x2 malignant/benign matrices: one row per model, one column per grouping.

    Each matrix is laid out as :func:`skinlib.metrics.health_confusion` returns it:
    index 0 negative (benign / healthy), 1 positive (malignant / cancerous), rows true,
    columns predicted. Cells show the row share and, in brackets, the count. Axis labels
    name the grouping (clinical: malignant/benign; thesis: cancerous/healthy as in the
    thesis, nv counted as cancerous). ``title`` (the attack and setting, e.g. "FGSM,
    eps 2/255, grey box") is added to the figure title; each panel names its model.
    """
    if not cms:
        raise SkinlibError("health_confusions: no matrices given")
    groupings = [g for g in GROUPING_TEXT if any(g in v for v in cms.values())]
    groupings += [g for v in cms.values() for g in v if g not in groupings]
    nrows, ncols = len(cms), len(groupings)
    with _themed():
        fig, axes = _new_figure(nrows, ncols, (3.9 * ncols + 0.4, 3.4 * nrows + 0.5))
        for i, (model, per_grouping) in enumerate(cms.items()):
            for j, g in enumerate(groupings):
                ax = axes[i][j]
                neg, pos, note = GROUPING_TEXT.get(g, ("negative", "positive", f"{g} grouping"))
                if g not in per_grouping:
                    ax.axis("off")
                    ax.text(0.5, 0.5, f"{model}: no {g} matrix", ha="center", va="center", transform=ax.transAxes)
                    continue
                cm = np.asarray(per_grouping[g], dtype=float)
                if cm.shape != (2, 2):
                    raise SkinlibError(f"health_confusions: {model}/{g}: shape {cm.shape}, expected (2, 2)")
                norm = row_normalise(cm)
                annot = np.array([[("—" if np.isnan(norm[r, c]) else f"{norm[r, c]:.2f}") + f"\n({int(cm[r, c]):,})"
                                   for c in range(2)] for r in range(2)])
                sns.heatmap(norm, ax=ax, vmin=0, vmax=1, cmap=MATRIX_CMAP, annot=annot, fmt="", cbar=False,
                            square=True, linewidths=0.5, linecolor="white", xticklabels=[neg, pos],
                            yticklabels=[neg, pos], annot_kws={"fontsize": 10})
                n = int(round(float(np.nansum(cm))))
                ax.set_title(f"{model}\n{g} grouping (n = {n:,} images)", fontsize="medium")
                ax.set_xlabel(f"predicted ({note})")
                ax.set_ylabel("true")
                ax.tick_params(axis="y", rotation=0)
        fig.suptitle(f"{title}: malignant/benign confusion matrices (row-normalised)" if title
                     else "Malignant/benign confusion matrices (row-normalised)")
    return fig


# --------------------------------------------------------------------------- data


def class_histogram(counts_before: Mapping[str, int], counts_after: Mapping[str, int], title: str) -> Figure:
    """Training-set class counts before and after label flipping (thesis fig. 4.5)."""
    classes = _ordered_classes(list(dict.fromkeys([*counts_before, *counts_after])))
    df = pd.DataFrame(
        [{"class": c, "labels": which, "images": int(counts.get(c, 0))}
         for which, counts in (("before", counts_before), ("after", counts_after)) for c in classes])
    with _themed():
        fig, axes = _new_figure(1, 1, (7.5, 3.8))
        ax = axes[0][0]
        sns.barplot(data=df, x="class", y="images", hue="labels", order=classes, hue_order=["before", "after"],
                    palette=PALETTE, ax=ax)
        for cont in ax.containers:
            ax.bar_label(cont, fontsize=7, padding=1)
        ax.set_title(title)
        ax.set_xlabel("class (training label)")
        ax.set_ylabel("training images")
        ax.legend(title="labels")
    return fig


def class_distribution(counts: Mapping[str, int], groupings: Mapping[str, frozenset[str]] = GROUPINGS) -> Figure:
    """Images per class, and the malignant/benign shares under each grouping (figs. 3.6-3.7)."""
    classes = _ordered_classes(list(counts))
    total = sum(int(counts[c]) for c in classes)
    if total <= 0:
        raise SkinlibError("class_distribution: no images counted")
    colours = sns.color_palette(PALETTE)
    with _themed():
        fig, axes = _new_figure(1, 2, (10.0, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
        ax = axes[0][0]
        df = pd.DataFrame({"class": classes, "images": [int(counts[c]) for c in classes]})
        sns.barplot(data=df, x="class", y="images", order=classes, color=colours[0], ax=ax)
        ax.bar_label(ax.containers[0], labels=[f"{v:,}\n{v / total:.1%}" for v in df["images"]], fontsize=7, padding=1)
        ax.set_ylim(0, df["images"].max() * 1.22)
        ax.set_title(f"Images per class (n = {total:,})")
        ax.set_xlabel("class")
        ax.set_ylabel("images")

        ax = axes[0][1]
        names = list(groupings)
        for y, g in enumerate(names):
            neg_name, pos_name, _ = GROUPING_TEXT.get(g, ("negative", "positive", g))
            pos = sum(int(counts[c]) for c in classes if c in groupings[g]) / total
            ax.barh(y, pos, color=colours[3], edgecolor="white")
            ax.barh(y, 1 - pos, left=pos, color=colours[2], edgecolor="white")
            ax.text(pos / 2, y, f"{pos_name}\n{pos:.1%}", ha="center", va="center", fontsize=7, color="white")
            ax.text(pos + (1 - pos) / 2, y, f"{neg_name}\n{1 - pos:.1%}", ha="center", va="center", fontsize=7,
                    color="white")
        ax.set_yticks(range(len(names)), [f"{g}\n({', '.join(c for c in CLASSES if c in groupings[g])})"
                                          for g in names])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        _pct(ax, "x")
        ax.set_xlabel("share of images")
        ax.set_title("Malignant/benign share per grouping")
        ax.grid(False, axis="y")
    return fig


def image_grid(images: np.ndarray, labels: Any, per_class: int = 4, seed: int = 0) -> Figure:
    """Example images, one row per class present (DESIGN.md order), ``per_class`` columns.

    ``images``: (N, S, S, 3) uint8 or floats in [0, 1]; ``labels``: class indices,
    class names or one-hot rows. Images are drawn at random (``seed``) without
    replacement; classes with fewer images leave blank cells.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] not in (1, 3):
        raise SkinlibError(f"image_grid: images of shape {imgs.shape}, expected (N, S, S, 3)")
    idx = _class_indices(labels)
    if len(idx) != len(imgs):
        raise SkinlibError(f"image_grid: {len(imgs)} images but {len(idx)} labels")
    if per_class < 1:
        raise SkinlibError("image_grid: per_class must be at least 1")
    rng = np.random.default_rng(seed)
    present = [c for c in range(len(CLASSES)) if np.any(idx == c)]
    with _themed():
        fig, axes = _new_figure(len(present), per_class, (1.3 * per_class + 3.2, 1.3 * len(present) + 0.4),
                                gridspec_kw={"wspace": 0.02, "hspace": 0.02})
        for r, c in enumerate(present):
            pool = np.flatnonzero(idx == c)
            chosen = np.sort(rng.choice(pool, size=min(per_class, len(pool)), replace=False))
            for j in range(per_class):
                ax = axes[r][j]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if j < len(chosen):
                    ax.imshow(_to_unit(imgs[chosen[j]]).squeeze(), cmap="gray" if imgs.shape[-1] == 1 else None)
                else:
                    ax.axis("off")
            name = CLASSES[c]
            full = textwrap.fill(CLASS_NAMES[name], 18)
            axes[r][0].set_ylabel(f"{name}\n{full}\n({np.sum(idx == c):,} images)", rotation=0, ha="right",
                                  va="center", fontsize="x-small")
        fig.suptitle("Example images per class")
    return fig


# --------------------------------------------------------------------------- attacks


def adversarial_panel(clean: np.ndarray, perturbation: np.ndarray, adversarial: np.ndarray,
                      pred_clean: Sequence[str], pred_adv: Sequence[str], true: Sequence[str],
                      title: str = "") -> Figure:
    """Clean image / amplified perturbation / adversarial image, one row per example (fig. 4.7).

    Images are uint8 or floats in [0, 1], shape (N, S, S, 3) or (S, S, 3);
    ``perturbation`` may be one array for all rows (a UAP). The perturbation is shown
    mapped from [-eps, eps] to [0, 1] (zero is mid grey), eps being its largest
    absolute value; predictions are in the titles, wrong ones marked and coloured.
    ``title`` names the model and attack (e.g. "resnet: FGSM"); the budget is appended.
    """
    c = _to_unit(clean)
    a = _to_unit(adversarial)
    if c.ndim == 3:
        c, a = c[None], a[None]
    d = _as_delta(perturbation)
    if d.ndim == 3:
        d = np.broadcast_to(d[None], c.shape)
    n = len(c)
    if a.shape != c.shape or d.shape != c.shape:
        raise SkinlibError(f"adversarial_panel: shapes differ: clean {c.shape}, perturbation {d.shape}, "
                           f"adversarial {a.shape}")
    for name, seq in (("pred_clean", pred_clean), ("pred_adv", pred_adv), ("true", true)):
        if len(seq) != n:
            raise SkinlibError(f"adversarial_panel: {name} has {len(seq)} entries for {n} images")
    shown, eps = amplify(d)
    with _themed():
        fig, axes = _new_figure(n, 3, (8.4, 2.9 * n + 0.5))
        for i in range(n):
            panels = (
                (c[i], f"clean · true {true[i]}\npredicted {pred_clean[i]}", pred_clean[i] == true[i]),
                (shown[i], "perturbation (amplified)\n" + (f"±{eps * 255:.1f}/255 → [0, 1]" if eps else "zero"), None),
                (a[i], f"adversarial\npredicted {pred_adv[i]}" + ("" if pred_adv[i] == true[i] else " (wrong)"),
                 pred_adv[i] == true[i]),
            )
            for j, (img, panel_title, right) in enumerate(panels):
                ax = axes[i][j]
                ax.imshow(img)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                colour = "black" if right is None else (RIGHT_COLOUR if right else WRONG_COLOUR)
                ax.set_title(panel_title, fontsize="small", color=colour)
        head = f"{title}: clean / perturbation / adversarial" if title else "Clean / perturbation / adversarial"
        fig.suptitle(head + (f" (eps = {eps * 255:.1f}/255)" if eps and "eps" not in title else ""))
    return fig


def perturbation_image(delta: np.ndarray, title: str) -> Figure:
    """A perturbation (e.g. a UAP) amplified to be visible, with its L-inf and L2 norms."""
    d = _as_delta(delta)
    if d.ndim == 4 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 3:
        raise SkinlibError(f"perturbation_image: shape {d.shape}, expected (S, S, 3)")
    shown, eps = amplify(d)
    with _themed():
        fig, axes = _new_figure(1, 1, (4.6, 4.9))
        ax = axes[0][0]
        ax.imshow(shown)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_title(title)
        ax.set_xlabel(f"L∞ = {eps * 255:.1f}/255, L2 = {float(np.linalg.norm(d)):.2f}\n"
                      "shown from [-L∞, L∞] to [0, 1] (grey = no change)", fontsize="small")
    return fig


def prediction_histogram(preds: Mapping[str, Any], labels: Sequence[str] = CLASSES,
                         title: str = "Predicted classes") -> Figure:
    """Share of images predicted as each class, per series (e.g. clean vs under the UAP).

    ``preds`` maps a series name to predictions (class indices, names or probability
    rows): one panel with one bar colour per series, titled ``title`` (name the model
    there); or maps a model to such a mapping (``{"resnet": {"clean": ..., "UAP": ...}}``):
    one panel per model, each titled with its model, under ``title``.
    """
    if not preds:
        raise SkinlibError("prediction_histogram: no predictions given")
    nested = all(isinstance(v, Mapping) for v in preds.values())
    panels = dict(preds) if nested else {"": preds}
    with _themed():
        fig, axes = _new_figure(1, len(panels), (5.0 * len(panels) + 0.4, 3.6), sharey=True)
        for ax, (model, series) in zip(axes[0], panels.items()):
            rows = []
            for name, p in series.items():
                idx = _class_indices(p, labels)
                shares = np.bincount(idx, minlength=len(labels)) / max(len(idx), 1)
                rows += [{"class": labels[k], "series": name, "share": shares[k]} for k in range(len(labels))]
            df = pd.DataFrame(rows)
            sns.barplot(data=df, x="class", y="share", hue="series", order=list(labels),
                        hue_order=list(series), palette=PALETTE, ax=ax)
            ax.set_ylim(0, 1)
            _pct(ax)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("share of images")
            ax.set_title(model or title)
            ax.legend(title=None, fontsize="small")
        if nested:
            fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- metric curves


def metric_curves(df: pd.DataFrame, x: str = "param", metrics: Optional[Sequence[str]] = None,
                  hue: str = "model", xlabel: Optional[str] = None, *, style: Optional[str] = "auto",
                  grouping: Optional[str] = "clinical", x_scale: float = 1.0, title: Optional[str] = None,
                  col_wrap: int = 3) -> Figure:
    """Each metric against a swept parameter, one line per ``hue`` with its 95% band (fig. 4.6).

    ``x`` (default ``param``: poison fraction, eps, quality) is plotted as a number
    times ``x_scale`` (e.g. 255 for eps in 1/255 units) when every value parses as one,
    else as categories. ``style`` (default: ``attack`` when several attacks are
    present) sets the line style. Health metrics are taken under ``grouping``. One
    panel per metric; several rows for one point raise a :class:`SkinlibError`. With
    ``hue="model"`` the suptitle ends with the models drawn ("...; models: a, b").
    """
    d = tidy(df, required=(x, hue, "metric", "value"))
    metrics = list(metrics) if metrics is not None else ordered_metrics(d["metric"])
    d = filter_grouping(d[d["metric"].isin(metrics)], grouping)
    if d.empty:
        raise SkinlibError(f"metric_curves: no rows for metrics {', '.join(metrics)}")
    if style == "auto":
        style = "attack" if "attack" in d.columns and d["attack"].nunique() > 1 else None
    keys = [x, hue, "metric"] + ([style] if style else [])
    check_unique(d, keys, "metric_curves")
    nums = d[x].map(param_value)
    numeric = nums.notna().all()
    d = d.assign(_x=nums.astype(float) * x_scale if numeric else d[x].astype(str))
    hue_levels = list(dict.fromkeys(d[hue]))
    colours = dict(zip(hue_levels, sns.color_palette(PALETTE, len(hue_levels))))
    style_levels = list(dict.fromkeys(d[style])) if style else None
    ncols = min(len(metrics), col_wrap)
    nrows = math.ceil(len(metrics) / ncols)
    with _themed():
        fig, axes = _new_figure(nrows, ncols, (3.4 * ncols + 1.6, 2.9 * nrows + 0.5), sharex=True)
        flat = list(axes.ravel())
        for ax in flat[len(metrics):]:
            fig.delaxes(ax)
        handles, legend_labels = [], []
        for ax, m in zip(flat, metrics):
            sub = d[d["metric"] == m].sort_values("_x" if numeric else x)
            if sub.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            else:
                sns.lineplot(data=sub, x="_x", y="value", hue=hue, hue_order=hue_levels, palette=colours,
                             style=style, style_order=style_levels, markers=True, dashes=bool(style),
                             errorbar=None, sort=numeric, ax=ax)
                groups = sub.groupby([hue] + ([style] if style else []), sort=False)
                for key, g in groups:
                    level = key[0] if isinstance(key, tuple) else key
                    ok = g["ci_low"].notna() & g["ci_high"].notna()
                    if ok.any():
                        ax.fill_between(g.loc[ok, "_x"], g.loc[ok, "ci_low"], g.loc[ok, "ci_high"],
                                        color=colours[level], alpha=0.18, linewidth=0)
                if ax.get_legend() is not None:
                    if not handles:
                        handles, legend_labels = ax.get_legend_handles_labels()
                    ax.get_legend().remove()
            ax.set_title(metric_label(m) + (f" ({grouping})" if grouping and is_health_metric(m) else ""))
            ax.set_ylim(-0.02, 1.02)
            _pct(ax)
            ax.set_xlabel(xlabel or x)
            ax.set_ylabel(None)
        if handles:
            fig.legend(handles, legend_labels, loc="outside right center", fontsize="small")  # clear of the title
        if title or hue == "model":  # the title names the models drawn, not only the legend
            models = f"models: {', '.join(map(str, hue_levels))}" if hue == "model" else ""
            fig.suptitle(f"{title}; {models}" if title and models else (title or models))
    return fig


# --------------------------------------------------------------------------- recap


def _recap_value(d: pd.DataFrame, where: str, param: Any) -> tuple[float, float, float]:
    if d.empty:
        return np.nan, np.nan, np.nan
    rows = d
    if param is not None:
        hit = d[param_matches(d["param"], param)]
        if not hit.empty:
            rows = hit
    if len(rows) > 1 and (rows["param"] == "").any():
        rows = rows[rows["param"] == ""]
    if len(rows) > 1 and "experiment" in rows.columns:
        # the same cell written by several chapters (exp4 repeats the thesis's grey-box FGSM):
        # take the earliest chapter in run order, the one the thesis's figure reports
        from skinlib.pipeline import EXPERIMENTS

        first = next((e for e in EXPERIMENTS if (rows["experiment"] == e).any()), None)
        if first:
            rows = rows[rows["experiment"] == first]
    if len(rows) > 1:
        check_unique(rows.assign(_k=0), ["_k"], f"recap: {where} (pass param=)")
    r = rows.iloc[0]
    return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])


def recap(df: pd.DataFrame, model: str, attack: str, metrics: Sequence[str], *, grouping: str = "clinical",
          param: Any = None, settings: Sequence[str] = ("greybox", "whitebox"), budget: str = "") -> Figure:
    """Every metric across the stages clean / attacked / + retraining / + LLT / + both
    (thesis figs. 5.1/5.2): model performance left, impact on health right.

    ``df`` holds the tidy results of all experiments; ``attack`` is our attack name
    (``fgsm``, ``uap_art``, ...). Line colour is the metric, line style the setting
    (greybox: crafted on the undefended model, as in the thesis; whitebox: crafted
    through the defence); the undefended attacked point is the same for both when only
    greybox rows exist. Vertical bars are 95% intervals; a missing stage leaves a gap.
    Health metrics are taken under ``grouping``; sweeps are read at ``param``. The title
    names the model, the attack with its ``budget`` (e.g. "2/255") and the settings drawn.
    """
    d = filter_grouping(tidy(df, required=("model", "attack", "defence", "setting", "metric", "value")), grouping)
    d = d[d["model"] == model]
    if d.empty:
        raise SkinlibError(f"recap: no rows for model {model!r}")
    families = [("model performance", [m for m in metrics if not is_health_metric(m)]),
                ("impact on health" + (f" ({grouping} grouping)" if grouping else ""),
                 [m for m in metrics if is_health_metric(m)])]
    families = [(name, ms) for name, ms in families if ms]
    if not families:
        raise SkinlibError("recap: no metrics given")
    rows = []
    for m in metrics:
        dm = d[d["metric"] == m]
        for s in settings:
            for pos, (stage, defence) in enumerate(RECAP_STAGES):
                if defence is None:
                    sel = dm[(dm["attack"] == "none") & (dm["defence"] == "none") & (dm["setting"] == "clean")]
                else:
                    sel = dm[(dm["attack"] == attack) & (dm["defence"] == defence) & (dm["setting"] == s)]
                    if sel.empty and defence == "none" and s != "greybox":
                        sel = dm[(dm["attack"] == attack) & (dm["defence"] == "none") & (dm["setting"] == "greybox")]
                v, lo, hi = _recap_value(sel, f"{model}/{attack}/{defence}/{s}/{m}", param)
                rows.append({"metric": metric_label(m), "setting": s, "pos": pos, "defended": pos >= 2,
                             "value": v, "ci_low": lo, "ci_high": hi})
    r = pd.DataFrame(rows)
    # a setting is drawn only where it has a defended value of its own
    has = r[r["defended"]].groupby("setting")["value"].apply(lambda v: v.notna().any())
    keep = [s for s in settings if has.get(s, False)] or list(settings[:1])
    r = r[r["setting"].isin(keep)]
    linestyles = dict(zip(keep, ["-", "--", ":", "-."]))
    with _themed():
        fig, axes = _new_figure(1, len(families), (5.0 * len(families) + 0.6, 4.0), sharey=True)
        for ax, (name, ms) in zip(axes[0], families):
            labels = [metric_label(m) for m in ms]
            colours = dict(zip(labels, sns.color_palette(PALETTE, len(labels))))
            offsets = {s: (k - (len(keep) - 1) / 2) * 0.06 for k, s in enumerate(keep)}
            for label in labels:
                for s in keep:
                    g = r[(r["metric"] == label) & (r["setting"] == s)].sort_values("pos")
                    x = g["pos"].to_numpy() + offsets[s]
                    ax.plot(x, g["value"], linestyle=linestyles[s], marker="o", markersize=4, color=colours[label])
                    ok = (g["ci_low"].notna() & g["ci_high"].notna()).to_numpy()
                    ax.vlines(x[ok], g["ci_low"].to_numpy()[ok], g["ci_high"].to_numpy()[ok], color=colours[label], alpha=0.6,
                              linewidth=1.2)
            handles = [Line2D([], [], color=colours[lab], marker="o", label=lab) for lab in labels]
            if len(keep) > 1:
                handles += [Line2D([], [], color="grey", linestyle=linestyles[s], label=s) for s in keep]
            ax.legend(handles=handles, fontsize="small", loc="lower left")
            ax.set_xticks(range(len(RECAP_STAGES)), [s for s, _ in RECAP_STAGES], fontsize="small")
            ax.set_xlim(-0.3, len(RECAP_STAGES) - 0.7)
            ax.set_ylim(-0.02, 1.02)
            _pct(ax)
            ax.set_title(name)
        attack_text = " ".join(t for t in (ATTACK_TEXT.get(attack, attack), budget) if t)
        setting_text = " and ".join(SETTING_TEXT.get(s, s) for s in keep)
        fig.suptitle(f"{model} against {attack_text} ({setting_text}): clean, attacked and defended")
    return fig


def adaptive_curves(curves: pd.DataFrame, model: str, eps_255: float) -> Figure:
    """Experiment 4's checks for one model: PGD accuracy against steps, restarts and eps, one line per defence.

    Through the LLT the curves follow the codec-gradient PGD (the legend says so). The
    headline point (the steps, restarts and eps of the reported rows) is marked with a
    dot: a curve still falling there means the attack had not converged. The eps panel
    starts at 0; a defended curve that stays high at the largest eps is a warning sign of
    masked gradients, not of robustness.
    """
    d = curves[curves["model"] == model]
    if d.empty:
        raise SkinlibError(f"adaptive_curves: no curves for model {model!r}")
    with _themed():
        fig, axes = _new_figure(1, 3, (13.5, 4.0))
        titles = {"steps": "steps (first restart)", "restarts": "restarts (all steps)", "eps": "eps (/255)"}
        for ax, curve in zip(axes.ravel(), ("steps", "restarts", "eps")):
            c = d[d["curve"] == curve]
            for defence, g in c.groupby("defence", sort=False):
                g = g.sort_values("x")
                attack = str(g["attack"].iloc[0]) if "attack" in g else "pgd"
                label = defence if attack == "pgd" else f"{defence} ({ATTACK_TEXT.get(attack, attack)})"
                line, = ax.plot(g["x"], g["accuracy"], marker="" if curve == "steps" else "o", label=label)
                h = g[g["headline"].astype(bool)]
                ax.plot(h["x"], h["accuracy"], "o", color=line.get_color(), markersize=8)
            n = int(c["n_images"].iloc[0]) if not c.empty else 0
            fixed = f"eps {eps_255:g}/255" if curve != "eps" else "steps fixed"
            ax.set_title(f"vs {titles[curve]}; {fixed}; n = {n}", fontsize=9)
            ax.set_xlabel(titles[curve])
            if curve == "restarts":
                ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
            ax.set_ylim(0, 1)
            _pct(ax)
        axes.ravel()[0].set_ylabel("accuracy under white-box PGD")
        axes.ravel()[-1].legend(title="defence", fontsize=8)
        fig.suptitle(f"{model}: white-box PGD through each defence (BPDA where not differentiable; through the LLT "
                     "with the codec stand-in's gradient); dots: the reported setting", fontsize=10)
    return fig


# --------------------------------------------------------------------------- defence pages

#: Readable names of the attacks and settings in figure labels.
ATTACK_TEXT: dict[str, str] = {"fgsm": "FGSM", "uap_art": "UAP (ART)", "uap_fast": "UAP (fast)", "pgd": "PGD",
                               "pgd_codec": "codec-gradient PGD", "pgd_lowfreq": "low-frequency PGD",
                               "apgd_ce": "APGD-CE", "apgd_dlr": "APGD-DLR", "square": "Square",
                               "pgd_targeted": "targeted PGD", "worst_case": "worst case over the attacks",
                               "random": "random noise", "none": "no attack"}
SETTING_TEXT: dict[str, str] = {"greybox": "grey box", "whitebox": "white box", "clean": "clean",
                                "transfer": "transfer"}


def _one(rows: pd.DataFrame, where: str) -> tuple[float, float, float]:
    if rows.empty:
        return np.nan, np.nan, np.nan
    if len(rows) > 1:
        check_unique(rows.assign(_k=0), ["_k"], f"defence_comparison: {where}")
    r = rows.iloc[0]
    return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])


def defence_cases(defended: pd.DataFrame, undefended: pd.DataFrame, model: str, metric: str, *,
                  grouping: str = "clinical", params: Optional[Mapping[str, Any]] = None,
                  attacks: Sequence[str] = ("fgsm", "uap_art", "uap_fast"),
                  settings: Sequence[str] = ("greybox", "whitebox")) -> pd.DataFrame:
    """The numbers :func:`defence_comparison` draws for one model and metric, one row per case and system.

    Cases: clean (one per clean defended variant, e.g. "retrained against fgsm"), then each
    attack in each setting. ``defended``: a defence chapter's tidy rows; ``undefended``: the
    undefended model's rows (experiment 0's clean rows and the attack chapters' grey-box
    rows), read at ``params[attack]`` where an attack was swept. Under attack the
    undefended system is the same in both settings (the attacker crafts on it either way).
    Columns: ``case``, ``system`` (undefended / defended), ``value``, ``ci_low``, ``ci_high``.
    """
    params = dict(params or {})
    dd = filter_grouping(tidy(defended), grouping)
    du = filter_grouping(tidy(undefended), grouping)
    dd = dd[(dd["model"] == model) & (dd["metric"] == metric)]
    du = du[(du["model"] == model) & (du["metric"] == metric)]
    rows: list[dict[str, Any]] = []

    def add(case: str, und: tuple[float, float, float], dfd: tuple[float, float, float]) -> None:
        for system, (v, lo, hi) in (("undefended", und), ("defended", dfd)):
            rows.append({"case": case, "system": system, "value": v, "ci_low": lo, "ci_high": hi})

    clean_u = _one(du[(du["attack"] == "none") & (du["setting"] == "clean") & (du["param"] == "")],
                   f"{model}/clean/undefended/{metric}")
    clean_d = dd[(dd["attack"] == "none") & (dd["setting"] == "clean")]
    variants = [""] if (clean_d["param"] == "").any() else list(dict.fromkeys(clean_d["param"]))
    for p in variants:
        add("clean" + (f"\n({p})" if p else ""), clean_u,
            _one(clean_d[clean_d["param"] == p], f"{model}/clean/{p}/{metric}"))
    for attack in attacks:
        u = du[(du["attack"] == attack) & (du["setting"] == "greybox")]
        if attack in params and params[attack] is not None:
            # params are written with 6 significant digits ("0.0313725"): match to that precision
            target = param_value(params[attack])
            u = u[u["param"].map(lambda p: param_value(p) is not None and target is not None
                                 and math.isclose(param_value(p), target, rel_tol=1e-5))]
        und = _one(u, f"{model}/{attack}/undefended/{metric}")
        for s in settings:
            d = dd[(dd["attack"] == attack) & (dd["setting"] == s)]
            if d.empty and np.isnan(und[0]):
                continue
            add(f"{ATTACK_TEXT.get(attack, attack)}\n{SETTING_TEXT.get(s, s)}", und,
                _one(d, f"{model}/{attack}/{s}/{metric}"))
    return pd.DataFrame(rows, columns=["case", "system", "value", "ci_low", "ci_high"])


def defence_comparison(defended: pd.DataFrame, undefended: pd.DataFrame, defence: str, *,
                       metrics: Sequence[str] = ("accuracy", "fnr"), grouping: str = "clinical",
                       params: Optional[Mapping[str, Any]] = None, models: Optional[Sequence[str]] = None,
                       attacks: Sequence[str] = ("fgsm", "uap_art", "uap_fast"),
                       settings: Sequence[str] = ("greybox", "whitebox"), title: str = "") -> Figure:
    """A defence chapter's headline: each metric undefended vs defended, clean and per attack and setting.

    One row of panels per model, one column per metric (default accuracy and the clinical
    FNR); in each panel a pair of horizontal bars (undefended, defended) per case (clean,
    then each attack in the grey-box and white-box settings; see :func:`defence_cases`),
    with 95% interval bars and the value written at the bar's end. Health metrics are
    taken under ``grouping``. ``defence`` names the defence in the figure title; ``title``
    (e.g. the attacks' budgets) is a second line.
    """
    dd = tidy(defended)
    models = list(models) if models is not None else list(dict.fromkeys(dd["model"]))
    if not models:
        raise SkinlibError("defence_comparison: no defended rows")
    colours = {"undefended": sns.color_palette(PALETTE)[7], "defended": sns.color_palette(PALETTE)[0]}
    frames = {(m, k): defence_cases(defended, undefended, m, k, grouping=grouping, params=params, attacks=attacks,
                                    settings=settings) for m in models for k in metrics}
    n_cases = max((len(f) // 2 for f in frames.values()), default=1)
    with _themed():
        fig, axes = _new_figure(len(models), len(metrics),
                                (4.9 * len(metrics) + 0.6, (0.5 * n_cases + 0.9) * len(models) + 0.4),
                                sharey="row")
        for i, m in enumerate(models):
            for j, k in enumerate(metrics):
                ax = axes[i][j]
                f = frames[(m, k)]
                cases = list(dict.fromkeys(f["case"]))
                for off, system in ((-0.2, "undefended"), (0.2, "defended")):
                    g = f[f["system"] == system].set_index("case").reindex(cases)
                    y = np.arange(len(cases)) + off
                    v = g["value"].to_numpy(float)
                    lo, hi = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
                    ax.barh(y, np.nan_to_num(v), height=0.38, color=colours[system], label=system)
                    ok = ~(np.isnan(lo) | np.isnan(hi) | np.isnan(v))
                    ax.errorbar(v[ok], y[ok], xerr=[v[ok] - lo[ok], hi[ok] - v[ok]], fmt="none", ecolor="black",
                                elinewidth=1, capsize=2)
                    for yy, vv, hh in zip(y, v, hi):
                        if not np.isnan(vv):
                            ax.text((hh if not np.isnan(hh) else vv) + 0.015, yy, f"{vv:.0%}", va="center",
                                    fontsize=6.5)
                ax.set_yticks(range(len(cases)), cases, fontsize="small")
                if j == 0:  # the row shares its y axis: invert it once
                    ax.invert_yaxis()
                ax.set_xlim(0, 1.12)
                _pct(ax, "x")
                ax.set_xlabel(metric_label(k) + (f" ({grouping} grouping)" if is_health_metric(k) else ""))
                ax.set_title(f"{m}: {metric_label(k)}" + (f" ({grouping})" if is_health_metric(k) else ""))
                ax.grid(False, axis="y")
        handles = [Patch(color=colours[s], label=s) for s in ("undefended", "defended")]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")
        fig.suptitle(f"{defence} vs the undefended model, clean and under attack (95% intervals)"
                     + (f"\n{title}" if title else ""))
    return fig
