"""Decode cache: real datasets are decoded once per (source, folder, size).

The decoded arrays are kept as an uncompressed ``.npz`` (images, labels, lesion and
image ids as unicode arrays, the predefined split when there is one, ``meta`` as a
JSON string; never object arrays, read back with ``allow_pickle=False``) under
``<cache_dir>/datasets/``. ``cache_dir`` defaults to ``$SKINLIB_CACHE_DIR`` or
``./.cache/skinlib``.

The file name carries a hash of: the source, the resolved data folder, the image
size, the size and modification time of the metadata files (CSV / npz), the number,
total bytes and newest modification time of the image files, the cache format
version and the Pillow version (resampling can change between releases). Editing the
metadata, or adding, removing or replacing images, therefore decodes again. Files
are written to a temporary file in the same folder and moved into place with
``os.replace``, so an interrupted run never leaves a half-written cache behind; an
unreadable cache file is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import PIL

from skinlib.data import Dataset, DatasetInfo
from skinlib.errors import SkinlibError

#: Bump when the decoding or the file layout changes: old caches are then ignored.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$SKINLIB_CACHE_DIR`` or ``./.cache/skinlib``."""
    return Path(os.environ.get("SKINLIB_CACHE_DIR", Path.cwd() / ".cache" / "skinlib"))


def fingerprint(source: str, data_dir: Path, image_size: int) -> dict:
    """What identifies the decoded content of ``data_dir`` (see the module docstring)."""
    from skinlib.data import sources

    files = sources.source_files(source, data_dir, image_size)
    meta = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    n, total, newest = sources.image_stats(data_dir) if data_dir.is_dir() else (0, 0, 0)
    return {"metadata": meta, "images": [n, total, newest]}


def cache_path(info: DatasetInfo, data_dir: Path, image_size: int, cache_dir: Optional[Path] = None) -> Path:
    """The cache file for ``info`` at ``image_size`` px of ``data_dir``."""
    resolved = Path(data_dir).expanduser().resolve()
    key = {"source": info.name, "data_dir": str(resolved), "image_size": int(image_size),
           "fingerprint": fingerprint(info.name, resolved, image_size),
           "version": CACHE_VERSION, "pillow": PIL.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "datasets" / f"{info.name}-{image_size}px-{digest}.npz"


def _to_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    arrays = {"images": ds.images, "labels": ds.labels.astype(np.int64),
              "lesion_ids": np.asarray(ds.lesion_ids, dtype=str),
              "image_ids": np.asarray(ds.image_ids, dtype=str),
              "source": np.asarray(ds.source, dtype=str),
              "meta_json": np.asarray(json.dumps(ds.meta, sort_keys=True, default=str), dtype=str)}
    if ds.predefined_split is not None:
        arrays["predefined_split"] = np.asarray(ds.predefined_split, dtype=str)
    return arrays


def _write(path: Path, ds: Dataset) -> None:
    """Write ``ds`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **_to_arrays(ds))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read(path: Path) -> Dataset:
    """Read a cache file; any problem raises (the caller rebuilds)."""
    with np.load(path, allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
        lesion_ids, image_ids = npz["lesion_ids"], npz["image_ids"]
        split = npz["predefined_split"] if "predefined_split" in npz.files else None
        source, meta = str(npz["source"]), json.loads(str(npz["meta_json"]))
    n = len(labels)
    if (images.ndim != 4 or images.dtype != np.uint8 or len(images) != n or len(lesion_ids) != n
            or len(image_ids) != n or (split is not None and len(split) != n)):
        raise ValueError("inconsistent arrays")
    return Dataset(images, labels, lesion_ids, image_ids, source, split, meta)


def cached_load(info: DatasetInfo, data_dir: Path, image_size: int,
                cache_dir: Optional[Path] = None) -> Dataset:
    """``info.loader(data_dir, image_size)``, decoded once and then read from the cache.

    ``meta["cache_file"]`` names the cache file and ``meta["from_cache"]`` says whether
    this call read it. When the cache folder cannot be written the dataset is still
    returned (with a warning).

    Raises:
        SkinlibError: ``data_dir`` does not exist, or the loader refused the data.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise SkinlibError(f"{data_dir}: data folder does not exist (source {info.name!r})")
    path = cache_path(info, data_dir, image_size, cache_dir)
    if path.is_file():
        try:
            ds = _read(path)
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            warnings.warn(f"{path}: unreadable decode cache ({type(exc).__name__}: {exc}); decoding again",
                          stacklevel=2)
        else:
            if ds.images.shape[1:] == (image_size, image_size, 3):
                ds.meta.update(cache_file=str(path), from_cache=True)
                return ds
    ds = info.loader(data_dir, image_size)
    try:
        _write(path, ds)
    except OSError as exc:
        warnings.warn(f"{path}: cannot write the decode cache ({exc}); continuing without it", stacklevel=2)
    ds.meta.update(cache_file=str(path), from_cache=False)
    return ds
