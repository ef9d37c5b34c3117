"""The grid's local speed-up: ``snakemake --cores N`` against ``skinlib run`` + ``skinlib book``.

One profile, one seed, every page and the book, measured side by side in one run on one
machine. Each side starts from nothing: its own fresh results and cache folders (under
``--work``), so every model trains in both. ``skinlib run`` executes the pages one after
another; Snakemake runs the same page jobs (``skinlib page``) with the independent ones
(experiments 1, 2.1 and 2.2 after experiment 0, for instance) at once on ``--cores``
cores, then builds the book (its ``book`` rule). The ``sequential`` row is what
``make book`` does after its install. ``identical``: every results CSV of the two sides
is byte-identical. Written to ``results/benchmarks/grid.csv`` (rows of one profile
replaced, others kept).

Usage::

    python benchmarks/bench_grid.py --profile default            # about 35 minutes on 2 cores
    python benchmarks/bench_grid.py --profile smoke --cores 2    # a few minutes
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from results_csv import write_rows

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "results" / "benchmarks"
PYTHON = sys.executable


def _timed(cmd: list[str], env: dict, log: Path) -> float:
    """Run ``cmd`` with its output in ``log``; its wall time in seconds (exit 1 on failure)."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"bench_grid: {' '.join(cmd[:4])} ... failed with exit {rc}; see {log}")
    return wall


def _fresh(folder: Path) -> dict:
    """Environment for one side: its own empty results and cache folders."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "snakemake").mkdir(parents=True)
    return dict(os.environ, SKINLIB_RESULTS_DIR=str(folder / "results"), SKINLIB_CACHE_DIR=str(folder / "cache"),
                PYTHONUNBUFFERED="1")


def _csvs(results: Path) -> dict[str, Path]:
    return {str(p.relative_to(results)): p for p in sorted(results.rglob("*.csv")) if ".grid" not in p.parts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--data-dir", default=None, help="the dataset folder (else the profile's or SKINLIB_DATA_DIR)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Snakemake's --cores (default: all)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_grid"), help="scratch folder (emptied)")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    load = os.getloadavg()[0]

    seq_dir, grid_dir = args.work / "sequential", args.work / "snakemake"
    env = _fresh(seq_dir)
    seq = _timed([PYTHON, "-m", "skinlib", "run", "--profile", args.profile, *data], env, args.work / "sequential.log")
    seq += _timed([PYTHON, "-m", "skinlib", "book", "--profile", args.profile], env, args.work / "sequential-book.log")
    print(f"skinlib run + skinlib book: {seq:.0f} s", file=sys.stderr)

    env = _fresh(grid_dir)
    config = [f"profile={args.profile}", "seeds=[0]"] + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
    grid = _timed([PYTHON, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
                   "--directory", str(grid_dir / "snakemake"), "--cores", str(args.cores), "--config", *config],
                  env, args.work / "snakemake.log")
    print(f"snakemake --cores {args.cores}: {grid:.0f} s", file=sys.stderr)

    a, b = _csvs(seq_dir / "results" / args.profile), _csvs(grid_dir / "results" / args.profile)
    identical = a.keys() == b.keys() and all(filecmp.cmp(a[k], b[k], shallow=False) for k in a)
    common = {"cores_machine": os.cpu_count(), "load_avg_before": round(load, 2), "csvs": len(a),
              "identical": identical}
    rows = [{"profile": args.profile, "method": "skinlib_run_then_book", "jobs_at_once": 1, "wall_s": round(seq, 1),
             "speedup": 1.0, **common},
            {"profile": args.profile, "method": f"snakemake_cores_{args.cores}", "jobs_at_once": args.cores,
             "wall_s": round(grid, 1), "speedup": round(seq / grid, 3), **common}]
    write_rows(args.out_dir / "grid.csv", rows, "profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
