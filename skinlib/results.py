"""Tidy results files (``results/<profile>/<experiment>.csv``) and atomic writes.

One row per number, with the columns of :data:`COLUMNS` (DESIGN.md). Files are
validated on write and on read, written with fixed float formatting (so the same
numbers give byte-identical files) and replaced atomically: a crash while writing
leaves the previous file intact, never half a file.

Examples:
    >>> from skinlib.metrics import evaluate
    >>> rows = metric_rows(evaluate([0, 1, 5], [0, 1, 1], n_boot=0),
    ...                    profile="smoke", experiment="exp0_classifier", model="resnet_small")
    >>> rows[0]["metric"], rows[0]["setting"]
    ('accuracy', 'clean')
"""

from __future__ import annotations

import io
import math
import os
import re
import uuid
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from skinlib.errors import SkinlibError
from skinlib.metrics import ATTACK_METRICS, HEALTH_METRICS, MODEL_METRICS

COLUMNS: list[str] = [
    "profile", "experiment", "model", "attack", "defence", "setting",
    "param", "grouping", "metric", "value", "ci_low", "ci_high",
]
CONTEXT_COLUMNS: list[str] = COLUMNS[:9]
NUMERIC_COLUMNS: list[str] = ["value", "ci_low", "ci_high"]
EXPERIMENTS: tuple[str, ...] = (
    "exp0_classifier", "exp1_poisoning", "exp2_1_fgsm", "exp2_2_uap",
    "exp3_1_retraining", "exp3_2_llt", "exp3_3_combined", "exp4_adaptive",
)
SETTINGS: tuple[str, ...] = ("clean", "greybox", "whitebox", "transfer")
RESULT_GROUPINGS: tuple[str, ...] = ("", "clinical", "thesis")
#: The metrics of DESIGN.md. A difference between two systems (this one minus a
#: reference, paired interval) is ``<metric>_vs_<reference>``, reference a word of [a-z_].
RESULT_METRICS: tuple[str, ...] = MODEL_METRICS + HEALTH_METRICS + ATTACK_METRICS
_REFERENCE = re.compile(r"[a-z][a-z_]*")
FLOAT_FORMAT = "%.6f"


