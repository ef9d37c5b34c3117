"""Tables, banners and glued numbers for the book's notebooks.

The notebooks only call these functions and display what they return:

- :func:`load_thesis_tables` reads the thesis's own numbers (kept outside the project);
- :func:`thesis_comparison` puts our value next to every thesis cell, in percent;
- :func:`thesis_tables` re-makes each thesis table (rows = models, cells "thesis | ours
  [interval]", the change from clean beside each value), shown by the summary and by
  every chapter's "Beside the thesis" section (:func:`skinlib.pages.thesis_rows`);
- :data:`DEPARTURES` lists every difference of method from the thesis, our side read
  from the profile (:func:`departures_table`);
- :func:`metrics_table` formats tidy results as ``"0.812 [0.79, 0.83]"`` strings;
- :func:`banner` says which profile and dataset produced the numbers on a page;
- :func:`glue_metrics` glues numbers (``myst_nb.glue``) so that prose cannot go stale.

Examples:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"model": ["m"], "metric": ["accuracy"], "grouping": [""],
    ...                    "value": [0.8125], "ci_low": [0.79], "ci_high": [0.83]})
    >>> metrics_table(df).loc["m", "accuracy"]
    '0.812 [0.79, 0.83]'
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from skinlib.errors import SkinlibError
from skinlib.labels import CLASSES

THESIS_COLUMNS: list[str] = [
    "table", "experiment", "model", "attack", "defence", "family", "metric", "value_percent",
]
COMPARISON_COLUMNS: list[str] = [
    "table", "experiment", "model", "our_model", "attack", "defence", "metric",
    "thesis_%", "ours_%", "ci", "difference",
]
RESULT_COLUMNS: list[str] = [
    "profile", "experiment", "model", "attack", "defence", "setting",
    "param", "grouping", "metric", "value", "ci_low", "ci_high",
]
THESIS_TABLES_ENV = "SKINLIB_THESIS_TABLES"

MODEL_METRICS: tuple[str, ...] = (
    "accuracy", "macro_recall", "macro_specificity", "error_rate", "flip_rate",
)
HEALTH_METRICS: tuple[str, ...] = (
    "health_accuracy", "sensitivity", "health_specificity", "npv", "fnr",
)
#: Every metric name in display order (model metrics, health metrics, per-class recalls).
METRIC_ORDER: tuple[str, ...] = MODEL_METRICS + HEALTH_METRICS + tuple(f"recall_{c}" for c in CLASSES)

METRIC_LABELS: dict[str, str] = {
    "accuracy": "accuracy",
    "macro_recall": "macro recall",
    "macro_specificity": "macro specificity",
    "error_rate": "error rate",
    "flip_rate": "flip rate",
    "health_accuracy": "health accuracy",
    "sensitivity": "sensitivity",
    "health_specificity": "health specificity",
    "npv": "NPV",
    "fnr": "FNR",
    "loss": "loss",
}

#: The thesis's attack names -> our attack names, tried in order (the thesis made its
#: UAPs with ART).
DEFAULT_ATTACK_MAP: dict[str, tuple[str, ...]] = {
    "none": ("none",),
    "fgsm": ("fgsm",),
    "uap": ("uap_art", "uap"),
}
#: Swept experiments: the ``param`` value at which the thesis reported its tables.
DEFAULT_PARAM_FILTER: dict[str, Any] = {"exp2_1_fgsm": 2 / 255}

_SOURCE_NAMES: dict[str, str] = {
    "ham10000": "HAM10000",
    "isic2018": "ISIC 2018 Task 3",
    "dermamnist": "DermaMNIST",
    "synthetic": "synthetic",
}


# --------------------------------------------------------------------------- helpers


def metric_label(metric: str) -> str:
    """A readable name for a metric (``macro_recall`` -> ``macro recall``, ``npv`` -> ``NPV``)."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    if metric.startswith("recall_"):
        return f"recall {metric[len('recall_'):]}"
    return metric.replace("_", " ")


def is_health_metric(metric: str) -> bool:
    """Whether ``metric`` is a malignant/benign metric (reported per grouping)."""
    return metric in HEALTH_METRICS


def ordered_metrics(metrics: Iterable[str]) -> list[str]:
    """Distinct metric names in :data:`METRIC_ORDER` order, unknown ones last (as met)."""
    seen = list(dict.fromkeys(metrics))
    known = [m for m in METRIC_ORDER if m in seen]
    return known + [m for m in seen if m not in METRIC_ORDER]


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _text(v: Any) -> str:
    return "" if _is_missing(v) else str(v)


def param_value(v: Any) -> Optional[float]:
    """A ``param`` as a number: floats, ints, numeric strings and fractions like ``"2/255"``."""
    if _is_missing(v) or isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    s = str(v).strip()
    if not s:
        return None
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*/\s*([-+0-9.eE]+)\s*", s)
    try:
        if m:
            return float(m.group(1)) / float(m.group(2))
        return float(s)
    except (ValueError, ZeroDivisionError):
        return None


def param_matches(params: pd.Series, value: Any) -> pd.Series:
    """Boolean mask: which ``params`` equal ``value`` (numerically when both are numbers)."""
    target = param_value(value)
    if target is None:
        return params.map(lambda p: _text(p) == _text(value)).astype(bool)

    def close(p: Any) -> bool:
        f = param_value(p)
        return f is not None and math.isclose(f, target, rel_tol=1e-6, abs_tol=1e-12)

    return params.map(close).astype(bool)


def tidy(df: pd.DataFrame, required: Sequence[str] = ("model", "metric", "value")) -> pd.DataFrame:
    """A copy of a tidy results frame with text columns as plain strings (``""`` for empty).

    CSV readers turn empty ``param``/``grouping`` cells into NaN and numeric params into
    floats; this undoes that so that filters such as ``grouping == ""`` work.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SkinlibError(f"results frame: missing column(s) {', '.join(missing)}; "
                           f"expected the tidy columns {', '.join(RESULT_COLUMNS)}")
    out = df.copy()
    for col in ("profile", "experiment", "model", "attack", "defence", "setting", "param", "grouping", "metric"):
        if col in out.columns:
            out[col] = out[col].map(_text).astype(object)
        elif col in ("grouping", "param"):
            out[col] = ""
    for col in ("value", "ci_low", "ci_high"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
        else:
            out[col] = np.nan
    return out.reset_index(drop=True)


def filter_grouping(df: pd.DataFrame, grouping: Optional[str]) -> pd.DataFrame:
    """Rows without a grouping plus the health rows of ``grouping`` (all rows for None)."""
    if grouping is None:
        return df
    return df[(df["grouping"] == "") | (df["grouping"] == grouping)]


def _varying(rows: pd.DataFrame, ignore: Sequence[str]) -> list[str]:
    cols = [c for c in RESULT_COLUMNS if c in rows.columns and c not in ignore
            and c not in ("value", "ci_low", "ci_high")]
    return [c for c in cols if rows[c].nunique(dropna=False) > 1]


def check_unique(df: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    """Raise a :class:`SkinlibError` when several rows share ``keys`` (naming what differs)."""
    dup = df.duplicated(list(keys), keep=False)
    if dup.any():
        rows = df[dup]
        first = rows.iloc[0]
        same = rows
        for k in keys:
            same = same[same[k] == first[k]]
        varying = _varying(same, keys) or ["(identical rows)"]
        at = ", ".join(f"{k}={first[k]!r}" for k in keys)
        raise SkinlibError(f"{what}: {len(same)} rows for {at}; they differ in "
                           f"{', '.join(varying)}: filter the frame first")


def _natural_table_key(table: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.]", str(table)))


# --------------------------------------------------------------------------- thesis tables


def _repo_root() -> Path:
    from skinlib.paths import ROOT

    return ROOT


def thesis_tables_path(path: str | Path | None = None) -> Path:
    """Where the thesis's numbers are read from: ``path``, else ``$SKINLIB_THESIS_TABLES``,
    else ``<repo root>/../shared/reference/thesis_tables.csv``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(THESIS_TABLES_ENV)
    if env:
        return Path(env)
    return _repo_root().parent / "shared" / "reference" / "thesis_tables.csv"


