"""Loaders for the real datasets: HAM10000, ISIC 2018 Task 3 and MedMNIST DermaMNIST.

Every loader has the signature ``(data_dir, image_size, *, seed=0, n_images=None)``
and returns a :class:`~skinlib.data.Dataset` with labels in the class order of
:data:`skinlib.labels.CLASSES` (``seed`` and ``n_images`` only matter to the
synthetic source and are ignored here). Rows are sorted by image id, so the result
does not depend on the order of the rows in the metadata file.

Bad input is a :class:`~skinlib.errors.SkinlibError` whose one line names the file
(and line, column or key) and what is wrong. Rows are numbered as lines of the CSV
file (the header is line 1).

Layouts found:

- HAM10000: ``HAM10000_metadata.csv`` at the top of ``data_dir`` or anywhere below
  it, and ``<image_id>.jpg`` anywhere below ``data_dir`` (Kaggle:
  ``HAM10000_images_part_1/`` + ``_part_2/``; Harvard Dataverse; or ``images/``).
- ISIC 2018 Task 3: ``ISIC2018_Task3_Training_GroundTruth.csv`` (one-hot columns)
  and the images below ``data_dir`` (normally ``ISIC2018_Task3_Training_Input/``);
  lesion ids from ``ISIC2018_Task3_Training_LesionGroupings.csv`` when present.
- DermaMNIST: a MedMNIST ``dermamnist*.npz`` (``data_dir`` may be the file).
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from skinlib.data import Dataset, imaging
from skinlib.errors import SkinlibError
from skinlib.labels import CLASS_INDEX, CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HAM_METADATA = "HAM10000_metadata.csv"
ISIC_GROUND_TRUTH = "ISIC2018_Task3_Training_GroundTruth.csv"
ISIC_LESION_GROUPINGS = "ISIC2018_Task3_Training_LesionGroupings.csv"
ISIC_INPUT_DIR = "ISIC2018_Task3_Training_Input"
#: ISIC 2018 Task 3 ground-truth columns -> our class names.
ISIC_COLUMNS: dict[str, str] = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec",
                                "BKL": "bkl", "DF": "df", "VASC": "vasc"}
#: MedMNIST v2 DermaMNIST label ids (``medmnist.INFO["dermamnist"]["label"]``):
#: 0 actinic keratoses and intraepithelial carcinoma, 1 basal cell carcinoma,
#: 2 benign keratosis-like lesions, 3 dermatofibroma, 4 melanoma, 5 melanocytic nevi,
#: 6 vascular lesions. MedMNIST sorted HAM10000's ``dx`` codes alphabetically, which
#: is also our order, so the mapping is the identity; it is kept explicit so that a
#: change of either order is caught by the tests.
DERMAMNIST_LABELS: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
DERMAMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels",
                   "test_images", "test_labels")

# A plain file stem: no separators, no "..", no leading dot or dash.
_STEM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


# ---------------------------------------------------------------- shared helpers

def require_dir(data_dir: Optional[Path], source: str) -> Path:
    """``data_dir`` as a Path, or a SkinlibError when it is missing or not a folder."""
    if data_dir is None:
        raise SkinlibError(f"data_dir: source {source!r} needs a data folder (--data-dir PATH)")
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise SkinlibError(f"{data_dir}: data folder does not exist")
    if not data_dir.is_dir():
        raise SkinlibError(f"{data_dir}: is not a folder (source {source!r} needs its data folder)")
    return data_dir


def _walk(root: Path) -> Iterable[tuple[str, list[str]]]:
    """``(folder, file names)`` below ``root``, sorted, following folder links once,
    skipping hidden folders (``.cache``, ``.git``, ...)."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield folder, sorted(files)


def find_file(data_dir: Path, name: str, what: str) -> Path:
    """``data_dir/name``, else the shallowest ``name`` below ``data_dir``."""
    top = data_dir / name
    if top.is_file():
        return top
    for folder, files in _walk(data_dir):
        if name in files:
            return Path(folder) / name
    raise SkinlibError(f"{data_dir}: no {name} ({what}) in this folder or below it")