# --------------------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a hidden temporary file in the same folder, are flushed and
    fsync'ed, and the file then replaces ``path`` with ``os.replace``. If anything
    fails, the temporary file is removed and ``path`` keeps its previous content.
    Parent folders are created. The new file gets the usual permissions (0666 minus
    the umask), not a temporary file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`); newlines as given."""
    atomic_write_bytes(path, text.encode(encoding))


# --------------------------------------------------------------------------- rows


def _param_text(param: Any) -> str:
    """The ``param`` column as text: ``""`` for none, shortest round-trip repr for numbers."""
    if param is None:
        return ""
    if isinstance(param, bool):
        return str(param)
    if isinstance(param, Integral):
        return str(int(param))
    if isinstance(param, Real):
        return repr(float(param))
    return str(param)


def metric_rows(
    evaluation_rows: Iterable[dict[str, Any]],
    *,
    profile: str,
    experiment: str,
    model: str,
    attack: str = "none",
    defence: str = "none",
    setting: str = "clean",
    param: Any = "",
) -> list[dict[str, Any]]:
    """Rows of :func:`skinlib.metrics.evaluate` with the context columns filled in.

    ``param`` (a poison fraction, an eps, ...) is stored as text: numbers in their
    shortest exact form (``0.05``, ``0.00784313725490196``), ``""`` when there is none.
    """
    context = {
        "profile": profile, "experiment": experiment, "model": model, "attack": attack,
        "defence": defence, "setting": setting, "param": _param_text(param),
    }
    out = []
    for r in evaluation_rows:
        row = dict(context)
        row.update({k: r[k] for k in ("grouping", "metric", "value", "ci_low", "ci_high")})
        out.append(row)
    return out


def difference_metric(metric: str, reference: str) -> str:
    """The ``metric`` column of a paired difference: ``<metric>_vs_<reference>``.

    Examples:
        >>> difference_metric("accuracy", "undefended")
        'accuracy_vs_undefended'
    """
    if metric not in RESULT_METRICS:
        raise SkinlibError(f"metric: unknown metric {metric!r}; valid: {', '.join(RESULT_METRICS)}")
    name = f"{metric}_vs_{reference}"
    if not isinstance(reference, str) or not _REFERENCE.fullmatch(reference) or _metric_problem(name):
        raise SkinlibError(f"reference: expected a plain word of a-z and _ (such as 'undefended'), got {reference!r}")
    return name


def _metric_problem(name: str) -> str | None:
    """Why ``name`` is no valid ``metric`` column value (None when it is valid)."""
    if name in RESULT_METRICS:
        return None
    base, sep, reference = name.rpartition("_vs_")  # the last "_vs_": references hold none
    if not sep:
        return f"unknown metric {name!r}; valid: {', '.join(RESULT_METRICS)}, or <metric>_vs_<reference>"
    if base not in RESULT_METRICS:
        return f"difference metric {name!r}: {base!r} is no known metric"
    if not _REFERENCE.fullmatch(reference):
        return f"difference metric {name!r}: reference {reference!r} is not a plain word of a-z and _"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _validate_rows(rows: list[dict[str, Any]], origin: str) -> None:
    """Raise a one-line SkinlibError (``origin: row i: ...``) for the first bad row."""
    known = set(COLUMNS)
    for i, row in enumerate(rows):
        where = f"{origin}: row {i + 1}"
        if not isinstance(row, dict):
            raise SkinlibError(f"{where}: expected a mapping of column to value, got {type(row).__name__}")
        unknown = [k for k in row if k not in known]
        if unknown:
            raise SkinlibError(f"{where}: unknown column {unknown[0]!r}; valid: {', '.join(COLUMNS)}")
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise SkinlibError(f"{where}: missing column {missing[0]!r}")
        for c in CONTEXT_COLUMNS:
            if not isinstance(row[c], str):
                raise SkinlibError(f"{where}: column {c!r} must be text, got {row[c]!r}")
        for c in ("profile", "experiment", "model", "attack", "defence", "metric"):
            if not row[c]:
                raise SkinlibError(f"{where}: column {c!r} is empty")
        if row["experiment"] not in EXPERIMENTS:
            raise SkinlibError(f"{where}: unknown experiment {row['experiment']!r}; valid: {', '.join(EXPERIMENTS)}")
        if row["setting"] not in SETTINGS:
            raise SkinlibError(f"{where}: unknown setting {row['setting']!r}; valid: {', '.join(SETTINGS)}")
        problem = _metric_problem(row["metric"])
        if problem:
            raise SkinlibError(f"{where}: {problem}")
        if row["grouping"] not in RESULT_GROUPINGS:
            raise SkinlibError(f"{where}: unknown grouping {row['grouping']!r}; valid: '', clinical, thesis")
        for c in NUMERIC_COLUMNS:
            v = row[c]
            if not _is_number(v) or math.isinf(float(v)):
                raise SkinlibError(f"{where}: column {c!r} must be a finite number or NaN, got {v!r}")


def _to_csv_text(rows: list[dict[str, Any]]) -> str:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in NUMERIC_COLUMNS:
        df[c] = df[c].astype("float64")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=FLOAT_FORMAT, na_rep="", lineterminator="\n")
    return buf.getvalue()


def write_results(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Validate ``rows`` and write them as a tidy CSV at ``path``, atomically.

    Checks: exactly the columns of :data:`COLUMNS`, a known experiment id, setting
    ``clean``/``greybox``/``whitebox``, grouping ``""``/``clinical``/``thesis``, a metric
    of :data:`RESULT_METRICS` or a difference ``<metric>_vs_<reference>``, and
    ``value``/``ci_low``/``ci_high`` finite or NaN. Floats are written as ``%.6f`` (NaN
    as an empty field), so the same rows always give the same bytes. Nothing is
    written (and a previous file stays as it was) when validation or writing fails.
    """
    path = Path(path)
    rows = list(rows)
    _validate_rows(rows, str(path))
    atomic_write_text(path, _to_csv_text(rows))


def read_results(path: str | Path) -> pd.DataFrame:
    """A results CSV as a DataFrame with the columns of :data:`COLUMNS`, validated.

    Context columns are text (empty fields stay ``""``), numeric columns float64
    (empty fields NaN). A missing file, a header lacking columns or a bad value is a
    :class:`SkinlibError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise SkinlibError(f"{path}: no such results file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SkinlibError(f"{path}: not a readable results CSV ({first})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SkinlibError(f"{path}: missing column(s) {', '.join(missing)}")
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise SkinlibError(f"{path}: unknown column(s) {', '.join(map(str, unknown))}")
    df = df[COLUMNS].copy()
    for c in CONTEXT_COLUMNS:
        df[c] = df[c].astype(object)
    for c in NUMERIC_COLUMNS:
        text = df[c].astype(object)
        try:
            df[c] = pd.to_numeric(text.where(text != "", None), errors="raise").astype("float64")
        except (ValueError, TypeError):
            bad = next(v for v in text if v != "" and not _parses(v))
            raise SkinlibError(f"{path}: column {c!r} holds {bad!r}, not a number") from None
    _validate_rows(df.to_dict("records"), str(path))
    return df


def changed_values(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """The numbers that differ between two results tables of one experiment (say, a
    published run and a rerun), matched on the context columns.

    One row per context present in both whose ``value`` differs (``value_before``,
    ``value_after``, ``change`` = after - before), plus one per context present in only
    one table (``change`` NaN, ``only_in`` names the table). Empty when the two agree.

    Examples:
        >>> t = pd.DataFrame([{**{c: "" for c in CONTEXT_COLUMNS}, "metric": "accuracy", "value": 0.5,
        ...                    "ci_low": 0.4, "ci_high": 0.6}])
        >>> changed_values(t, t).empty
        True
        >>> float(changed_values(t, t.assign(value=0.52))["change"].iloc[0])
        0.02
    """
    merged = before.merge(after, on=CONTEXT_COLUMNS, how="outer", suffixes=("_before", "_after"), indicator=True)
    merged["change"] = (merged["value_after"] - merged["value_before"]).round(6)
    merged["only_in"] = merged["_merge"].map({"left_only": "before", "right_only": "after", "both": ""})
    moved = (merged["only_in"] != "") | ~(merged["value_before"].fillna(-1e9) == merged["value_after"].fillna(-1e9))
    return merged.loc[moved, CONTEXT_COLUMNS + ["value_before", "value_after", "change", "only_in"]].reset_index(
        drop=True)


def _parses(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