def load_thesis_tables(path: str | Path | None = None) -> pd.DataFrame:
    """The thesis's table values (columns :data:`THESIS_COLUMNS`, ``table`` as text: "4.10").

    The file is kept outside the project (see :func:`thesis_tables_path`); when it is
    absent the frame is empty, with the same columns, and callers show "thesis value
    unavailable". A file that exists but lacks columns is a :class:`SkinlibError`.
    """
    p = thesis_tables_path(path)
    if not p.is_file():
        return pd.DataFrame({c: pd.Series(dtype=float if c == "value_percent" else object)
                             for c in THESIS_COLUMNS})
    try:
        df = pd.read_csv(p, dtype={c: str for c in THESIS_COLUMNS if c != "value_percent"},
                         keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SkinlibError(f"{p}: not a readable CSV ({exc})") from None
    missing = [c for c in THESIS_COLUMNS if c not in df.columns]
    if missing:
        raise SkinlibError(f"{p}: missing column(s) {', '.join(missing)}")
    df = df[THESIS_COLUMNS].copy()
    for c in THESIS_COLUMNS[:-1]:
        df[c] = df[c].astype(str).str.strip().astype(object)
    df["value_percent"] = pd.to_numeric(df["value_percent"], errors="coerce").astype(float)
    if df["value_percent"].isna().any():
        bad = df.index[df["value_percent"].isna()][0] + 2
        raise SkinlibError(f"{p}: line {bad}: value_percent is not a number")
    return df.reset_index(drop=True)


def _pick_param(rows: pd.DataFrame, wanted: Any, where: str) -> pd.DataFrame:
    """Rows at the wanted param; without one, prefer the unswept rows (param "")."""
    if wanted is not None:
        return rows[param_matches(rows["param"], wanted)]
    if rows.empty:
        return rows
    unswept = rows[rows["param"] == ""]
    if not unswept.empty:
        return unswept
    if rows["param"].nunique() == 1:
        return rows
    raise SkinlibError(f"{where}: several param values ({', '.join(sorted(rows['param'].unique()))}) "
                       "and no param filter for this experiment: pass param_filter")


def thesis_comparison(
    ours: pd.DataFrame,
    thesis: pd.DataFrame,
    *,
    model_map: Mapping[str, str],
    setting: str = "greybox",
    param_filter: Optional[Mapping[str, Any]] = None,
    attack_map: Optional[Mapping[str, str | Sequence[str]]] = None,
    health_grouping: str = "thesis",
    decimals: Optional[int] = 1,
) -> pd.DataFrame:
    """Our number next to every thesis cell, in percent (columns :data:`COMPARISON_COLUMNS`).

    For each thesis row, our row with the same experiment, model (through ``model_map``,
    our registry name -> thesis name), attack (through ``attack_map``; the thesis's
    ``uap`` is our ``uap_art``), defence and metric is taken, where

    - health metrics are read under ``health_grouping`` (default ``"thesis"``, the
      thesis's own grouping, nv counted as cancerous); model metrics have no grouping;
    - clean rows (attack ``none``) have setting ``clean``; attacked rows ``setting``
      (default ``"greybox"``, how the thesis attacked its defended models);
    - swept experiments are read at ``param_filter[experiment]`` (default: FGSM at
      eps = 2/255), matched numerically; otherwise the unswept rows (param "") win.

    ``model`` is the thesis model, ``our_model`` ours (empty and ``ours_%`` NaN when no
    model maps to it). ``difference`` is ours - thesis in percentage points; ``ci`` is
    our 95% interval in percent. Several of our models mapping to one thesis model give
    one row each.
    """
    if thesis.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    o = tidy(ours, required=("experiment", "model", "attack", "defence", "metric", "value"))
    if "setting" not in o.columns:
        raise SkinlibError("results frame: missing column setting")
    filters = {**DEFAULT_PARAM_FILTER, **(param_filter or {})}
    amap: dict[str, tuple[str, ...]] = dict(DEFAULT_ATTACK_MAP)
    for k, v in (attack_map or {}).items():
        amap[k] = (v,) if isinstance(v, str) else tuple(v)
    present = list(dict.fromkeys(o["model"]))
    out: list[dict[str, Any]] = []
    for t in thesis.itertuples(index=False):
        t_model, t_metric = str(t.model), str(t.metric)
        health = str(getattr(t, "family", "")) == "health" or is_health_metric(t_metric)
        grouping = health_grouping if health else ""
        want_setting = "clean" if str(t.attack) == "none" else setting
        wanted_param = filters.get(str(t.experiment))
        ours_models = [m for m, tm in model_map.items() if tm == t_model and m in present] or [""]
        for m in ours_models:
            value = lo = hi = np.nan
            if m:
                base = o[(o["experiment"] == t.experiment) & (o["model"] == m) & (o["defence"] == t.defence)
                         & (o["metric"] == t_metric) & (o["setting"] == want_setting)
                         & (o["grouping"] == grouping)]
                rows = base.iloc[0:0]
                for a in amap.get(str(t.attack), (str(t.attack),)):
                    rows = base[base["attack"] == a]
                    if not rows.empty:
                        break
                where = f"table {t.table}: {t.experiment}/{m}/{t.attack}/{t.defence}/{t_metric}"
                rows = _pick_param(rows, wanted_param, where)
                if len(rows) > 1:
                    check_unique(rows.assign(_k=0), ["_k"], where)
                if len(rows) == 1:
                    r = rows.iloc[0]
                    value, lo, hi = 100 * r["value"], 100 * r["ci_low"], 100 * r["ci_high"]
            th = float(t.value_percent)
            ci = "" if np.isnan(lo) or np.isnan(hi) else f"[{lo:.1f}, {hi:.1f}]"
            diff = value - th
            if decimals is not None:
                value, diff = round(value, decimals), round(diff, decimals)
            out.append({"table": str(t.table), "experiment": t.experiment, "model": t_model, "our_model": m,
                        "attack": t.attack, "defence": t.defence, "metric": t_metric,
                        "thesis_%": th, "ours_%": value, "ci": ci, "difference": diff})
    res = pd.DataFrame(out, columns=COMPARISON_COLUMNS)
    order = sorted(range(len(res)), key=lambda i: _natural_table_key(res["table"].iloc[i]))
    res = res.iloc[order].reset_index(drop=True)
    for c in ("thesis_%", "ours_%", "difference"):
        res[c] = res[c].astype(float)
    return res


# --------------------------------------------------------------------------- tables


def format_value(value: float, low: float = np.nan, high: float = np.nan, decimals: int = 3) -> str:
    """``"0.812 [0.79, 0.83]"``: the value, then its interval one decimal shorter."""
    if _is_missing(value) or np.isnan(value):
        return "—"
    s = f"{value:.{decimals}f}"
    if not (_is_missing(low) or _is_missing(high) or np.isnan(low) or np.isnan(high)):
        d = max(decimals - 1, 0)
        s += f" [{low:.{d}f}, {high:.{d}f}]"
    return s


def metrics_table(
    df: pd.DataFrame,
    index: str | Sequence[str] = ("model",),
    columns: str = "metric",
    metrics: Optional[Sequence[str]] = None,
    *,
    grouping: Optional[str] = "clinical",
    decimals: int = 3,
) -> pd.DataFrame:
    """A display table of ``"value [ci_low, ci_high]"`` strings.

    Rows: ``index`` values in order of first appearance; columns: ``columns`` values,
    metrics in :data:`METRIC_ORDER` order (or the order of ``metrics``) with readable
    headers ("macro recall"). Health metrics are taken under ``grouping`` (None keeps
    every row). Several rows for one cell raise a :class:`SkinlibError` naming what
    differs; an empty cell shows "—".
    """
    index = [index] if isinstance(index, str) else list(index)
    d = tidy(df, required=(*index, columns, "metric", "value"))
    if metrics is not None:
        d = d[d["metric"].isin(list(metrics))]
    d = filter_grouping(d, grouping)
    check_unique(d, [*index, columns], "metrics_table")
    d = d.assign(_cell=[format_value(v, lo, hi, decimals)
                        for v, lo, hi in zip(d["value"], d["ci_low"], d["ci_high"])])
    if d.empty:
        return pd.DataFrame(columns=[metric_label(m) for m in (metrics or [])])
    table = d.pivot(index=index if len(index) > 1 else index[0], columns=columns, values="_cell")
    if columns == "metric":
        col_order = [m for m in metrics if m in table.columns] if metrics is not None else ordered_metrics(table.columns)
    else:
        col_order = list(dict.fromkeys(d[columns]))
    row_keys = list(dict.fromkeys(map(tuple, d[index].to_numpy().tolist())))
    rows = [k if len(index) > 1 else k[0] for k in row_keys]
    table = table.reindex(index=rows, columns=col_order).fillna("—")
    if columns == "metric":
        table.columns = [metric_label(c) for c in table.columns]
    table.columns.name = None
    return table


# --------------------------------------------------------------------------- banner


def _banner_parts(profile_name: str, source: str, n_images: int, extra: str) -> tuple[bool, str, str]:
    synthetic = source.strip().lower() == "synthetic"
    n = f"{int(n_images):,}"
    name = _SOURCE_NAMES.get(source.strip().lower(), source)
    if synthetic:
        head = f"Profile `{profile_name}` · synthetic data: not a HAM10000 result"
        body = (f"Every number and figure on this page comes from {n} synthetic images "
                f"(source `{source}`), run with profile `{profile_name}`. They exercise the "
                "pipeline; they say nothing about skin lesions, nor about the thesis's results.")
    else:
        head = f"Profile `{profile_name}` · real data: {name}"
        body = (f"The numbers and figures on this page come from {n} images of {name} "
                f"(source `{source}`), run with profile `{profile_name}`.")
    if extra:
        body += " " + extra.strip()
    return synthetic, head, body


def banner(profile_name: str, source: str, n_images: int, extra: str = "") -> str:
    """A Markdown blockquote naming the profile and data behind a page.

    It reads the same as CommonMark and as MyST (display it with
    ``IPython.display.Markdown``). Synthetic data gets a warning lead ("⚠ ... synthetic
    data: not a HAM10000 result"), real data a note lead.
    """
    synthetic, head, body = _banner_parts(profile_name, source, n_images, extra)
    lead = "⚠ **Warning:**" if synthetic else "ℹ **Note:**"
    return f"> {lead} **{head}.**\n>\n> {body}\n"


def banner_html(profile_name: str, source: str, n_images: int, extra: str = "") -> str:
    """The same banner as a styled HTML block (for ``IPython.display.HTML``)."""
    import html

    synthetic, head, body = _banner_parts(profile_name, source, n_images, extra)
    colour, background, lead = ("#b35806", "#fff4e5", "⚠ Warning") if synthetic else ("#0072b2", "#eef6fb", "ℹ Note")

    def md_code(s: str) -> str:
        return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(s))

    return (f'<div class="skinlib-banner" style="border-left: 6px solid {colour}; background: {background}; '
            f'padding: 0.6em 1em; margin: 0.5em 0;"><p><strong>{lead}: {md_code(head)}.</strong></p>'
            f"<p>{md_code(body)}</p></div>")


