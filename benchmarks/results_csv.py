"""One writer for the benchmark tables in ``results/benchmarks/``.

A table keeps the rows of several runs side by side (the attack and LLT tables one set
per profile, the training table one per model): a new run replaces only the rows whose
``by`` column has its own value and keeps the others. The file is written to a temporary
name and renamed into place, so an interrupted benchmark never leaves a half-written table.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path


def write_rows(path: Path, rows: list[dict], by: str) -> None:
    """Write ``rows`` to the CSV at ``path``, replacing its earlier rows with the same ``by`` value.

    Says on stderr what it wrote (the benchmarks' one "wrote" line)."""
    fields = list(rows[0])
    own = {str(r[by]) for r in rows}
    kept: list[dict] = []
    if path.is_file():
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames == fields:  # same columns: keep the other runs' rows
                kept = [r for r in reader if r[by] not in own]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(sorted(kept + rows, key=lambda r: str(r[by])))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {path}: {len(rows)} rows of this run, {len(kept)} of other runs kept", file=sys.stderr)
