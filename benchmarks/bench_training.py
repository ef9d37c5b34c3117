"""Training throughput: the full input pipeline (tf.data + fit) against the bare train step.

Measured side by side in one run, on the same model and the same synthetic batches:

- ``bare``: the compiled train step (``model.train_on_batch``) on one pre-made float32
  batch already in memory: the ceiling, no input pipeline at all;
- ``pipeline``: ``skinlib.models._EpochData`` (tf.data over the uint8 images: seeded
  shuffle, D4 augmentation, per-batch float conversion, prefetch) feeding ``model.fit``;
- ``train_model``: :func:`skinlib.models.train_model` end to end, one call of 3 epochs from
  scratch, per epoch (pipeline + tracing the train/predict functions once + validation on
  10% more images + a checkpoint per epoch).

Repeats are interleaved (bare, pipeline, train_model, bare, ...) and the fastest of each
method is reported (as ``timeit`` does): on a shared machine, load from other processes
only ever adds time, so the minimum is the best estimate of each method's own cost. ``ratio`` is images/s over
the bare images/s (target: pipeline >= 0.90).

Usage::

    python benchmarks/bench_training.py --model resnet_small --size 64
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results_csv import write_rows

from skinlib.split import class_weights

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks" / "training.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet_small")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=2048, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--augment", type=int, default=1)
    ap.add_argument("--jit", type=int, default=0, help="XLA (Keras ignores it under op determinism)")
    ap.add_argument("--deterministic", type=int, default=1, help="tf op determinism (as train_model)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    from skinlib import models as M
    from skinlib.profiles import TrainConfig

    if args.deterministic:
        M.set_determinism(0)
    else:
        keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, s, bs = args.images, args.size, args.batch_size
    x = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    y = rng.integers(0, 7, n).astype(np.int32)
    xv = rng.integers(0, 256, (n // 10, s, s, 3), dtype=np.uint8)
    yv = rng.integers(0, 7, n // 10).astype(np.int32)
    steps = -(-n // bs)
    FULL_EPOCHS = 3
    cfg = TrainConfig(epochs=1, batch_size=bs, learning_rate=1e-3, augment=bool(args.augment),
                      jit_compile=bool(args.jit))

    model = M.build_model(args.model, s)
    M._compile(model, cfg.learning_rate, 10_000, cfg.jit_compile and not args.deterministic)
    weights = class_weights(y)
    data = M._EpochData(x, y, bs, seed=0, augment=cfg.augment, class_weight=weights)
    xb, yb, wb = (t.numpy() for t in next(iter(data.dataset(0, 1))))

    def bare() -> float:
        t = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(xb, yb, sample_weight=wb)
        return time.perf_counter() - t

    def pipeline() -> float:
        t = time.perf_counter()
        model.fit(data.dataset(0, 1), epochs=1, steps_per_epoch=data.steps, verbose=0, shuffle=False)
        return time.perf_counter() - t

    def full() -> float:
        # one call from scratch, for FULL_EPOCHS epochs: includes compiling/tracing the
        # train and predict functions once, as every real call does
        m = M.build_model(args.model, s)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            M.train_model(m, (x, y), (xv, yv), cfg, tmp, verbose=0, epochs=FULL_EPOCHS,
                          deterministic=bool(args.deterministic))
            return (time.perf_counter() - t) / FULL_EPOCHS

    bare(), pipeline()  # trace and warm up
    methods = {"bare": bare, "pipeline": pipeline, "train_model": full}
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(fn())
    images = n
    rows = []
    base = images / min(times["bare"])
    for name, ts in times.items():
        wall = min(ts)
        rows.append({"method": name, "model": args.model, "image_size": s, "images": images,
                     "wall_s": round(wall, 3), "images_per_s": round(images / wall, 1),
                     "ratio": round(images / wall / base, 3)})
    write_rows(args.out, rows, "model")
    print(f"{args.model} {s}px batch {bs}, {images} images, determinism={bool(args.deterministic)}, "
          f"jit={bool(args.jit)}, tf {tf.__version__}, keras {keras.__version__}, best of {args.repeats}")
    for r in rows:
        print(f"  {r['method']:<12} {r['wall_s']:8.2f} s {r['images_per_s']:9.1f} img/s  ratio {r['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
