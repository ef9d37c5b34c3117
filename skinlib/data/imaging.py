"""Image decoding: any file Pillow reads -> a square ``uint8`` RGB array.

Every real source goes through :func:`load_square_rgb` (one file) or
:func:`decode_many` (a list, with a progress bar and a thread pool), so that all
sources crop and resize the same way:

1. open with Pillow; for JPEG, ask the decoder for a reduced-size draft (DCT
   scaling by 1/2, 1/4 or 1/8) that stays at least twice the target size, which
   makes downscaling large dermoscopy pictures several times faster;
2. decode fully (``img.load()``): corrupt, truncated or empty files fail here;
3. apply the EXIF orientation, then convert to RGB: palette, grayscale
   (``1``/``L``), CMYK, YCbCr, 16- and 32-bit integer (``I;16*``, ``I``) and float
   (``F``) modes are converted; modes with alpha (``RGBA``, ``LA``, ``PA``, ``P``
   with transparency) are composited onto white;
4. centre-crop to a square (side = shorter side), then resize with Lanczos
   (``reducing_gap=2``).
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from skinlib.errors import SkinlibError
from skinlib.paths import show_progress

#: Colour that transparent pixels are composited onto.
BACKGROUND = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError,
                  Image.DecompressionBombError, MemoryError)


def _sixteen_bit_to_l(img: Image.Image) -> Image.Image:
    """Integer or float single-channel image -> 8-bit ``L``, scaled, not clipped.

    ``I;16*`` spans 0..65535 and is divided by 257. ``I`` (32-bit, how Pillow opens
    16-bit PNGs and TIFFs) is treated the same way when its values fit 0..65535,
    else min-max scaled. ``F`` is taken as 0..1 when it fits that range, else as 0..255.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = arr.astype(np.float64) / 257.0
    elif img.mode == "I":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            out = arr.astype(np.float64) / 257.0
        else:
            out = (arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1))
    else:  # "F"
        arr = np.nan_to_num(arr.astype(np.float64))
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            arr = arr * 255.0
        out = arr
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as an 8-bit RGB image (see the module docstring for each mode)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _sixteen_bit_to_l(img).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def square_resize(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop ``img`` to a square (shorter side) and resize it to ``size`` px."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    if (w, h) != (side, side):
        # Crop first: resize(box=...) would let the filter read pixels outside the crop.
        img = img.crop(box)
    if side == size:
        return img
    return img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)


def load_square_rgb(path: Path, size: int) -> np.ndarray:
    """Decode one image file into a ``(size, size, 3)`` ``uint8`` RGB array.

    Raises:
        SkinlibError: the file is missing, empty, not an image, corrupt or truncated,
            or in a mode that cannot be converted to RGB (one line, naming the file).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                # DCT-domain downscaling; keeps both sides >= 2 * size.
                img.draft(img.mode, (2 * size, 2 * size))
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
                img = ImageOps.exif_transpose(img)
            img = to_rgb(img)
            img = square_resize(img, size)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise SkinlibError(f"{path}: image file not found") from None
    except _DECODE_ERRORS as exc:
        what = "empty file (0 bytes)" if path.is_file() and path.stat().st_size == 0 else \
            " ".join(str(exc).split()) or type(exc).__name__
        raise SkinlibError(f"{path}: cannot decode image ({what})") from None
    if arr.shape != (size, size, 3):  # pragma: no cover - guards against Pillow surprises
        raise SkinlibError(f"{path}: decoded to shape {arr.shape}, expected {(size, size, 3)}")
    return arr


def default_workers() -> int:
    """Threads for :func:`decode_many`: ``SKINLIB_DECODE_WORKERS`` or the CPU count (max 8)."""
    env = os.environ.get("SKINLIB_DECODE_WORKERS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise SkinlibError(f"SKINLIB_DECODE_WORKERS: expected an integer, got {env!r}") from None
        if n < 1:
            raise SkinlibError(f"SKINLIB_DECODE_WORKERS: must be at least 1, got {n}")
        return n
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))


def decode_many(paths: Sequence[Path], size: int, desc: str = "decoding",
                workers: Optional[int] = None, progress: Optional[bool] = None) -> np.ndarray:
    """Decode ``paths`` in order into one ``(N, size, size, 3)`` ``uint8`` array.

    Pillow releases the GIL while it decodes and resamples, so a thread pool
    (``workers`` threads, default :func:`default_workers`) uses several cores without
    copying arrays between processes. ``progress=None`` shows the tqdm bar only on
    a terminal. The first bad file stops the work and raises its
    :class:`~skinlib.errors.SkinlibError`.
    """
    paths = list(paths)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    if not paths:
        return out
    n_workers = default_workers() if workers is None else max(1, int(workers))
    disable = (None if show_progress() else True) if progress is None else not progress
    with tqdm(total=len(paths), desc=desc, unit="img", disable=disable) as bar:
        if n_workers == 1:
            for i, p in enumerate(paths):
                out[i] = load_square_rgb(p, size)
                bar.update(1)
            return out

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                out[i] = load_square_rgb(paths[i], size)

        chunk = max(1, min(64, len(paths) // (4 * n_workers) or 1))
        pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="skinlib-decode")
        try:
            pending = {pool.submit(work, lo, min(lo + chunk, len(paths))): min(chunk, len(paths) - lo)
                       for lo in range(0, len(paths), chunk)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    fut.result()  # re-raises the worker's SkinlibError
                    bar.update(pending.pop(fut))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return out
