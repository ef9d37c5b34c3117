"""Low-level transformation throughput: a plain one-process Pillow loop against the parallel LLT.

Measured side by side in one run, on the same images (the profile's dataset at its image
size, ``--data-dir`` for the real images; ``--generated`` for generated colour images):

- ``pillow_loop``: the obvious implementation, image by image in one thread
  (``Image.fromarray -> save(WEBP) -> Image.open -> flip``), as a notebook would write it;
- ``llt_n<k>``: :func:`skinlib.defences.apply_llt` with ``n_jobs=k`` threads (Pillow's WebP
  encoder and decoder release the GIL), for k = 1, 2 and every core.

Outputs are checked identical. Repeats are interleaved so that load from other processes
hits every method alike; the median wall time is reported, with images/s and the ratio
to ``pillow_loop`` (target: >= 1.8 with 2 threads on 2 free cores). ``load_avg`` (1 min)
and ``ceiling_2proc`` (the speedup of two busy pure-Python processes over one, measured
between repeats) are recorded: on a machine shared with other jobs the ratio is capped
by the cores that are actually free, and the ceiling says what that cap was.

Usage::

    python benchmarks/bench_llt.py --profile default
    python benchmarks/bench_llt.py --profile ham10000 --data-dir ../shared/data/ham10000
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from results_csv import write_rows

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks" / "llt.csv"


def pillow_loop(u8: np.ndarray, quality: int) -> np.ndarray:
    """Reference: the plain loop (horizontal flip)."""
    from PIL import Image

    out = np.empty_like(u8)
    for i, im in enumerate(u8):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="WEBP", quality=quality)
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))[:, ::-1]
    return out


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def parallel_ceiling(workers: int, n: int = 2_000_000) -> float:
    """Speedup of ``workers`` busy pure-Python processes over running their work serially.

    The most any parallel method can gain on this machine right now (about ``workers`` on
    free cores; about 1 when other jobs hold the cores).
    """
    from concurrent.futures import ProcessPoolExecutor

    t = time.perf_counter()
    for _ in range(workers):
        _spin(n)
    serial = time.perf_counter() - t
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_spin, [10] * workers))
        t = time.perf_counter()
        list(pool.map(_spin, [n] * workers))
        par = time.perf_counter() - t
    return serial / par


def load_images(profile_name: str, n: int, size: int | None, data_dir: str | None,
                generated: bool) -> tuple[np.ndarray, str]:
    """``n`` uint8 images from the profile's dataset, or generated ones when asked for."""
    if generated:
        from skinlib.tf_backend import toy_data

        s = size or 64
        x, _ = toy_data(n, s, seed=0)
        return np.rint(x * 255).astype(np.uint8), f"toy:{s}px"
    from skinlib.data import load_dataset
    from skinlib.errors import SkinlibError
    from skinlib.profiles import load_profile

    try:
        prof = load_profile(profile_name, data_dir=data_dir)
        s = size or prof.data.image_size
        ds = load_dataset(prof.data.source, prof.data.data_dir, s, seed=prof.seed,
                          n_images=n if prof.data.source == "synthetic" else None)
    except SkinlibError as exc:  # never a silent stand-in: its rows would carry the profile's name
        raise SystemExit(f"error: {exc} (or run with --generated)")
    return ds.images[:n], f"{prof.data.source}:{s}px"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--data-dir", default=None, help="the dataset folder (else the profile's or SKINLIB_DATA_DIR)")
    ap.add_argument("--generated", action="store_true", help="generated colour images instead of the profile's")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=None, help="image size (default: the profile's)")
    ap.add_argument("--quality", type=int, default=None, help="WebP quality (default: the profile's, else 75)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from skinlib.defences import apply_llt

    u8, source = load_images(args.profile, args.images, args.size, args.data_dir, args.generated)
    quality = args.quality
    if quality is None:
        from skinlib.profiles import load_profile

        quality = 75 if args.generated else load_profile(args.profile, data_dir=args.data_dir).llt.quality
    cores = os.cpu_count() or 1
    methods = {"pillow_loop": lambda: pillow_loop(u8, quality)}
    for k in sorted({1, 2, cores}):
        methods[f"llt_n{k}"] = (lambda k=k: apply_llt(u8, quality, "horizontal", n_jobs=k))

    ref = methods["pillow_loop"]()
    identical = {name: bool(np.array_equal(fn(), ref)) for name, fn in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    loads = []
    ceilings = []
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
        ceilings.append(parallel_ceiling(2))

    base = statistics.median(times["pillow_loop"])
    rows = []
    for name in methods:
        wall = statistics.median(times[name])
        rows.append({"method": name, "n_jobs": 1 if name == "pillow_loop" else int(name.split("n")[-1]),
                     "images": len(u8), "image_size": u8.shape[1], "source": source, "quality": quality,
                     "wall_s": round(wall, 4), "images_per_s": round(len(u8) / wall, 1),
                     "ratio": round(base / wall, 3), "identical": identical[name], "cores": cores,
                     "load_avg": round(statistics.median(loads), 2),
                     "ceiling_2proc": round(statistics.median(ceilings), 2), "repeats": args.repeats})
    write_rows(args.out, [{"profile": args.profile, **r} for r in rows], "profile")
    for r in rows:
        print(f"{r['method']:12s} {r['images_per_s']:9.1f} img/s  ratio {r['ratio']:.2f}  identical {r['identical']}")
    print(f"load average {rows[0]['load_avg']} on {cores} cores; two busy processes run "
          f"{rows[0]['ceiling_2proc']:.2f}x faster than one (the ceiling here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