def index_images(data_dir: Path) -> dict[str, Path]:
    """Image files below ``data_dir`` by stem (``ISIC_0024306`` -> path), walked once.

    When a stem occurs twice (the Kaggle HAM10000 copy ships each image folder twice),
    the first in sorted path order wins.
    """
    index: dict[str, Path] = {}
    for folder, files in _walk(data_dir):
        for name in files:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                index.setdefault(stem, Path(folder) / name)
    return index


def image_stats(data_dir: Path) -> tuple[int, int, int]:
    """``(count, total bytes, newest mtime_ns)`` of the image files below ``data_dir``."""
    count = total = newest = 0
    for folder, files in _walk(data_dir):
        for name in files:
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith("."):
                st = os.stat(os.path.join(folder, name))
                count, total, newest = count + 1, total + st.st_size, max(newest, st.st_mtime_ns)
    return count, total, newest


def read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV (or ``.tab``) of strings; check it has rows and ``required`` columns."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         sep="\t" if path.suffix == ".tab" else ",")
    except FileNotFoundError:
        raise SkinlibError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise SkinlibError(f"{path}: CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise SkinlibError(f"{path}: cannot read CSV ({first})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SkinlibError(f"{path}: missing column(s) {', '.join(missing)} "
                           f"(found: {', '.join(df.columns) or 'none'})")
    if len(df) == 0:
        raise SkinlibError(f"{path}: CSV file has a header but no rows")
    return df


def _line(i: int) -> int:
    """CSV line of data row ``i`` (the header is line 1)."""
    return i + 2


def check_image_ids(ids: Sequence[str], path: Path, column: str) -> None:
    """Refuse ids that are not plain file stems, and duplicate ids."""
    first: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        if not _STEM.match(image_id) or ".." in image_id:
            raise SkinlibError(f"{path}: line {_line(i)}: {column} {image_id!r} is not a plain file "
                               "name (no folders, '..' or absolute paths)")
        if image_id in first:
            raise SkinlibError(f"{path}: duplicate {column} {image_id!r} (lines {_line(first[image_id])} "
                               f"and {_line(i)})")
        first[image_id] = i


def resolve_images(ids: Sequence[str], index: dict[str, Path], path: Path, data_dir: Path) -> list[Path]:
    """The file of each id, or a SkinlibError naming the first missing one."""
    missing = [(i, image_id) for i, image_id in enumerate(ids) if image_id not in index]
    if missing:
        i, image_id = missing[0]
        more = f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise SkinlibError(f"{path}: line {_line(i)}: image {image_id!r} is listed but no "
                           f"{image_id}.jpg/.png exists below {data_dir}{more}")
    return [index[image_id] for image_id in ids]


def _strings(values: Iterable[str]) -> np.ndarray:
    """A numpy unicode array (never an object array)."""
    arr = np.asarray(list(values), dtype=str)
    return arr if arr.size else np.zeros(0, dtype="<U1")


# ---------------------------------------------------------------- HAM10000

def ham_metadata_path(data_dir: Path) -> Path:
    """``HAM10000_metadata.csv`` in or below ``data_dir`` (or the Dataverse ``.tab``)."""
    data_dir = require_dir(data_dir, "ham10000")
    try:
        return find_file(data_dir, HAM_METADATA, "HAM10000 metadata")
    except SkinlibError:
        try:
            return find_file(data_dir, "HAM10000_metadata.tab", "HAM10000 metadata")
        except SkinlibError:
            raise SkinlibError(f"{data_dir}: no {HAM_METADATA} (HAM10000 metadata) in this folder "
                               "or below it") from None


def load_ham10000(data_dir: Optional[Path], image_size: int, *, seed: int = 0,
                  n_images: Optional[int] = None) -> Dataset:
    """HAM10000 (Tschandl et al. 2018): 10,015 images, 7,470 lesions, 7 classes.

    Labels come from the ``dx`` column, lesion ids from ``lesion_id``; images are
    ``<image_id>.jpg`` anywhere below ``data_dir``.

    Shape:
        images ``(N, image_size, image_size, 3)`` uint8; labels ``(N,)`` int64.

    Examples:
        >>> ds = load_ham10000(Path("data/ham10000"), 64)  # doctest: +SKIP
        >>> ds.class_counts()["nv"]  # doctest: +SKIP
        6705
    """
    data_dir = require_dir(data_dir, "ham10000")
    csv_path = ham_metadata_path(data_dir)
    df = read_csv(csv_path, ["lesion_id", "image_id", "dx"])
    ids = [s.strip() for s in df["image_id"]]
    check_image_ids(ids, csv_path, "image_id")
    labels, lesions = [], []
    for i, (image_id, dx, lesion) in enumerate(zip(ids, df["dx"], df["lesion_id"])):
        code = dx.strip().lower()
        if code not in CLASS_INDEX:
            raise SkinlibError(f"{csv_path}: line {_line(i)}: unknown diagnosis dx={dx!r} for image "
                               f"{image_id}; expected one of {', '.join(CLASSES)}")
        if not lesion.strip():
            raise SkinlibError(f"{csv_path}: line {_line(i)}: empty lesion_id for image {image_id}")
        labels.append(CLASS_INDEX[code])
        lesions.append(lesion.strip())
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    ids = [ids[k] for k in order]
    files = resolve_images(ids, index_images(data_dir), csv_path, data_dir)
    images = imaging.decode_many(files, image_size, desc="HAM10000")
    lesion_arr = _strings(lesions[k] for k in order)
    return Dataset(images=images, labels=np.asarray(labels, dtype=np.int64)[order],
                   lesion_ids=lesion_arr, image_ids=_strings(ids), source="ham10000",
                   meta={"metadata": str(csv_path), "lesion_ids": "lesion_id column of HAM10000_metadata",
                         "n_lesions": int(np.unique(lesion_arr).size)})


# ---------------------------------------------------------------- ISIC 2018 Task 3

def isic_ground_truth_path(data_dir: Path) -> Path:
    """``ISIC2018_Task3_Training_GroundTruth.csv`` in or below ``data_dir``."""
    return find_file(require_dir(data_dir, "isic2018"), ISIC_GROUND_TRUTH, "ISIC 2018 Task 3 ground truth")


def isic_groupings_path(data_dir: Path) -> Optional[Path]:
    """The Task 3 lesion-groupings CSV in or below ``data_dir``, if there is one."""
    try:
        return find_file(data_dir, ISIC_LESION_GROUPINGS, "lesion groupings")
    except SkinlibError:
        return None


def _one_hot_labels(df: pd.DataFrame, ids: Sequence[str], path: Path) -> list[int]:
    columns = list(ISIC_COLUMNS)
    values = np.zeros((len(df), len(columns)))
    for j, col in enumerate(columns):
        for i, text in enumerate(df[col]):
            try:
                values[i, j] = float(text)
            except ValueError:
                raise SkinlibError(f"{path}: line {_line(i)}: column {col} of image {ids[i]} is "
                                   f"{text!r}, not a number") from None
    labels = []
    for i, row in enumerate(values):
        hot = [columns[j] for j in np.flatnonzero(row > 0.5)]
        if len(hot) != 1:
            what = "no class" if not hot else f"{len(hot)} classes ({', '.join(hot)})"
            raise SkinlibError(f"{path}: line {_line(i)}: image {ids[i]} has {what}; "
                               "each row must have exactly one 1.0 among " + ", ".join(columns))
        labels.append(CLASS_INDEX[ISIC_COLUMNS[hot[0]]])
    return labels


def load_isic2018(data_dir: Optional[Path], image_size: int, *, seed: int = 0,
                  n_images: Optional[int] = None) -> Dataset:
    """ISIC 2018 Task 3 training set (the HAM10000 images, one-hot ground truth).

    Lesion ids come from ``ISIC2018_Task3_Training_LesionGroupings.csv`` when it is
    below ``data_dir``; otherwise each image is its own lesion and
    ``meta["lesion_ids"] == "per-image"`` (a by-lesion split then cannot keep the
    images of one lesion together: say so where results are reported).

    Shape:
        images ``(N, image_size, image_size, 3)`` uint8; labels ``(N,)`` int64.
    """
    data_dir = require_dir(data_dir, "isic2018")
    csv_path = isic_ground_truth_path(data_dir)
    df = read_csv(csv_path, ["image", *ISIC_COLUMNS])
    ids = [s.strip() for s in df["image"]]
    check_image_ids(ids, csv_path, "image")
    labels = _one_hot_labels(df, ids, csv_path)
    groupings = isic_groupings_path(data_dir)
    if groupings is not None:
        gdf = read_csv(groupings, ["image", "lesion_id"])
        lesion_of: dict[str, str] = {}
        for i, (image_id, lesion) in enumerate(zip(gdf["image"], gdf["lesion_id"])):
            if not lesion.strip():
                raise SkinlibError(f"{groupings}: line {_line(i)}: empty lesion_id for image {image_id}")
            lesion_of[image_id.strip()] = lesion.strip()
        absent = [image_id for image_id in ids if image_id not in lesion_of]
        if absent:
            raise SkinlibError(f"{groupings}: image {absent[0]} of {csv_path.name} has no lesion_id "
                               f"({len(absent)} image(s) missing)")
        lesions, lesion_note = [lesion_of[image_id] for image_id in ids], str(groupings.name)
    else:
        lesions, lesion_note = list(ids), "per-image"
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    ids = [ids[k] for k in order]
    files = resolve_images(ids, index_images(data_dir), csv_path, data_dir)
    images = imaging.decode_many(files, image_size, desc="ISIC 2018")
    lesion_arr = _strings(lesions[k] for k in order)
    return Dataset(images=images, labels=np.asarray(labels, dtype=np.int64)[order],
                   lesion_ids=lesion_arr, image_ids=_strings(ids), source="isic2018",
                   meta={"metadata": str(csv_path), "lesion_ids": lesion_note,
                         "n_lesions": int(np.unique(lesion_arr).size)})


# ---------------------------------------------------------------- DermaMNIST

def _npz_resolution(path: Path) -> int:
    """Image side from a MedMNIST file name: ``dermamnist.npz`` 28, ``dermamnist_64.npz`` 64."""
    m = re.search(r"_(\d+)$", path.stem)
    return int(m.group(1)) if m else 28


def dermamnist_path(data_dir: Path, image_size: int = 28) -> Path:
    """The DermaMNIST ``.npz``: ``data_dir`` itself, or the ``dermamnist*.npz`` in it
    (of several, the smallest resolution >= ``image_size``, else the largest)."""
    if data_dir is None:
        raise SkinlibError("data_dir: source 'dermamnist' needs a data folder or .npz file (--data-dir PATH)")
    data_dir = Path(data_dir).expanduser()
    if data_dir.is_file():
        return data_dir
    data_dir = require_dir(data_dir, "dermamnist")
    found = sorted(p for p in data_dir.glob("dermamnist*.npz") if p.is_file())
    if not found:
        found = sorted(p for folder, files in _walk(data_dir) for p in
                       (Path(folder) / f for f in files if f.startswith("dermamnist") and f.endswith(".npz")))
    if not found:
        raise SkinlibError(f"{data_dir}: no dermamnist*.npz (MedMNIST DermaMNIST) in this folder or below it")
    big_enough = [p for p in found if _npz_resolution(p) >= image_size]
    if big_enough:
        return min(big_enough, key=lambda p: (_npz_resolution(p), str(p)))
    return max(found, key=lambda p: (_npz_resolution(p), str(p)))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise SkinlibError(f"{path}: not a readable .npz file ({reason})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise SkinlibError(f"{path}: is a single .npy array, expected an .npz with keys "
                           + ", ".join(DERMAMNIST_KEYS))
    with npz:
        missing = [k for k in DERMAMNIST_KEYS if k not in npz.files]
        if missing:
            raise SkinlibError(f"{path}: missing key(s) {', '.join(missing)} "
                               f"(found: {', '.join(npz.files) or 'none'})")
        arrays = {}
        for key in DERMAMNIST_KEYS:
            try:
                arrays[key] = npz[key]
            except ValueError:
                raise SkinlibError(f"{path}: key {key} holds an object array (pickled data), "
                                   "which is refused (allow_pickle=False)") from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise SkinlibError(f"{path}: key {key} cannot be read ({exc})") from None
    return arrays


def _resize_square(images: np.ndarray, size: int, desc: str) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, size, size, 3)`` with :func:`imaging.square_resize`."""
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images)
    from tqdm.auto import tqdm

    from skinlib.paths import show_progress

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i in tqdm(range(len(images)), desc=desc, unit="img", disable=None if show_progress() else True):
        out[i] = np.asarray(imaging.square_resize(Image.fromarray(images[i]), size))
    return out


def load_dermamnist(data_dir: Optional[Path], image_size: int, *, seed: int = 0,
                    n_images: Optional[int] = None) -> Dataset:
    """MedMNIST v2 DermaMNIST (Yang et al. 2023): HAM10000 at 28 (or 64/128/224) px.

    Keeps MedMNIST's own train/val/test split in ``predefined_split``. MedMNIST has
    no lesion ids, so each image is its own lesion (``meta["lesion_ids"]`` says so);
    label ids map to our classes through :data:`DERMAMNIST_LABELS`.

    Shape:
        images ``(N, image_size, image_size, 3)`` uint8 (resized with Pillow Lanczos
        from the stored size); labels ``(N,)`` int64.
    """
    path = dermamnist_path(data_dir, image_size)
    arrays = _read_npz(path)
    images, labels, ids, split = [], [], [], []
    for part in ("train", "val", "test"):
        x, y = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if x.dtype != np.uint8:
            raise SkinlibError(f"{path}: key {part}_images has dtype {x.dtype}, expected uint8")
        if x.ndim == 3:
            x = np.repeat(x[..., None], 3, axis=-1)
        elif x.ndim == 4 and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise SkinlibError(f"{path}: key {part}_images has shape {arrays[f'{part}_images'].shape}, "
                               "expected (N, H, W, 3) or (N, H, W)")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise SkinlibError(f"{path}: key {part}_labels has shape {arrays[f'{part}_labels'].shape} "
                               f"and dtype {y.dtype}, expected {len(x)} integer labels")
        bad = np.flatnonzero((y < 0) | (y >= len(DERMAMNIST_LABELS)))
        if bad.size:
            raise SkinlibError(f"{path}: key {part}_labels: unknown label {int(y[bad[0]])} at index "
                               f"{int(bad[0])}; expected 0..{len(DERMAMNIST_LABELS) - 1}")
        images.append(_resize_square(x, image_size, f"DermaMNIST {part}"))
        labels.append(np.asarray([CLASS_INDEX[DERMAMNIST_LABELS[v]] for v in y], dtype=np.int64))
        ids.extend(f"{part}_{i:05d}" for i in range(len(x)))
        split.extend([part] * len(x))
    all_ids = _strings(ids)
    return Dataset(images=np.concatenate(images), labels=np.concatenate(labels),
                   lesion_ids=all_ids.copy(), image_ids=all_ids, source="dermamnist",
                   predefined_split=_strings(split),
                   meta={"metadata": str(path), "n_lesions": int(all_ids.size),
                         "lesion_ids": "per-image (MedMNIST ships no lesion ids)"})


# ---------------------------------------------------------------- fingerprints

def source_files(source: str, data_dir: Path, image_size: int = 28) -> list[Path]:
    """The metadata files whose change must invalidate a cached decode of ``source``."""
    if source == "ham10000":
        return [ham_metadata_path(data_dir)]
    if source == "isic2018":
        files = [isic_ground_truth_path(data_dir)]
        groupings = isic_groupings_path(Path(data_dir))
        return files + ([groupings] if groupings is not None else [])
    if source == "dermamnist":
        return [dermamnist_path(data_dir, image_size)]
    return []
