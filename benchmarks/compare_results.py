"""Does a rerun reproduce a published run? The results tables of two folders, side by side.

For each experiment table (``<experiment>.csv`` of :data:`skinlib.results.EXPERIMENTS`)
present in both folders: ``identical`` when the files are equal byte for byte, else how
many values differ (:func:`skinlib.results.changed_values`), the largest change, and
the accuracy rows that moved most. Tables in only one folder are named.

Usage::

    python benchmarks/compare_results.py results/ham10000 <rerun results>/ham10000 [--rows 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def compare(before: Path, after: Path, rows: int) -> list[str]:
    """One block of lines per experiment table (see the module docstring)."""
    from skinlib.results import EXPERIMENTS, changed_values, read_results

    lines = []
    for experiment in EXPERIMENTS:
        a, b = before / f"{experiment}.csv", after / f"{experiment}.csv"
        if not a.is_file() or not b.is_file():
            if a.is_file() or b.is_file():
                lines.append(f"{experiment}: only in {a.parent if a.is_file() else b.parent}")
            continue
        if a.read_bytes() == b.read_bytes():
            lines.append(f"{experiment}: identical")
            continue
        ta, tb = read_results(a), read_results(b)
        moved = changed_values(ta, tb)
        largest = moved["change"].abs().max()
        lines.append(f"{experiment}: {len(moved)} of {len(ta)} values differ, largest change {largest:.4f}"
                     + (f", {int((moved['only_in'] != '').sum())} rows in one table only"
                        if (moved["only_in"] != "").any() else ""))
        acc = moved[moved["metric"] == "accuracy"].sort_values("change", key=lambda c: c.abs(), ascending=False)
        cols = ["model", "attack", "defence", "setting", "param", "value_before", "value_after", "change"]
        if not acc.empty:
            lines += ["    " + line for line in acc[cols].head(rows).to_string(index=False).splitlines()]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="results folder of one run (e.g. results/ham10000)")
    ap.add_argument("after", type=Path, help="results folder of the other run")
    ap.add_argument("--rows", type=int, default=5, help="accuracy rows shown per table")
    args = ap.parse_args(argv)
    from skinlib.errors import SkinlibError

    for folder in (args.before, args.after):
        if not folder.is_dir():
            print(f"error: {folder}: no such results folder", file=sys.stderr)
            return 2
    try:
        lines = compare(args.before, args.after, args.rows)
    except SkinlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 160):
        print("\n".join(lines) if lines else "no experiment table in both folders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