# --------------------------------------------------------------------------- glue


def _key_part(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_")


def glue_values(df: pd.DataFrame, prefix: str, metrics: Optional[Sequence[str]] = None) -> dict[str, str]:
    """The strings :func:`glue_metrics` glues: ``{prefix}_{model}_{metric}`` -> ``"81.2%"``.

    Health metrics get a ``_thesis`` suffix under the thesis grouping (none under
    ``clinical``); each key also has a ``..._ci`` companion (``"79.0–83.2%"``) when an
    interval is known. Several rows for one key (filter the frame first) raise a
    :class:`SkinlibError`.
    """
    d = tidy(df)
    if metrics is not None:
        d = d[d["metric"].isin(list(metrics))]
    suffix = d["grouping"].map(lambda g: "" if g in ("", "clinical") else f"_{_key_part(g)}")
    keys = [f"{_key_part(prefix)}_{_key_part(m)}_{_key_part(k)}{s}"
            for m, k, s in zip(d["model"], d["metric"], suffix)]
    d = d.assign(_key=keys)
    check_unique(d, ["_key"], "glue_metrics")
    out: dict[str, str] = {}
    for k, v, lo, hi in zip(d["_key"], d["value"], d["ci_low"], d["ci_high"]):
        if np.isnan(v):
            continue
        out[k] = f"{100 * v:.1f}%"
        if not (np.isnan(lo) or np.isnan(hi)):
            out[f"{k}_ci"] = f"{100 * lo:.1f}–{100 * hi:.1f}%"
    return out


def glue_metrics(df: pd.DataFrame, prefix: str, metrics: Optional[Sequence[str]] = None) -> None:
    """Glue every number of ``df`` (see :func:`glue_values`) for ``{glue:text}`` in prose.

    A no-op where myst_nb is not installed or no IPython kernel runs (plain Python).
    """
    values = glue_values(df, prefix, metrics)
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from myst_nb import glue
    except ImportError:
        return
    if not InteractiveShell.initialized():
        return
    for key, text in values.items():
        glue(key, text, display=False)


def uap_benchmark_summary(table: pd.DataFrame) -> str:
    """One markdown line per profile (and per ART stopping rule ``art_delta``, where the CSV
    has that column) of ``results/benchmarks/uap.csv``: ART's wall time and test flip rate,
    and how many times sooner the fast UAP first reaches that rate (cold: its compiled step
    traced inside the time; warm: reused), or that it never did."""
    lines = []
    keys = ["profile", "art_delta"] if "art_delta" in table.columns else ["profile"]
    for key, rows in table.groupby(keys, sort=True):
        profile, delta = key if len(keys) == 2 else (key[0], None)
        by = rows.set_index("method")
        if "uap_art" not in by.index:
            continue
        art = by.loc["uap_art"]
        rule = f", delta={float(delta):g}" if delta is not None else ""
        head = (f"- `{profile}` ({art['model']}{rule}): ART's UAP {float(art['wall_s']):.1f} s for a test flip rate "
                f"of {float(art['test_flip_rate']):.3f}; ")
        cold, warm = "uap_fast_to_art_rate_cold", "uap_fast_to_art_rate_warm"
        if cold in by.index and warm in by.index:
            lines.append(head + f"the fast UAP reaches it {float(by.loc[cold, 'speedup_vs_art']):.0f}x sooner cold "
                         f"({float(by.loc[cold, 'wall_s']):.2f} s), {float(by.loc[warm, 'speedup_vs_art']):.0f}x warm.")
        else:
            lines.append(head + "the fast UAP did not reach it within the benchmark's step limit.")
        if "uap_art_compiled_gradient" in by.index:  # the same ART attack on skinlib's compiled gradient
            c = by.loc["uap_art_compiled_gradient"]
            same_as_stock = "same perturbation as ART's stock run: True" in str(c.get("schedule", ""))
            same = "the same perturbation" if same_as_stock else (
                f"a different perturbation (float rounding of the gradient): test flip rate "
                f"{float(c['test_flip_rate']):.3f} against {float(art['test_flip_rate']):.3f}")
            lines[-1] += (f" ART's own UAP on skinlib's compiled loss gradient (what the experiments run) took "
                          f"{float(c['wall_s']):.1f} s ({float(c['speedup_vs_art']):.1f}x), {same}.")
    return "\n".join(lines)


def pgd_benchmark_summary(table: pd.DataFrame) -> str:
    """One markdown line per profile and system of ``results/benchmarks/pgd.csv``: the compiled
    PGD against ART's ``ProjectedGradientDescent`` (same images, eps, steps, start), its speed-up
    and the accuracies. ART returns the last iterate and ours each image's first successful
    one; where the CSV has ``last_iterate_accuracy`` (ours, ending like ART's) that is the
    like-for-like comparison, which should agree within half a point.

    Examples:
        >>> t = pd.DataFrame({"profile": ["p", "p"], "system": ["llt", "llt"], "method": ["art_pgd", "skinlib_pgd"],
        ...                   "wall_s": [20.0, 10.0], "accuracy": [0.654, 0.643], "speedup_vs_art": [1.0, 2.0],
        ...                   "images": [512, 512], "steps": [20, 20], "last_iterate_accuracy": [None, 0.652]})
        >>> print(pgd_benchmark_summary(t))
        - `p`, llt (512 images, 20 steps): ours 10.0 s against ART's 20.0 s (2.0x); accuracy 64.3% against 65.4%; ending like ART's (last iterate) 65.2%, 0.2 points from ART's.
    """
    lines = []
    for (profile, system), rows in table.groupby(["profile", "system"], sort=True):
        by = rows.set_index("method")
        if not {"art_pgd", "skinlib_pgd"} <= set(by.index):
            continue
        art, ours = by.loc["art_pgd"], by.loc["skinlib_pgd"]
        line = (f"- `{profile}`, {system} ({int(ours['images'])} images, {int(ours['steps'])} steps): ours "
                f"{float(ours['wall_s']):.1f} s against ART's {float(art['wall_s']):.1f} s "
                f"({float(ours['speedup_vs_art']):.1f}x); accuracy {float(ours['accuracy']):.1%} against "
                f"{float(art['accuracy']):.1%}")
        last = ours.get("last_iterate_accuracy")
        if last is not None and pd.notna(last):
            gap = abs(float(last) - float(art["accuracy"])) * 100
            line += f"; ending like ART's (last iterate) {float(last):.1%}, {gap:.1f} points from ART's."
        else:
            gap = abs(float(ours["accuracy"]) - float(art["accuracy"])) * 100
            line += f" ({gap:.1f} points apart)."
        lines.append(line)
    return "\n".join(lines)


def uap_warmup_summary(table: pd.DataFrame) -> str:
    """One markdown line per profile of ``results/benchmarks/uap_warmup.csv``: how far the fast
    UAP's warm-up moved the accuracy under its finished perturbation (paired over attack seeds),
    which intervals exclude zero, and the largest spread over the seeds of one variant.

    Examples:
        >>> t = pd.DataFrame({"profile": ["p", "p"], "model": ["m", "m"], "setting": ["undefended", "llt_greybox"],
        ...                   "seeds": [15, 15], "warmup_steps": [2, 2], "difference": [0.001, 0.006],
        ...                   "ci_low": [-0.001, -0.009], "ci_high": [0.003, 0.02], "sd_no_warmup": [0.001, 0.015],
        ...                   "sd_warmup": [0.001, 0.026]})
        >>> print(uap_warmup_summary(t))
        - `p`: over 15 attack seeds, the 2 warm-up steps moved the accuracy under the finished perturbation by at most 0.6 points (m, llt greybox), and every paired 95% interval covers zero. One variant's accuracy spreads over the seeds by up to 2.6 points (standard deviation; m, llt greybox).
    """
    def where(row: pd.Series) -> str:
        return f"{row['model']}, {str(row['setting']).replace('_', ' ')}"

    lines = []
    for profile, rows in table.groupby("profile", sort=True):
        rows = rows.reset_index(drop=True)
        big = rows.loc[rows["difference"].abs().idxmax()]
        excludes = rows[(rows["ci_low"] > 0) | (rows["ci_high"] < 0)]
        verdict = ("every paired 95% interval covers zero" if excludes.empty else
                   "the paired 95% interval excludes zero for " + "; ".join(where(r) for _, r in excludes.iterrows()))
        spread = rows[["sd_no_warmup", "sd_warmup"]].max(axis=1)
        wide = rows.loc[spread.idxmax()]
        lines.append(f"- `{profile}`: over {int(rows['seeds'].max())} attack seeds, the {int(rows['warmup_steps'].max())} "
                     f"warm-up steps moved the accuracy under the finished perturbation by at most "
                     f"{abs(float(big['difference'])) * 100:.1f} points ({where(big)}), and {verdict}. One variant's "
                     f"accuracy spreads over the seeds by up to {float(spread.max()) * 100:.1f} points (standard "
                     f"deviation; {where(wide)}).")
    return "\n".join(lines)


def grid_benchmark_summary(table: pd.DataFrame) -> str:
    """The grid benchmark (``benchmarks/bench_grid.py``) in one line per profile: Snakemake's
    wall time against ``skinlib run`` + ``skinlib book``, the speed-up, and whether the results
    were byte-identical.

    Examples:
        >>> t = pd.DataFrame({"profile": ["p", "p"], "method": ["skinlib_run_then_book", "snakemake_cores_2"],
        ...                   "jobs_at_once": [1, 2], "wall_s": [100.0, 80.0], "speedup": [1.0, 1.25],
        ...                   "identical": [True, True]})
        >>> grid_benchmark_summary(t)
        '- `p`: `snakemake --cores 2` 80 s against 100 s for `skinlib run` + `skinlib book` (1.25x), results byte-identical.'
    """
    lines = []
    for profile, rows in table.groupby("profile", sort=True):
        by = rows.set_index("method")
        grid = [m for m in by.index if str(m).startswith("snakemake_cores_")]
        if "skinlib_run_then_book" not in by.index or not grid:
            continue
        g, seq = by.loc[grid[0]], by.loc["skinlib_run_then_book"]
        same = str(g["identical"]).lower() == "true"
        lines.append(f"- `{profile}`: `snakemake --cores {int(g['jobs_at_once'])}` {float(g['wall_s']):.0f} s against "
                     f"{float(seq['wall_s']):.0f} s for `skinlib run` + `skinlib book` ({float(g['speedup']):.2f}x), "
                     + ("results byte-identical." if same else "results NOT identical."))
    return "\n".join(lines)


def seed_spread(table: pd.DataFrame, primary: Optional[pd.DataFrame] = None, decimals: int = 3) -> pd.DataFrame:
    """The spread over training seeds beside the bootstrap interval, one row per cell.

    ``table`` is ``results/<profile>/seeds.csv`` (``skinlib.pipeline.aggregate_seeds``:
    the tidy columns plus ``n_seeds``, ``sd``, ``min``, ``max``); ``primary`` the tidy
    results of the seed the page shows (its value and bootstrap interval), else the
    table's mean and mean bounds are shown. Only cells run with more than one seed are
    kept. Columns: the context columns, ``shown`` (``"0.812 [0.79, 0.83]"``) and
    ``over seeds`` (``"0.805 ± 0.012 (0.79-0.82, 3 seeds)"``).

    Examples:
        >>> t = pd.DataFrame({"model": ["m"], "metric": ["accuracy"], "grouping": [""], "value": [0.8],
        ...                   "ci_low": [0.7], "ci_high": [0.9], "n_seeds": [3], "sd": [0.02],
        ...                   "min": [0.78], "max": [0.82]})
        >>> seed_spread(t)["over seeds"].iloc[0]
        '0.800 ± 0.020 (0.780-0.820, 3 seeds)'
    """
    keys = [c for c in ("experiment", "model", "attack", "defence", "setting", "param", "grouping", "metric")
            if c in table.columns]
    many = table[pd.to_numeric(table["n_seeds"]) > 1].copy()
    if primary is not None and len(many):
        shown = primary[keys + ["value", "ci_low", "ci_high"]]
        many = many.merge(shown, on=keys, how="left", suffixes=("", "_shown"))
    else:
        many = many.assign(value_shown=many["value"], ci_low_shown=many["ci_low"], ci_high_shown=many["ci_high"])
    out = many[keys].copy()
    out["shown"] = [format_value(v, lo, hi, decimals) for v, lo, hi in
                    zip(many["value_shown"], many["ci_low_shown"], many["ci_high_shown"])]
    out["over seeds"] = [f"{m:.{decimals}f} ± {s:.{decimals}f} ({lo:.{decimals}f}-{hi:.{decimals}f}, {int(n)} seeds)"
                         for m, s, lo, hi, n in zip(many["value"], many["sd"], many["min"], many["max"],
                                                    many["n_seeds"])]
    return out.reset_index(drop=True)


#: The cells the summary's seed table shows: (metric, grouping) -- accuracy, the drop from
#: clean, and the missed-malignancy rate (clinical FNR).
SEED_HEADLINE_METRICS: tuple[tuple[str, str], ...] = (("accuracy", ""), ("accuracy_vs_clean", ""),
                                                      ("fnr", "clinical"))
#: Experiment 4's headline cells over seeds, (attack, setting, metric): each defence's clean
#: accuracy, its accuracy under the worst case of the white-box attacks, and that worst case's
#: paired gain over the undefended model (the claim of every verdict).
ADAPTIVE_SEED_CELLS: tuple[tuple[str, str, str], ...] = (("none", "clean", "accuracy"),
                                                         ("worst_case", "whitebox", "accuracy"),
                                                         ("worst_case", "whitebox", "accuracy_vs_undefended"))
#: Their labels in the summary's seed table, (attack, metric) -> label.
ADAPTIVE_SEED_LABELS: dict[tuple[str, str], str] = {("none", "accuracy"): "clean accuracy",
                                                    ("worst_case", "accuracy"): "worst-case accuracy",
                                                    ("worst_case", "accuracy_vs_undefended"): "worst-case gain"}


def experiment_number(experiment: str) -> str:
    """``"exp2_1_fgsm"`` -> ``"exp2.1"``, ``"exp0_classifier"`` -> ``"exp0"``: an experiment's short name."""
    m = re.match(r"exp(\d+)(?:_(\d+))?", experiment)
    return f"exp{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "") if m else experiment


def seed_headline(table: pd.DataFrame, fgsm_eps: Optional[float] = None) -> pd.DataFrame:
    """The headline cells of ``seeds.csv`` run with more than one seed: accuracy, its change
    from clean and the clinical FNR; FGSM/PGD rows of experiment 2.1 at ``fgsm_eps`` only;
    of experiment 4 the cells of :data:`ADAPTIVE_SEED_CELLS`.

    Shape: a subset of the rows of ``table``, its columns unchanged.
    """
    t = tidy(table)
    keep = pd.Series(False, index=t.index)
    for metric, grouping in SEED_HEADLINE_METRICS:
        keep |= (t["metric"] == metric) & (t["grouping"].map(_text) == grouping)
    adaptive = t["experiment"] == "exp4_adaptive"
    if adaptive.any():
        cells = pd.Series(False, index=t.index)
        for attack, setting, metric in ADAPTIVE_SEED_CELLS:
            cells |= ((t["attack"] == attack) & (t["setting"] == setting) & (t["metric"] == metric)
                      & (t["grouping"].map(_text) == ""))
        keep = (keep & ~adaptive) | (cells & adaptive)
    keep &= pd.to_numeric(t["n_seeds"]) > 1
    if fgsm_eps is not None and "param" in t.columns:
        sweep = t["experiment"] == "exp2_1_fgsm"
        keep &= ~sweep | param_matches(t["param"], fgsm_eps)
    return t[keep].reset_index(drop=True)


def seed_spread_tables(table: pd.DataFrame, primary: pd.DataFrame, fgsm_eps: Optional[float] = None,
                       primary_seed: int = 0) -> dict[str, pd.DataFrame]:
    """The summary's seed tables, in percent, one per experiment run with several seeds: the
    headline cells (:func:`seed_headline`) of ``seeds.csv``, the shown seed's value with its
    bootstrap interval beside the mean ± sd and the range over seeds. Narrow enough for the
    book's column: model and attack in the index, intervals in whole percent.

    Shape: ``{"exp2.1": frame}``, each frame one row per (model, attack, metric).

    Examples:
        >>> t = pd.DataFrame({"experiment": ["exp0_classifier"], "model": ["m"], "attack": ["none"],
        ...                   "metric": ["accuracy"], "grouping": [""], "value": [0.8], "ci_low": [0.7],
        ...                   "ci_high": [0.9], "n_seeds": [3], "sd": [0.02], "min": [0.78], "max": [0.82]})
        >>> frame = seed_spread_tables(t, t.assign(value=0.79))["exp0"]
        >>> frame.index[0], frame.iloc[0].tolist()
        ('m · clean', ['accuracy', '79.0 [70, 90]', '80.0 ± 2.0', '78.0 to 82.0'])
    """
    from skinlib.pages import format_cell  # the book's percent cell; pages imports this module

    keys = [c for c in ("experiment", "model", "attack", "defence", "setting", "param", "grouping", "metric")
            if c in table.columns]
    many = seed_headline(table, fgsm_eps)
    shown = tidy(primary)[keys + ["value", "ci_low", "ci_high"]]
    many = many.merge(shown, on=keys, how="left", suffixes=("", "_shown"))
    pct = lambda v: f"{100 * float(v):.1f}"  # noqa: E731
    labels = {"accuracy": "accuracy", "accuracy_vs_clean": "change from clean", "fnr": "FNR (clinical)"}
    out = {}
    order = {m: i for i, m in enumerate([m for m, _ in SEED_HEADLINE_METRICS] + ["accuracy_vs_undefended"])}
    if "defence" not in many.columns:
        many = many.assign(defence="none")
    rank = lambda col: many[col].map({v: i for i, v in enumerate(dict.fromkeys(many[col]))})  # noqa: E731
    many = many.assign(_model=rank("model"), _defence=rank("defence"), _attack=rank("attack"),
                       _metric=many["metric"].map(order))
    many = many.sort_values(["_model", "_defence", "_attack", "_metric"], kind="stable")
    for exp, rows in many.groupby("experiment", sort=False):
        attacks = rows["attack"].map(_text)
        defences = rows["defence"].map(_text)
        by_defence = set(defences) - {"", "none"} != set()
        if by_defence:  # experiment 4: the attack goes into the metric's label, to keep the table narrow
            index = pd.Index([f"{m} · {d}" for m, d in zip(rows["model"], defences)], name="model · defence")
            metric = [ADAPTIVE_SEED_LABELS.get((a, m), f"{a}: {labels.get(m, metric_label(m))}")
                      for a, m in zip(attacks, rows["metric"])]
        else:
            index = pd.Index([f"{m} · {'clean' if a in ('', 'none') else a}" for m, a in zip(rows["model"], attacks)],
                             name="model · attack")
            metric = [labels.get(m, metric_label(m)) for m in rows["metric"]]
        out[experiment_number(str(exp))] = pd.DataFrame(index=index, data={
            "metric": metric,
            f"seed {primary_seed} [95% CI]": [format_cell(float(v), float(lo), float(hi), ci_decimals=0)
                                              for v, lo, hi in zip(rows["value_shown"], rows["ci_low_shown"],
                                                                   rows["ci_high_shown"])],
            f"{int(pd.to_numeric(rows['n_seeds']).max())} seeds: mean ± sd": [
                f"{pct(m)} ± {pct(sd)}" for m, sd in zip(rows["value"], rows["sd"])],
            "range over seeds": [f"{pct(lo)} to {pct(hi)}" for lo, hi in zip(rows["min"], rows["max"])],
        })
    return out


def leakage_over_seeds(tables: Mapping[int, pd.DataFrame]) -> str:
    """Experiment 0's leakage check over training seeds, in words: the accuracy of the image
    split minus the lesion split's, per seed and model, and their mean and range. A seed
    draws both the split and the training, so each seed's two test sets differ.

    ``tables`` maps a seed to its ``exp0_split_leakage.csv`` (columns ``model``, ``split``,
    ``accuracy`` ...). Empty text for fewer than two seeds.

    Examples:
        >>> t = lambda a, b: pd.DataFrame({"model": ["m", "m"], "split": ["by_image", "by_lesion"],
        ...                                "accuracy": [a, b]})
        >>> leakage_over_seeds({0: t(0.75, 0.70), 1: t(0.74, 0.73)})
        'Leakage check over 2 seeds (image split minus lesion split, accuracy): m +5.0 (seed 0), +1.0 (seed 1); mean +3.0, range +1.0 to +5.0 points.'
    """
    if len(tables) < 2:
        return ""
    gaps: dict[str, dict[int, float]] = {}
    for seed, table in tables.items():
        for model, rows in table.groupby("model", sort=False):
            by = rows.set_index("split")["accuracy"]
            if {"by_image", "by_lesion"} <= set(by.index):
                gaps.setdefault(str(model), {})[seed] = 100 * float(by["by_image"] - by["by_lesion"])
    parts = []
    for model, per_seed in gaps.items():
        values = list(per_seed.values())
        each = ", ".join(f"{g:+.1f} (seed {k})" for k, g in per_seed.items())
        parts.append(f"{model} {each}; mean {np.mean(values):+.1f}, range {min(values):+.1f} to {max(values):+.1f} points")
    return (f"Leakage check over {len(tables)} seeds (image split minus lesion split, accuracy): "
            + "; ".join(parts) + ".") if parts else ""


def seed_spread_markdown(table: pd.DataFrame, fgsm_eps: Optional[float] = None) -> str:
    """Say in words how many training seeds each experiment ran, whether the spread over
    seeds is small beside the bootstrap interval (which covers test sampling only), and
    which changes from clean reverse their sign between seeds.

    ``table`` is ``seeds.csv``. For each experiment with several seeds: the largest standard
    deviation over seeds of an accuracy cell, in points, beside the median half-width of the
    bootstrap intervals of the same cells; the rule: the seed spread matters (and a
    difference under twice it is no finding) when twice its largest sd exceeds that
    half-width. Then the clinical FNR cell with the largest sd, and every change from clean
    (accuracy, clinical FNR) whose seeds disagree on its sign (min below 0, max above).

    Examples:
        >>> t = pd.DataFrame({"experiment": ["exp0_classifier"] * 2, "model": ["m", "m"],
        ...                   "metric": ["accuracy", "fnr"], "grouping": ["", "clinical"],
        ...                   "value": [0.8, 0.3], "ci_low": [0.78, 0.25], "ci_high": [0.82, 0.35],
        ...                   "n_seeds": [3, 3], "sd": [0.004, 0.02], "min": [0.795, 0.28], "max": [0.805, 0.32]})
        >>> print(seed_spread_markdown(t))  # doctest: +NORMALIZE_WHITESPACE
        - exp0_classifier: 3 training seeds; the largest sd of an accuracy over seeds is 0.4 points,
          at most half the bootstrap intervals' median half-width of 2.0 points. The clinical FNR
          moves most for m · clean: 28.0 to 32.0 over seeds (sd 2.0 points).
    """
    from skinlib.plots import ATTACK_TEXT  # lazily: plots loads matplotlib
    from skinlib.verdicts import system_text

    t = tidy(table)
    lines = []
    for exp, rows in t.groupby("experiment", sort=False):
        n = int(pd.to_numeric(rows["n_seeds"]).max())
        if n < 2:
            lines.append(f"- {exp}: one training seed (its intervals cover test sampling only).")
            continue
        head = seed_headline(rows, fgsm_eps)
        acc = head[head["metric"] == "accuracy"]
        if acc.empty:
            lines.append(f"- {exp}: {n} training seeds.")
            continue
        sd = 100 * float(pd.to_numeric(acc["sd"]).max())
        half = 100 * float(((pd.to_numeric(acc["ci_high"]) - pd.to_numeric(acc["ci_low"])) / 2).median())
        judged = (f"as large as the bootstrap intervals' median half-width of {half:.1f} points: a difference "
                  "under twice it is not a finding" if 2 * sd > half else
                  f"at most half the bootstrap intervals' median half-width of {half:.1f} points")
        text = f"- {exp}: {n} training seeds; the largest sd of an accuracy over seeds is {sd:.1f} points, {judged}."

        def cell(r: pd.Series) -> str:  # "resnet_small · the LLT · worst case over the attacks", as the tables
            attack = _text(r.get("attack", ""))
            defence = _text(r.get("defence", ""))
            return " · ".join(w for w in (r["model"], system_text(defence) if defence not in ("", "none") else "",
                                          "clean" if attack in ("", "none") else ATTACK_TEXT.get(attack, attack)) if w)

        fnr = head[head["metric"] == "fnr"]
        if not fnr.empty:
            r = fnr.loc[pd.to_numeric(fnr["sd"]).idxmax()]
            text += (f" The clinical FNR moves most for {cell(r)}: {100 * float(r['min']):.1f} to "
                     f"{100 * float(r['max']):.1f} over seeds (sd {100 * float(r['sd']):.1f} points).")
        changes = rows[rows["metric"].isin(["accuracy_vs_clean", "fnr_vs_clean"])]
        changes = seed_headline(changes.assign(metric=changes["metric"].str.replace("fnr_vs_clean", "fnr")
                                               .str.replace("accuracy_vs_clean", "accuracy")), fgsm_eps)
        flips = changes[(pd.to_numeric(changes["min"]) < 0) & (pd.to_numeric(changes["max"]) > 0)]
        if not flips.empty:
            said = "; ".join(f"{'accuracy' if r['metric'] == 'accuracy' else 'clinical FNR'} of {cell(r)} "
                             f"{100 * float(r['min']):+.1f} to {100 * float(r['max']):+.1f} points"
                             for _, r in flips.iterrows())
            text += (f" The seeds disagree on the sign of the change from clean for: {said}; "
                     "a direction seen on one seed only is not a finding.")
        gains = head[head["metric"] == "accuracy_vs_undefended"]
        if not gains.empty:
            said = "; ".join(f"{cell(r)} {100 * float(r['min']):+.1f} to {100 * float(r['max']):+.1f}"
                             for _, r in gains.iterrows())
            text += (f" The worst-case gain over the undefended model ranges over seeds (points): {said}"
                     + ("; every one keeps its sign on every seed." if not (
                         (pd.to_numeric(gains["min"]) < 0) & (pd.to_numeric(gains["max"]) > 0)).any()
                        else "; where a range crosses 0 the seeds disagree on whether the defence helps."))
        lines.append(text)
    return "\n".join(lines)


# --------------------------------------------------------------------------- thesis-shaped tables

#: How a thesis table's system is named in its caption.
_DEFENCE_TEXT: dict[str, str] = {
    "none": "undefended model",
    "retraining": "adversarially retrained model",
    "llt": "model behind the LLT (WebP + flip)",
    "retraining+llt": "retrained model behind the LLT",
}


def attack_budgets(profile: Any) -> dict[str, str]:
    """The attacks' budgets of a profile in words: ``{"fgsm": "2/255", "uap": "L-inf 8/255"}``.

    Keys are the thesis's attack names. The UAP's budget is one the thesis never states:
    with ``uap.norm: inf`` it is ``uap.eps``; with ``uap.norm: 2`` a share ``uap.zeta`` of
    the mean image norm (Hirano et al.).
    """
    uap = profile.uap
    if str(uap.norm) == "inf":
        uap_text = f"L-inf {uap.eps * 255:.3g}/255"
    else:
        uap_text = f"L2 {uap.zeta:.0%} of the mean image norm"
    return {"fgsm": f"{profile.fgsm.eps * 255:.3g}/255", "uap": uap_text}


@dataclass(frozen=True)
class ThesisTable:
    """One thesis table beside ours: ``frame`` (rows = models, columns = metrics), its
    ``caption`` (system, attack and budget, threat setting, grouping) and ``cells`` (the
    long form, one row per cell, with the numbers behind each string)."""

    table: str
    caption: str
    frame: pd.DataFrame
    cells: pd.DataFrame


def _paired_as_metric(o: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The paired rows ``<metric>_vs_<reference>`` renamed ``<metric>``; ``error_rate`` from accuracy's."""
    suffix = f"_vs_{reference}"
    rows = o[o["metric"].str.endswith(suffix)].copy()
    rows["metric"] = rows["metric"].str[: -len(suffix)]
    acc = rows[rows["metric"] == "accuracy"]
    err = acc.assign(metric="error_rate", value=-acc["value"], ci_low=-acc["ci_high"], ci_high=-acc["ci_low"])
    return pd.concat([rows[rows["metric"] != "error_rate"], err], ignore_index=True)


def _clean_value(o: pd.DataFrame, model: str, metric: str, grouping: str) -> float:
    want = "accuracy" if metric == "error_rate" else metric
    rows = o[(o["experiment"] == "exp0_classifier") & (o["model"] == model) & (o["metric"] == want)
             & (o["grouping"] == grouping) & (o["setting"] == "clean")]
    if rows.empty:
        return np.nan
    v = 100 * float(rows["value"].iloc[0])
    return 100 - v if metric == "error_rate" else v


def _thesis_clean(thesis: pd.DataFrame, model: str, metric: str) -> float:
    want = "accuracy" if metric == "error_rate" else metric
    rows = thesis[(thesis["experiment"] == "exp0_classifier") & (thesis["model"] == model)
                  & (thesis["metric"] == want)]
    if rows.empty:
        return np.nan
    v = float(rows["value_percent"].iloc[0])
    return 100 - v if metric == "error_rate" else v


def _caption(rows: pd.DataFrame, budgets: Mapping[str, str], setting: str) -> str:
    first = rows.iloc[0]
    attack, defence = str(first["attack"]), str(first["defence"])
    health = str(first["family"]) == "health" or is_health_metric(str(first["metric"]))
    system = _DEFENCE_TEXT.get(defence, defence)
    if attack == "none":
        what = f"the {system} on clean test images"
    elif attack == "fgsm":
        what = f"the {system} under FGSM at {budgets.get('fgsm', 'the thesis eps')}"
    elif attack == "uap":
        what = (f"the {system} under ART's UAP (the thesis does not state its budget; ours: "
                f"{budgets.get('uap', 'see the profile')})")
    else:
        what = f"the {system} under {attack}"
    threat = ("" if attack == "none" else
              f"; {setting.replace('box', ' box')}: perturbation crafted on the undefended model, as in the thesis"
              if setting == "greybox" else f"; {setting}")
    grouping = ("health metrics under the thesis's grouping (nv counted as cancerous, bkl/df/vasc healthy)"
                if health else "seven-class metrics")
    return f"Thesis table {first['table']}: {what}{threat}; {grouping}."


def _fmt(v: float, signed: bool = False) -> str:
    return "—" if not np.isfinite(v) else (f"{v:+.1f}" if signed else f"{v:.1f}")


def thesis_tables(
    ours: pd.DataFrame,
    thesis: pd.DataFrame,
    *,
    model_map: Mapping[str, str],
    tables: Optional[Sequence[str]] = None,
    param_filter: Optional[Mapping[str, Any]] = None,
    budgets: Optional[Mapping[str, str]] = None,
    setting: str = "greybox",
    health_grouping: str = "thesis",
) -> list[ThesisTable]:
    """The thesis's tables re-made with our numbers beside its own, one :class:`ThesisTable` each.

    Rows are models (``"ResNet50 (ours: resnet_small)"``), columns the table's metrics; a
    cell reads ``"thesis | ours [95% interval]"`` in percent. Tables of an attacked system
    add, beside each metric, the change from the clean model (``Δ clean``, in points):
    the thesis's against its tables 4.1/4.2, ours against experiment 0 -- with the paired
    interval of the ``<metric>_vs_clean`` rows where the results hold them (experiments
    2.1 and 2.2), else the bare difference. The clean baselines differ (smaller networks,
    smaller images, a lesion split: see :data:`DEPARTURES`), so the change from clean is
    the number that should carry over. ``thesis`` is the whole thesis frame (its clean
    tables are needed for the drops); ``tables`` selects which tables to return (all by
    default). ``budgets`` names the attacks' budgets (:func:`attack_budgets`).
    """
    if thesis.empty:
        return []
    o = tidy(ours, required=("experiment", "model", "attack", "defence", "metric", "value"))
    sel = thesis if tables is None else thesis[thesis["table"].astype(str).isin([str(t) for t in tables])]
    if sel.empty:
        return []
    kw = dict(model_map=model_map, setting=setting, param_filter=param_filter, health_grouping=health_grouping,
              decimals=None)
    absolute = thesis_comparison(o, sel, **kw).rename(columns={"thesis_%": "thesis_pct", "ours_%": "ours_pct"})
    paired = thesis_comparison(_paired_as_metric(o, "clean"), sel, **kw) if len(o) else absolute.iloc[0:0]
    key = ["table", "model", "our_model", "metric"]
    paired = paired.drop_duplicates(key).set_index(key)
    cells = []
    for r in absolute.itertuples(index=False):
        health = is_health_metric(r.metric)
        grouping = health_grouping if health else ""
        th_clean = _thesis_clean(thesis, r.model, r.metric)
        thesis_drop = r.thesis_pct - th_clean if r.attack != "none" else np.nan
        ours = r.ours_pct
        drop = lo = hi = np.nan
        is_paired = False
        if r.attack != "none" and r.our_model:
            k = (r.table, r.model, r.our_model, r.metric)
            if k in paired.index and np.isfinite(paired.loc[k, "ours_%"]):
                drop = float(paired.loc[k, "ours_%"])
                ci = str(paired.loc[k, "ci"])
                m = re.fullmatch(r"\[(\S+), (\S+)\]", ci)
                if m:
                    lo, hi = float(m.group(1)), float(m.group(2))
                is_paired = True
            else:
                drop = ours - _clean_value(o, r.our_model, r.metric, grouping)
        m_ci = re.fullmatch(r"\[(\S+), (\S+)\]", str(r.ci))
        cells.append({"table": r.table, "experiment": r.experiment, "model": r.model, "our_model": r.our_model,
                      "attack": r.attack, "defence": r.defence, "metric": r.metric, "thesis": r.thesis_pct,
                      "ours": ours,
                      "ours_low": float(m_ci.group(1)) if m_ci else np.nan,
                      "ours_high": float(m_ci.group(2)) if m_ci else np.nan,
                      "thesis_drop": thesis_drop, "ours_drop": drop, "ours_drop_low": lo, "ours_drop_high": hi,
                      "paired": is_paired})
    long = pd.DataFrame(cells)
    budgets = dict(budgets or {})
    if "fgsm" not in budgets:
        eps = param_value({**DEFAULT_PARAM_FILTER, **(param_filter or {})}.get("exp2_1_fgsm"))
        if eps is not None:
            budgets["fgsm"] = f"{eps * 255:.3g}/255"
    out = []
    for table in sorted(long["table"].unique(), key=_natural_table_key):
        c = long[long["table"] == table]
        attacked = (c["attack"] != "none").any()
        rows: dict[str, dict] = {}
        for r in c.itertuples(index=False):
            label = (f"{_THESIS_DISPLAY.get(r.model, r.model)} (ours: {r.our_model})" if r.our_model
                     else f"{_THESIS_DISPLAY.get(r.model, r.model)} (no model of ours)")
            row = rows.setdefault(label, {})
            ours_text = _fmt(r.ours)
            if np.isfinite(r.ours_low):
                ours_text += f" [{r.ours_low:.1f}, {r.ours_high:.1f}]"
            row[(metric_label(r.metric), "thesis | ours")] = f"{_fmt(r.thesis)} | {ours_text}"
            if attacked:
                d = _fmt(r.ours_drop, signed=True)
                if r.paired and np.isfinite(r.ours_drop_low):
                    d += f" [{r.ours_drop_low:+.1f}, {r.ours_drop_high:+.1f}]"
                row[(metric_label(r.metric), "Δ clean")] = f"{_fmt(r.thesis_drop, signed=True)} | {d}"
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        frame.index.name = None
        caption = _caption(thesis[thesis["table"].astype(str) == table], budgets, setting)
        if attacked:
            caption += (" Δ clean: the change from the clean model in points, thesis | ours (ours with its paired "
                        "95% interval where the results hold one).")
        out.append(ThesisTable(table=table, caption=caption, frame=frame, cells=c.reset_index(drop=True)))
    return out


_THESIS_DISPLAY: dict[str, str] = {"resnet50": "ResNet50", "inceptionv3": "InceptionV3"}


def thesis_tables_html(views: Sequence[ThesisTable]) -> str:
    """The tables of :func:`thesis_tables` as one HTML block, each under its caption."""
    import html

    parts = []
    for v in views:
        parts.append(f'<p class="skinlib-thesis-caption"><strong>{html.escape(v.caption)}</strong></p>')
        parts.append(v.frame.to_html(classes="skinlib-thesis-table", border=0))
    return "\n".join(parts) if parts else "<p>Thesis tables unavailable.</p>"


def thesis_agreement(views: Sequence[ThesisTable], points: float = 5.0) -> str:
    """One sentence: how many cells (absolute, and change from clean) lie within ``points`` of the thesis's."""
    if not views:
        return "No thesis cell to compare."
    cells = pd.concat([v.cells for v in views], ignore_index=True)
    diff = (cells["ours"] - cells["thesis"]).abs()
    ddiff = (cells["ours_drop"] - cells["thesis_drop"]).abs()
    n, nd = int(diff.notna().sum()), int(ddiff.notna().sum())
    return (f"{int((diff <= points).sum())} of {n} absolute values lie within {points:g} points of the thesis's; "
            f"{int((ddiff <= points).sum())} of {nd} changes from clean do.")


# --------------------------------------------------------------------------- departures from the thesis


@dataclass(frozen=True)
class Departure:
    """One difference of method between a profile and the thesis.

    ``thesis`` states what the thesis did (from its text); ``ours(profile)`` reads our
    side from the profile, never typed; ``differs(profile)`` says whether the profile
    departs at all (the ``thesis`` profile matches it on several); ``why`` gives our
    reason and ``moves`` the numbers it should move, and which way.
    """

    key: str
    topic: str
    thesis: str
    ours: Any  # Callable[[Profile], str]
    differs: Any  # Callable[[Profile], bool]
    why: str
    moves: str


def _n(k: int, word: str, plural: str = "") -> str:
    return f"{k} {word if k == 1 else (plural or word + 's')}"


def _models_text(p: Any) -> str:
    from skinlib.models import MODELS

    weights = "ImageNet weights" if p.train.weights == "imagenet" else "no pretrained weights"
    names = []
    for m in p.models:
        info = MODELS.get(m)
        names.append(f"{m} ({info.family} family)" if info is not None else m)
    return f"{', '.join(names)}; {weights}"


def _thesis_models(p: Any) -> bool:
    return sorted(p.models) == ["inceptionv3", "resnet50"] and p.train.weights == "imagenet"


def _epochs_text(p: Any) -> str:
    text = f"{p.train.epochs} epochs, batch {p.train.batch_size}"
    if p.train.fine_tune_epochs:
        text += f", then {p.train.fine_tune_epochs} epochs of fine-tuning the whole network"
    return text


def _poison_epochs(p: Any) -> int:
    return int(p.poisoning.epochs or p.train.epochs)


def _weights_text(p: Any) -> str:
    if not p.train.class_weights:
        return "no class weights"
    power = float(p.train.class_weight_power)
    name = {1.0: "inverse class frequency", 0.5: "square root of the inverse class frequency"}.get(
        power, f"inverse class frequency to the power {power:g}")
    return f"{name} (`train.class_weight_power: {power:g}`)"


#: Every difference of method between our runs and the thesis: one registry, read by the
#: summary page (:func:`departures_table`) and referenced by the methods chapter.
DEPARTURES: tuple[Departure, ...] = (
    Departure(
        "image_size", "Image size",
        "full resolution at the networks' input size, 299 px (the thesis does not state a resize)",
        lambda p: f"{p.data.image_size} px (`data.image_size`)",
        lambda p: p.data.image_size != 299,
        "Every experiment of a profile must run on a laptop CPU within the profile's time budget; 64 px keeps a "
        "lesion's outline and colour but not its fine texture.",
        "Lower clean accuracy and macro recall (tables 4.1-4.2). At a fixed L-inf budget an attack on fewer pixels "
        "has fewer directions to add up, so the change from clean under FGSM (tables 4.3-4.4) should be smaller. "
        "WebP removes relatively more of a small image, so the LLT's clean cost should be larger."),
    Departure(
        "networks", "Networks",
        "ResNet50 and InceptionV3 from keras.applications, ImageNet-pretrained (transfer learning)",
        _models_text,
        lambda p: not _thesis_models(p),
        "The full networks do not train on a CPU in the time budget, and ImageNet features fit 64 px images "
        "poorly; the small networks use the same kind of blocks (residual, Inception modules).",
        "Lower clean accuracy (the 4-14 point gap of table 4.1) and macro recall. How vulnerable a small network "
        "is compared with a large pretrained one has no predictable sign, which is why the thesis tables set the "
        "change from clean beside each value."),
    Departure(
        "epochs", "Training schedule",
        "50 epochs, batch 32",
        _epochs_text,
        lambda p: p.train.epochs != 50 or p.train.batch_size != 32,
        "The time budget of a CPU run.",
        "Slightly lower clean accuracy if the networks are under-trained; little direct effect on the attacks' "
        "changes from clean."),
    Departure(
        "retraining", "Adversarial retraining",
        "5 rounds x 5 epochs (25 epochs), half of the images perturbed per round",
        lambda p: (f"{_n(p.retraining.rounds, 'round')} x {_n(p.retraining.epochs_per_round, 'epoch')} "
                   f"({p.retraining.rounds * p.retraining.epochs_per_round} epochs), "
                   f"{p.retraining.fraction:.0%} of the images perturbed per round (`retraining.*`)"),
        lambda p: (p.retraining.rounds, p.retraining.epochs_per_round, p.retraining.fraction) != (5, 5, 0.5),
        "Each round recomputes the attack on the training images; the thesis's 25 epochs would take most of a "
        "CPU run.",
        "Smaller gains from retraining: accuracy under attack with retraining (tables 4.7-4.10) and with both "
        "defences (4.15-4.18) should be lower than a full schedule would give. The gap between grey and white box "
        "is the more telling number."),
    Departure(
        "poisoning_epochs", "Poisoning: epochs per poisoned model",
        "not stated (one model per fraction; presumably experiment 0's 50 epochs)",
        lambda p: (f"{_n(_poison_epochs(p), 'epoch')} per fraction (`poisoning.epochs`); the clean reference "
                   "(fraction 0) is trained alike"),
        lambda p: _poison_epochs(p) != 50,
        "Eight trainings per network (the clean reference and seven fractions) must fit the time budget.",
        "Lower absolute accuracy at every fraction. The drop against the clean point trained alike is what "
        "compares; a shorter schedule fits the flipped labels less, so the drop at small fractions may be "
        "smaller. The thesis gives no table for this experiment (only its figure 4.6)."),
    Departure(
        "class_weights", "Class weights",
        "class weights against the imbalance, formula not stated (we read it as inverse class frequency)",
        _weights_text,
        lambda p: (not p.train.class_weights) or float(p.train.class_weight_power) != 1.0,
        "In trial runs of the small networks on HAM10000, full inverse-frequency weights sent many nevi into the "
        "rare classes; the square root gave clearly higher accuracy at about the same macro recall.",
        "Higher accuracy than full weights with about the same macro recall; fewer predictions of the rare "
        "classes. Under the thesis's grouping (nv counted as cancerous) a higher sensitivity and a lower FNR."),
    Departure(
        "split", "Train/validation/test split",
        "by image (70% / 17.5% / 12.5%)",
        lambda p: f"by {'lesion' if p.data.split == 'by_lesion' else 'image'} (`data.split: {p.data.split}`)",
        lambda p: p.data.split != "by_image",
        "HAM10000 holds several photographs of many lesions; split by image, near-identical photographs land on "
        "both sides and the test set partly repeats the training set.",
        "Lower clean accuracy than an image split, whose numbers the leak inflates (tables 4.1-4.2); wider "
        "intervals, since lesions, not images, are resampled."),
    Departure(
        "uap_budget", "UAP budget",
        "never stated (ART's UAP with FGSM steps)",
        lambda p: (f"{attack_budgets(p)['uap']} (`uap.norm`, `uap.eps`/`uap.zeta`), crafted on "
                   f"{p.uap.n_train_images} training images in at most {_n(p.uap.max_iter, 'pass', 'passes')}; "
                   f"FGSM's budget is {attack_budgets(p)['fgsm']}"),
        lambda p: True,
        "A universal perturbation needs a budget and the thesis gives none; an L-inf budget four times FGSM's "
        "keeps the two attacks on one scale, and `uap.norm: 2` gives the L2 budget of Hirano et al. instead.",
        "Every UAP number depends on it directly: a larger budget lowers accuracy under the UAP further (tables "
        "4.5-4.6) and makes the defences' gains against it (4.9-4.10, 4.13-4.14, 4.17-4.18) harder to win. "
        "The thesis's near-zero accuracy under its UAP may reflect a larger budget, larger images, or both."),
    Departure(
        "fooling_rate", "\"Fooling rate\"",
        "its tables' fooling rate is the error rate under attack (1 - accuracy)",
        lambda p: ("both, by name: `error_rate` (1 - accuracy under attack) and `flip_rate` (share of "
                   "predictions the attack changed, the fooling rate of Moosavi-Dezfooli et al.)"),
        lambda p: True,
        "The UAP literature's fooling rate counts changed predictions; the thesis's counts wrong ones, which "
        "credits the attack with the clean model's own errors.",
        "No number of the comparison: the thesis's fooling-rate column is set beside our error rate. Our error "
        "rate is higher than it would be with the thesis's clean accuracy, because our clean model errs more; the "
        "flip rate does not carry that."),
    Departure(
        "grouping", "Malignant / benign grouping",
        "four \"cancerous\" classes holding 86% of the images, which counts nevi as cancerous",
        lambda p: ("both: `clinical` (mel, bcc, akiec malignant) for the verdicts and the missed-malignancy rate, "
                   "`thesis` for every comparison with its tables"),
        lambda p: True,
        "Nevi are benign moles; the clinical grouping is the one a reader needs, the thesis's is needed to "
        "compare with its tables.",
        "None in the thesis tables (read under its grouping). The verdicts' clinical FNR can move the opposite "
        "way to the thesis-grouping FNR: an attack that pushes nevi into bcc lowers one and raises the other."),
)


def departures_table(profile: Any) -> pd.DataFrame:
    """The departures from the thesis for ``profile``: one row per :data:`DEPARTURES` entry.

    Columns: ``difference``, ``thesis``, ``this run`` (read from the profile; "as in the
    thesis" added where it does not depart), ``why``, ``what it should move``.
    """
    rows = []
    for d in DEPARTURES:
        ours = d.ours(profile)
        if not d.differs(profile):
            ours += ", as in the thesis"
        rows.append({"difference": d.topic, "thesis": d.thesis, f"this run (`{profile.name}`)": ours,
                     "why": d.why, "what it should move": d.moves})
    return pd.DataFrame(rows)


def departures_markdown(profile: Any) -> str:
    """:func:`departures_table` as Markdown: a three-column table (difference, thesis, this
    run) that fits the page at a glance, then one paragraph per departure with what it
    should move and why (prose in a five-column table is wider than the content column)."""
    table = departures_table(profile)
    ours = f"this run (`{profile.name}`)"
    cells = table[["difference", "thesis", ours]]

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(cells.columns) + " |\n|" + "---|" * len(cells.columns) + "\n"
    body = "\n".join("| " + " | ".join(cell(v) for v in row) + " |" for row in cells.itertuples(index=False))
    effects = "\n".join(f"- **{r['difference']}.** {r['what it should move']} *Why we depart:* {r['why']}"
                         for _, r in table.iterrows())
    return f"{head}{body}\n\n**What each departure should move, and why.**\n\n{effects}\n"
