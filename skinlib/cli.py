"""The ``skinlib`` command line (see DESIGN.md, "Command line").

- ``skinlib run --profile NAME [--data-dir PATH] [--only EXP ...] [--seeds K ...] [--force]``
- ``skinlib page --profile NAME [--seed K] PAGE``: one page of one seed (the Snakemake jobs)
- ``skinlib aggregate --profile NAME --seeds K ...``: the table over seeds (``seeds.csv``)
- ``skinlib data check --source SOURCE --data-dir PATH [--size PX]``
- ``skinlib book --profile NAME [--stage-only]``: build a profile's book into ``book/_build/NAME/``
  (the published book, the committed ``ham10000`` run, is ``jupyter-book build book/``).

``skinlib run`` writes only into the results (and cache) folders: it never changes ``book/``.
Folders belong to the project the command runs in (see :mod:`skinlib.paths`).

Bad input prints one line on stderr naming the file or key, and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from skinlib.errors import SkinlibError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the experiments of a profile")
    run.add_argument("--profile", required=True, help="profile name (profiles/NAME.yml) or a .yml path")
    run.add_argument("--data-dir", default=None, help="data folder (else SKINLIB_DATA_DIR or the profile's)")
    run.add_argument("--only", nargs="+", metavar="EXP", help="run only these experiments/pages")
    run.add_argument("--force", action="store_true", help="recompute every step instead of reusing the cache")
    # accepted for compatibility: `skinlib run` no longer writes into book/ (see `skinlib book`)
    run.add_argument("--no-publish", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--seeds", nargs="+", metavar="K",
                     help="training seeds to run (default: the profile's seeds); the first seed of the profile "
                          "writes results/NAME/, seed K results/NAME/seed-K/")
    run.add_argument("--verbose", action="store_true", help="echo the notebooks' cell output")

    page = sub.add_parser("page", help="execute one page of one seed (what the Snakemake jobs run)")
    page.add_argument("page", help="page id (data, exp0_classifier, ..., summary)")
    page.add_argument("--profile", required=True)
    page.add_argument("--seed", default=None, help="training seed (default: the profile's first seed)")
    page.add_argument("--data-dir", default=None)
    page.add_argument("--verbose", action="store_true", help="echo the notebook's cell output")

    agg = sub.add_parser("aggregate", help="write results/NAME/seeds.csv: each result over seeds")
    agg.add_argument("--profile", required=True)
    agg.add_argument("--seeds", nargs="+", metavar="K", default=None, help="default: the profile's seeds")

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate a dataset and print its counts and split")
    check.add_argument("--source", required=True)
    check.add_argument("--data-dir", default=None)
    check.add_argument("--size", type=int, default=64, help="decode size in px (default 64)")
    check.add_argument("--split", default="by_lesion", choices=["by_lesion", "by_image"])
    check.add_argument("--seed", type=int, default=0)

    book = sub.add_parser("book", help="build a profile's book into book/_build/NAME/ (git-ignored)")
    book.add_argument("--profile", required=True, help="profile name (its results/NAME/ are shown)")
    book.add_argument("--stage-only", action="store_true",
                      help="only stage the sources (book/_build/NAME/src), do not run jupyter-book")
    return parser


def data_check(source: str, data_dir: Optional[str], size: int = 64, split: str = "by_lesion",
               seed: int = 0) -> str:
    """Load ``source`` and describe it: counts per class, lesions, sizes, split sizes."""
    import numpy as np

    from skinlib.data import get_source, load_dataset
    from skinlib.labels import CLASSES, GROUPINGS
    from skinlib.split import split_dataset

    info = get_source(source)
    if info.needs_data_dir and data_dir is None:
        data_dir = os.environ.get("SKINLIB_DATA_DIR")
    ds = load_dataset(source, data_dir, size, seed=seed)
    counts = ds.class_counts()
    lines = [f"source: {source} ({info.description})", f"license: {info.license}",
             f"images: {len(ds)}   lesions: {len(np.unique(ds.lesion_ids))}   "
             f"decoded size: {ds.images.shape[1]}x{ds.images.shape[2]} px"]
    if info.needs_data_dir:
        lines.append(f"original image sizes: {_original_sizes(Path(data_dir), ds.image_ids)}")
    lines.append("class counts:")
    for c in CLASSES:
        lines.append(f"  {c:6s} {counts[c]:6d}  ({counts[c] / max(len(ds), 1):6.1%})")
    for name, positive in GROUPINGS.items():
        n_pos = sum(counts[c] for c in positive)
        lines.append(f"grouping {name}: positive {sorted(positive)} = {n_pos} ({n_pos / max(len(ds), 1):.1%})")
    splits = split_dataset(ds.labels, ds.lesion_ids, by=split, seed=seed, predefined=ds.predefined_split)
    sizes = "  ".join(f"{k} {len(v)} ({len(v) / len(ds):.1%})" for k, v in splits.items())
    lines.append(f"split ({split}, seed {seed}): {sizes}")
    sets = {k: set(ds.lesion_ids[v]) for k, v in splits.items()}
    shared = (sets["train"] & sets["val"]) | (sets["train"] & sets["test"]) | (sets["val"] & sets["test"])
    lines.append(f"lesions in more than one split: {len(shared)}")
    return "\n".join(lines)


def _original_sizes(data_dir: Path, image_ids) -> str:
    """The on-disk sizes of the dataset's image files (read from their headers)."""
    from collections import Counter

    from PIL import Image

    from skinlib.data.sources import index_images

    index = index_images(data_dir) if data_dir.is_dir() else {}
    sizes: Counter = Counter()
    for image_id in image_ids:
        path = index.get(str(image_id))
        if path is not None:
            with Image.open(path) as img:
                sizes[img.size] += 1
    if not sizes:
        return "n/a (arrays, no image files)"
    return ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.most_common(5))


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr muted: its C++ start-up lines (CUDA
    probing, absl) ignore TF_CPP_MIN_LOG_LEVEL and would bury one-line error messages."""
    if "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "profile", None) is not None:
            from skinlib.profiles import existing_profile_path

            existing_profile_path(args.profile)  # before the slow import: a typo fails at once
        _import_tensorflow_quietly()
        if args.command == "run":
            from skinlib.pipeline import run

            prov = run(args.profile, data_dir=args.data_dir, only=args.only, seeds=args.seeds, force=args.force,
                       log_output=args.verbose)
            failed = [f"{p} (seed {seed})" for seed, pages in prov.get("seed_runs", {}).items()
                      for p, status in pages.items() if status == "failed"]
            if failed:
                print(f"skinlib: failed: {', '.join(failed)} (failed notebooks in the results folders' failed/)",
                      file=sys.stderr)
                return 1
            return 0
        if args.command == "page":
            from skinlib.pipeline import _check_data, check_seeds, execute_one, page_needs
            from skinlib.profiles import load_profile

            page_needs(args.page)
            profile = load_profile(args.profile, data_dir=args.data_dir)
            _check_data(profile)
            seed = check_seeds([args.seed], "--seed")[0] if args.seed is not None else None
            record = execute_one(profile, args.page, seed, log_output=args.verbose)
            return 0 if record["status"] == "ok" else 1
        if args.command == "aggregate":
            from skinlib.pipeline import aggregate_seeds, check_seeds
            from skinlib.profiles import load_profile

            profile = load_profile(args.profile)
            seeds = check_seeds(args.seeds) if args.seeds else profile.seeds
            print(aggregate_seeds(profile, seeds))
            return 0
        if args.command == "data":
            print(data_check(args.source, args.data_dir, args.size, args.split, args.seed))
            return 0
        if args.command == "book":
            from skinlib.pipeline import build_book
            from skinlib.profiles import load_profile

            name = load_profile(args.profile).name
            built = build_book(name, build=not args.stage_only)
            if built["returncode"] is None:
                print(f"book of profile {name}: sources staged in {built['src']}")
                return 0
            if built["returncode"] != 0:
                print(f"skinlib: the book of profile {name} did not build (jupyter-book exit code "
                      f"{built['returncode']}); see {built['log']}", file=sys.stderr)
                return 1
            print(f"book of profile {name}: open {built['html'] / 'index.html'}")
            return 0
    except SkinlibError as exc:
        print(f"skinlib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skinlib: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
