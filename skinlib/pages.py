"""Small display helpers shared by the book's notebooks (figures, tables, thesis rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from skinlib.context import Run
from skinlib.labels import CLASSES
from skinlib.models import MODELS


def show(run: "Run | Path", fig, name: str) -> None:
    """Save ``fig`` under the run's figures (or ``<folder>/figures/`` when given a folder),
    its titles in the PNG, and display it as a PNG (whatever the backend)."""
    from IPython.display import Image, display

    from skinlib.plots import save_page_figure

    folder = run if isinstance(run, (str, Path)) else run.results_dir
    path = save_page_figure(fig, folder, name)
    display(Image(data=Path(path).read_bytes(), format="png"))


def model_map(run: Run) -> dict[str, str]:
    """Our model names -> the thesis model of the same family (resnet50 / inceptionv3)."""
    return {m: MODELS[m].thesis_name for m in run.profile.models}


def thesis_rows(run: Run, results: pd.DataFrame, tables: Sequence[str], *,
                param_filter: Optional[dict[str, Any]] = None):
    """The thesis's ``tables`` re-made beside ours (:func:`skinlib.report.thesis_tables`), as HTML.

    Rows = models, each cell ``"thesis | ours [95% interval]"`` in percent, and for an
    attacked system the change from the clean model beside each value. The clean
    baselines come from experiment 0: from ``results`` when it holds them, else from the
    run's (or the profile's published) ``exp0_classifier.csv``.
    """
    from IPython.display import HTML

    from skinlib.paths import results_dir as profile_results_dir
    from skinlib.report import attack_budgets, load_thesis_tables, thesis_tables, thesis_tables_html
    from skinlib.results import read_results

    thesis = load_thesis_tables()
    if thesis.empty:
        return pd.DataFrame({"note": ["thesis tables not found (set SKINLIB_THESIS_TABLES)"]})
    ours = results
    if not (results["experiment"] == "exp0_classifier").any():
        for folder in (run.results_dir, profile_results_dir(run.profile.name)):
            csv = Path(folder) / "exp0_classifier.csv"
            if csv.is_file():
                ours = pd.concat([read_results(csv), results], ignore_index=True)
                break
    filters = {"exp2_1_fgsm": run.profile.fgsm.eps, **(param_filter or {})}
    views = thesis_tables(ours, thesis, model_map=model_map(run), tables=tables, param_filter=filters,
                          budgets=attack_budgets(run.profile))
    return HTML(thesis_tables_html(views))


def confusions(y_true: np.ndarray, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """7x7 matrices of counts per model (the figure normalises rows and titles the real image count)."""
    from skinlib.metrics import confusion

    return {name: confusion(y_true, pred, normalize=None) for name, pred in predictions.items()}


def health_confusions(y_true: np.ndarray, predictions: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    from skinlib.labels import GROUPINGS
    from skinlib.metrics import health_confusion

    return {name: {g: health_confusion(y_true, pred, g) for g in GROUPINGS} for name, pred in predictions.items()}


def value(results: pd.DataFrame, **where: Any) -> float:
    """The single value of ``results`` matching ``where`` (column=value), NaN if none."""
    rows = results
    for col, val in where.items():
        rows = rows[rows[col].astype(str) == str(val)]
    return float(rows["value"].iloc[0]) if len(rows) else float("nan")


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def labels() -> list[str]:
    return list(CLASSES)


# ---------------------------------------------------------------- the defence chapters (3.1-3.3)

def defence_tables(results: pd.DataFrame) -> list:
    """Clean cost of a defence, then model and health metrics under attack (both settings).

    Compact tables (:func:`compact_table`): percent values with their 95% interval in
    one unbreakable cell, one index column, at most five metric columns.
    """
    clean = results[results["attack"] == "none"]
    attacked = results[results["attack"] != "none"]
    index = ["attack", "setting"]
    return [
        styled(compact_table(clean, index=["model", "param"], metrics=["accuracy", "macro_recall", "fnr"],
                             grouping="clinical")),
        TablesBy(attacked, "model", index=index, grouping=None,
                 metrics=["accuracy", "macro_recall", "macro_specificity", "error_rate", "flip_rate"]),
        TablesBy(attacked, "model", index=index, grouping="clinical",
                 metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"]),
    ]


def show_defence_confusions(run: Run, outcomes: dict, experiment: str, defence: str) -> None:
    """Grey-box confusion matrices (7-class and malignant/benign) for FGSM and ART's UAP."""
    from skinlib import plots

    y = run.y("test")
    for attack in ("fgsm", "uap_art"):
        preds = {m: o.predictions[f"{attack}/greybox"] for m, o in outcomes.items()}
        title = f"{attack_title(run, attack, 'greybox')}, defence: {defence}"
        show(run, plots.confusion_matrices(confusions(y, preds), labels(), title), f"{experiment}_confusion_{attack}")
        show(run, plots.health_confusions(health_confusions(y, preds), title),
             f"{experiment}_health_confusion_{attack}")


def undefended_results(run: Run) -> pd.DataFrame:
    """The undefended model's rows the defence chapters compare with: experiment 0 (clean),
    2.1 and 2.2 (grey-box attacks), read from this run's results folder (empty if absent)."""
    from skinlib.results import read_results

    paths = [earlier_result(run, e) for e in ("exp0_classifier", "exp2_1_fgsm", "exp2_2_uap")]
    frames = [read_results(p) for p in paths if p is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=results_columns())


def results_columns() -> list[str]:
    from skinlib.results import COLUMNS

    return list(COLUMNS)


def show_defence_comparison(run: Run, results: pd.DataFrame, experiment: str, defence: str) -> None:
    """The defence chapter's headline figure: accuracy and clinical FNR, undefended vs defended."""
    from skinlib import plots

    fig = plots.defence_comparison(results, undefended_results(run), defence, params={"fgsm": run.profile.fgsm.eps},
                                   models=list(run.profile.models),
                                   title=f"attacks: FGSM eps {eps255(run.profile.fgsm.eps)}, UAPs {uap_budget(run)}")
    show(run, fig, f"{experiment}_comparison")


# ---------------------------------------------------------------- titles and compact tables

def eps255(eps: float) -> str:
    """``2/255`` for eps = 2/255 (the unit the thesis and the book quote)."""
    return f"{eps * 255:.3g}/255"


def uap_budget(run: Run) -> str:
    """The UAP's budget in words: ``L-inf 8/255`` or ``L2 zeta 4% of the mean image norm``."""
    u = run.profile.uap
    return f"L-inf {eps255(u.eps)}" if str(u.norm) == "inf" else f"L2 {u.zeta:.0%} of the mean image norm"


def attack_title(run: Run, attack: str, setting: str = "greybox") -> str:
    """``"FGSM eps 2/255, grey box"``: an attack, its budget and its setting, for figure titles."""
    from skinlib.plots import ATTACK_TEXT, SETTING_TEXT

    name = ATTACK_TEXT.get(attack, attack)
    if attack in ("fgsm", "pgd"):
        name += f" eps {eps255(run.profile.fgsm.eps)}"
    elif attack.startswith("uap"):
        name += f" {uap_budget(run)}"
    return f"{name}, {SETTING_TEXT.get(setting, setting)}"


#: The widest a compact table row may be, in characters (index and cells): about what a
#: book page shows without scrolling at a 1280 px wide window.
MAX_TABLE_CHARS = 100


def format_cell(value: float, low: float = float("nan"), high: float = float("nan"), ci_decimals: int = 1) -> str:
    """``"61.2 [58.1, 64.0]"``: a fraction as percent with its 95% interval (no % signs, to stay narrow)."""
    if value != value:
        return "—"
    s = f"{100 * value:.1f}"
    if low == low and high == high:
        s += f" [{100 * low:.{ci_decimals}f}, {100 * high:.{ci_decimals}f}]"
    return s


def table_width(table: pd.DataFrame) -> int:
    """Characters of the widest body row of a display table (index, cells, two per column gap;
    headers wrap, so they do not count)."""
    widths = [len(str(i)) + sum(len(str(c)) + 2 for c in row) for i, row in zip(table.index, table.to_numpy())]
    return max(widths, default=0)


def compact_table(results: pd.DataFrame, index: Sequence[str] = ("model",), metrics: Optional[Sequence[str]] = None,
                  *, grouping: Optional[str] = "clinical") -> pd.DataFrame:
    """A narrow display table: one row per ``index`` combination (joined in one column),
    one column per metric ("accuracy %"), cells ``"61.2 [58.1, 64.0]"`` (percent, 95% interval);
    where that makes a row wider than :data:`MAX_TABLE_CHARS`, the intervals are rounded to
    whole percent (``"61.2 [58, 64]"``).

    Health metrics are taken under ``grouping`` (None keeps every row; put ``grouping`` in
    ``index`` then). Several rows for one cell raise a :class:`SkinlibError`.
    """
    from skinlib.report import check_unique, filter_grouping, metric_label, ordered_metrics, tidy

    index = list(index)
    d = tidy(results, required=(*index, "metric", "value"))
    if metrics is not None:
        d = d[d["metric"].isin(list(metrics))]
    d = filter_grouping(d, grouping)
    check_unique(d, [*index, "metric"], "compact_table")
    if d.empty:
        return pd.DataFrame(columns=[f"{metric_label(m)} %" for m in (metrics or [])])
    order = [m for m in metrics if m in set(d["metric"])] if metrics is not None else ordered_metrics(d["metric"])
    keys = [" · ".join(str(v) for v in row if str(v) != "") for row in d[index].astype(str).to_numpy().tolist()]
    for ci_decimals in (1, 0):
        cells = [format_cell(v, lo, hi, ci_decimals) for v, lo, hi in zip(d["value"], d["ci_low"], d["ci_high"])]
        table = d.assign(_row=keys, _cell=cells).pivot(index="_row", columns="metric", values="_cell")
        table = table.reindex(index=list(dict.fromkeys(keys)), columns=order).fillna("—")
        table.columns = [f"{metric_label(m)} %" for m in order]
        table.index.name = " · ".join(index)
        table.columns.name = None
        if table_width(table) <= MAX_TABLE_CHARS:
            break
    return table


class TablesBy:
    """One :func:`compact_table` per value of ``by`` (e.g. per model), each under its name:
    narrower than one table with ``by`` in every row. ``tables`` maps each value to its
    table; in a notebook it displays as HTML (the tables never wrap a cell)."""

    def __init__(self, results: pd.DataFrame, by: str, **kw: Any) -> None:
        self.by = by
        self.tables = {str(v): compact_table(rows, **kw) for v, rows in results.groupby(by, sort=False)}

    def _repr_html_(self) -> str:
        return "\n".join(f"<p><strong>{self.by} {name}</strong></p>\n{styled(t).to_html()}"
                         for name, t in self.tables.items())

    def __repr__(self) -> str:
        return "\n\n".join(f"{self.by} {name}\n{t.to_string()}" for name, t in self.tables.items())


def styled(table: pd.DataFrame, wrap: Sequence[str] = ()):
    """``table`` as a Styler whose cells never wrap (value and interval stay on one line; headers may),
    except those of the text columns named in ``wrap``, which may wrap (at least 9em wide)."""
    style = table.style.set_table_styles([
        {"selector": "td, th.row_heading", "props": "white-space: nowrap; font-size: 0.85em; padding: 0.2em 0.5em;"},
        {"selector": "th.col_heading", "props": "font-size: 0.85em; padding: 0.2em 0.5em; text-align: right;"},
    ])
    if wrap:
        style = style.set_properties(subset=list(wrap), **{"white-space": "normal !important", "min-width": "9em"})
    return style



def defence_reading(results: pd.DataFrame, models: Sequence[str]):
    """One generated sentence per model and attack: grey- and white-box accuracy, and what they say.

    Words follow :data:`skinlib.verdicts.WORD_RULE`: the white box is said to lower
    accuracy against the grey box only when the paired interval (``accuracy_vs_greybox``)
    excludes 0, or, without a paired row, when the two intervals do not overlap; the
    same for the gain over the undefended model (``accuracy_vs_undefended``) where the
    results hold it. No sentence says a defence "holds": that word is experiment 4's.
    """
    from IPython.display import Markdown

    from skinlib.report import tidy
    from skinlib.verdicts import change_clause, measure

    res = tidy(results, required=("model", "attack", "setting", "metric", "value"))
    names = {"fgsm": "FGSM", "uap_art": "ART's UAP", "uap_fast": "the fast UAP"}
    lines = []
    for m in models:
        for attack, name in names.items():
            rows = res[(res["model"] == m) & (res["attack"] == attack)]
            grey, white = rows[rows["setting"] == "greybox"], rows[rows["setting"] == "whitebox"]
            if grey.empty or white.empty:
                continue
            vs_grey = measure(white, grey, "accuracy", reference="greybox")
            text = (f"- **{m}**, {name}: crafting the attack through the defence (white box) instead of on the "
                    f"undefended model (grey box) {change_clause(vs_grey, 'accuracy')}")
            if vs_grey.direction < 0:
                text += "; the grey-box number overstates the protection against an attacker who knows the defence"
            gains = []
            for setting, part in (("grey box", grey), ("white box", white)):
                gain = measure(part, None, "accuracy", reference="undefended")
                if gain.paired:
                    gains.append(f"in the {setting} it {change_clause(gain, 'accuracy')}")
            if gains:
                text += ". Against the undefended model under the same attack: " + "; ".join(gains)
            lines.append(text + ".")
    rule = ("Generated from this run's results; a change is named only when its paired 95% interval excludes 0 "
            "(or, marked *unpaired*, when the two systems' intervals do not overlap). Whether a defence holds "
            "against an adaptive attacker is decided in the adaptive chapter, not here.")
    return Markdown(rule + "\n\n" + "\n".join(lines))


# ---------------------------------------------------------------- generated sentences (no typed numbers)

def class_weight_text(run: Run) -> str:
    """How this run weighted the classes in training, read from the profile."""
    t = run.profile.train
    if not t.class_weights:
        return "no class weights (every image counts the same)"
    p = float(t.class_weight_power)
    if p == 1.0:
        return "class weights proportional to the inverse class frequency (as in the thesis)"
    if p == 0.5:
        return "class weights proportional to the square root of the inverse class frequency"
    return f"class weights proportional to the inverse class frequency to the power {p:g}"


def training_text(run: Run) -> str:
    """Experiment 0's schedule of this run, in one sentence (from the profile)."""
    t = run.profile.train
    fine = (f", then {t.fine_tune_epochs} fine-tuning epochs at {t.fine_tune_learning_rate:g}"
            if t.fine_tune_epochs else "")
    return (f"Schedule of this run (profile `{run.profile.name}`): models {', '.join(run.profile.models)}; "
            f"{t.epochs} epochs, batch {t.batch_size}, learning rate {t.learning_rate:g}{fine}; "
            f"{class_weight_text(run)}; augmentation {'on' if t.augment else 'off'}; "
            f"{run.profile.data.image_size} px images.")


def retraining_text(run: Run) -> str:
    """Experiment 3.1's schedule of this run beside the thesis's (from the profile)."""
    c = run.profile.retraining
    same = (c.rounds, c.epochs_per_round) == (5, 5)
    return (f"Schedule of this run (profile `{run.profile.name}`): {c.rounds} round(s) of {c.epochs_per_round} "
            f"epoch(s) each, {c.fraction:.0%} of the training and validation images perturbed per round"
            + (", as in the thesis." if same else "; the thesis ran 5 rounds of 5 epochs (profile `thesis`)."))


def budget_text(run: Run) -> str:
    """The UAP's budget beside FGSM's: they differ, so the two attacks' damage is not compared at equal size."""
    f, u = run.profile.fgsm, run.profile.uap
    if str(u.norm) == "inf":
        ratio = u.eps / f.eps if f.eps else float("nan")
        rel = ("the same as" if abs(ratio - 1) < 1e-6 else f"{ratio:.3g} times")
        return (f"Budget: the UAP may change each pixel by up to {eps255(u.eps)} (L-inf), {rel} FGSM's "
                f"{eps255(f.eps)} of experiment 2.1" + ("" if abs(ratio - 1) < 1e-6 else
                ": a universal perturbation needs a larger budget to fool images it was not computed on, "
                "so the two pages' numbers are not a comparison at equal perturbation size") + ".")
    return (f"Budget: the UAP is bounded in L2 ({u.zeta:.0%} of the mean image norm), FGSM in L-inf "
            f"({eps255(f.eps)}): the two budgets are of different kinds, so the pages' numbers are not a "
            "comparison at equal perturbation size.")


def uap_collapse(y_true: np.ndarray, pred_clean: np.ndarray, pred_uap: np.ndarray) -> dict[str, Any]:
    """Where a UAP sends the predictions: its most frequent predicted class and that class's
    share under the UAP and on clean images, and whether it is malignant under each grouping."""
    from skinlib.labels import GROUPINGS

    k = len(CLASSES)
    uap = np.bincount(np.asarray(pred_uap, dtype=int), minlength=k) / max(len(pred_uap), 1)
    clean = np.bincount(np.asarray(pred_clean, dtype=int), minlength=k) / max(len(pred_clean), 1)
    top = int(np.argmax(uap))
    name = CLASSES[top]
    return {"class": name, "share": float(uap[top]), "clean_share": float(clean[top]),
            "malignant": {g: name in pos for g, pos in GROUPINGS.items()}}


def uap_reading(run: Run, results: pd.DataFrame, outcomes: dict, attack: str = "uap_art") -> str:
    """Per model: the share of predictions the UAP sends into its most frequent class, and
    what that does to the clinical FNR (a collapse into a malignant class lowers it)."""
    from skinlib.plots import ATTACK_TEXT

    y = run.y("test")
    lines = []
    for m, o in outcomes.items():
        c = uap_collapse(y, o.predictions["clean"], o.predictions[attack])
        fnr_clean = value(results, model=m, attack=attack, metric="fnr", grouping="clinical")
        delta = value(results, model=m, attack=attack, metric="fnr_vs_clean", grouping="clinical")
        before = fnr_clean - delta if delta == delta else float("nan")
        line = (f"- **{m}**: under {ATTACK_TEXT.get(attack, attack)}, {pct(c['share'])} of the test predictions "
                f"are `{c['class']}` (against {pct(c['clean_share'])} on clean images).")
        kind = "malignant" if c["malignant"]["clinical"] else "benign"
        if fnr_clean == fnr_clean and before == before:
            change = "falls" if fnr_clean < before else "rises" if fnr_clean > before else "stays"
            line += f" `{c['class']}` is {kind} under the clinical grouping, and the clinical FNR " + (
                f"{change} from {pct(before)} (clean) to {pct(fnr_clean)}" if change != "stays"
                else f"stays at {pct(fnr_clean)}")
            if change == "falls" and c["malignant"]["clinical"]:
                line += (": it falls because the perturbation pushes images of every class into a malignant "
                         "class, so fewer malignant lesions are called benign, not because the model sees "
                         "them better (the specificity shows the price).")
            else:
                line += "."
        lines.append(line)
    return "On this run:\n\n" + "\n".join(lines)


def llt_cost_text(run: Run, results: pd.DataFrame, defence: str = "the LLT") -> str:
    """The defence's cost on clean images: accuracy and clinical FNR without and with it, per model."""
    und = clean_results(run)
    clean = results[(results["attack"] == "none") & (results["setting"] == "clean")]
    params = clean["param"].astype(str)
    variants = [""] if (params == "").any() else list(dict.fromkeys(params))
    lines = []
    for m in run.profile.models:
        for variant in variants:
            rows = []
            for metric, grouping in (("accuracy", ""), ("fnr", "clinical")):
                base = und[(und["model"] == m) & (und["metric"] == metric) & (und["grouping"] == grouping)]
                withd = clean[(clean["model"] == m) & (clean["metric"] == metric) & (clean["grouping"] == grouping)
                              & (params == variant)]
                b = float(base["value"].iloc[0]) if len(base) else float("nan")
                w = withd.iloc[0] if len(withd) else None
                wv = float(w["value"]) if w is not None else float("nan")
                ci = (f" [{pct(float(w['ci_low']))}, {pct(float(w['ci_high']))}]"
                      if w is not None and w["ci_low"] == w["ci_low"] else "")
                label = "accuracy" if metric == "accuracy" else "clinical FNR (malignant lesions called benign)"
                diff = (f", {100 * (wv - b):+.1f} points" if b == b and wv == wv else "")
                rows.append(f"{label} {pct(b)} without, {pct(wv)}{ci} with{diff}")
            lines.append(f"- **{m}**" + (f" ({variant})" if variant else "") + ": " + "; ".join(rows) + ".")
    return (f"The cost of {defence} on clean test images, on this run:\n\n" + "\n".join(lines)
            + "\n\nA rise of the clean FNR is a cost paid on every patient, attacked or not.")


def with_clean_point(results: pd.DataFrame, clean: pd.DataFrame, attacks: Sequence[str],
                     metrics: Sequence[str] = ("accuracy", "flip_rate", "error_rate")) -> pd.DataFrame:
    """``results`` plus an eps = 0 point per model and attack: the clean model's value
    (from ``clean``, experiment 0's rows) for accuracy and error rate; flip rate 0."""
    from skinlib.report import tidy

    c = tidy(clean)
    c = c[(c["attack"] == "none") & (c["setting"] == "clean") & (c["grouping"] == "")]
    extra = []
    for model in dict.fromkeys(results["model"]):
        acc = c[(c["model"] == model) & (c["metric"] == "accuracy")]
        if acc.empty:
            continue
        a = acc.iloc[0]
        vals = {"accuracy": (a["value"], a["ci_low"], a["ci_high"]),
                "error_rate": (1 - a["value"], 1 - a["ci_high"], 1 - a["ci_low"]),
                "flip_rate": (0.0, 0.0, 0.0)}
        for attack in attacks:
            if not ((results["model"] == model) & (results["attack"] == attack)).any():
                continue
            for metric in metrics:
                if metric not in vals:
                    continue
                v, lo, hi = vals[metric]
                extra.append({**{k: a[k] for k in ("profile", "experiment", "model", "defence") if k in a},
                              "attack": attack, "setting": "greybox", "param": "0", "grouping": "",
                              "metric": metric, "value": v, "ci_low": lo, "ci_high": hi})
    return pd.concat([results, pd.DataFrame(extra)], ignore_index=True) if extra else results


# ---------------------------------------------------------------- provenance and benchmarks

def display_path(text: Any) -> Any:
    """A path (or a string holding paths) relative to the project (``./...``) or to ``~``."""
    import os

    from skinlib.paths import ROOT

    if not isinstance(text, str):
        return text
    out = text
    for base, short in ((str(ROOT), "."), (os.path.expanduser("~"), "~")):
        if base and base not in ("/", "."):
            out = out.replace(base + "/", short + "/").replace(base, short)
    # other absolute paths: keep their last part, clearly marked
    return out


def provenance_runs(prov: dict[str, Any]) -> pd.DataFrame:
    """The pages of a run as a narrow table: one row per page (the index), columns
    ``status``, ``seed``, ``minutes``, ``peak GiB``, ``ended`` (UTC, to the minute) and
    ``commit`` (10 characters). ``prov`` is ``provenance.json`` (its ``experiments``).

    Examples:
        >>> provenance_runs({"experiments": {"data": {"status": "ok", "seed": 0, "duration_s": 90,
        ...     "peak_memory_mib": 512, "ended": "2026-12-02T14:10:25+00:00", "git_commit": "5659ac1295069c"}}})
        ... # doctest: +NORMALIZE_WHITESPACE
             status  seed  minutes  peak GiB             ended      commit
        page
        data     ok     0      1.5       0.5  2026-12-02 14:10  5659ac1295
    """
    rows = {}
    for page, r in (prov.get("experiments") or {}).items():
        ended = str(r.get("ended") or "")
        rows[page] = {
            "status": r.get("status", ""),
            "seed": r.get("seed", ""),
            "minutes": round(float(r["duration_s"]) / 60, 1) if r.get("duration_s") is not None else float("nan"),
            "peak GiB": round(float(r["peak_memory_mib"]) / 1024, 1) if r.get("peak_memory_mib") is not None
            else float("nan"),
            "ended": ended[:16].replace("T", " "),
            "commit": str(r.get("git_commit") or "")[:10],
        }
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["status", "seed", "minutes", "peak GiB", "ended", "commit"])
    table.index.name = "page"
    return table


def provenance_view(prov: dict[str, Any]) -> dict[str, Any]:
    """``provenance.json`` as the book shows it: the dataset's real image count in place of
    the profile's unused synthetic ``n_images``, and every path relative to the project or ``~``.

    Absolute paths outside both (a data folder) keep only their last two parts, after ``…/``.
    """
    import copy
    import re

    view = copy.deepcopy(prov)
    params = view.get("parameters") or {}
    data = params.get("data") or {}
    images = (view.get("dataset") or {}).get("images")
    if "n_images" in data:
        if images is not None:
            data["n_images"] = images
        elif data.get("source") != "synthetic":
            data.pop("n_images")

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, str):
            v = display_path(v)
            return re.sub(r"(?<![\w.~])/(?:[^\s/]+/)+([^\s/]+/[^\s/]+)", r"…/\1", v)
        return v

    return clean(view)


def benchmark_tables(folder: Path) -> list[tuple[str, Optional[str], pd.DataFrame]]:
    """The benchmark CSVs as ``(benchmark, profile, table)``, one table per profile
    (synthetic ``default`` rows apart from real ``ham10000`` ones); profile None where a
    CSV has no profile column."""
    out = []
    for csv in sorted(Path(folder).glob("*.csv")) if Path(folder).is_dir() else []:
        table = pd.read_csv(csv)
        if "profile" not in table.columns:
            out.append((csv.stem, None, table))
            continue
        for profile, rows in table.groupby("profile", sort=True):
            out.append((csv.stem, str(profile), rows.drop(columns=["profile"]).reset_index(drop=True)))
    return out


#: A benchmark table's text column longer than this goes below the table as a list, not into it.
LONG_TEXT = 24


def benchmark_view(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One benchmark table narrow enough for the book's column, and what it took out, in words.

    Columns with one value in every row become one line ("every row: ..."); text columns
    longer than :data:`LONG_TEXT` characters become a list per row (keyed by ``method``);
    floats keep three significant digits; underscores in headers and method names become spaces
    (so they can wrap). The CSV under ``results/benchmarks/`` keeps all.

    Examples:
        >>> view, words = benchmark_view(pd.DataFrame({"method": ["a", "b"], "wall_s": [1.23456, 2.0],
        ...                                             "images": [512, 512]}))
        >>> list(view.columns), words
        (['method', 'wall s'], 'Every row: images 512.')
    """
    key = "method" if "method" in table.columns else None
    constant = [c for c in table.columns if c != key and len(table) > 1 and table[c].nunique(dropna=False) == 1]
    long_text = [c for c in table.columns if c not in constant and c != key
                 and table[c].map(lambda v: isinstance(v, str) and len(v) > LONG_TEXT).any()]
    view = table.drop(columns=constant + long_text)
    view = view.apply(lambda col: col.map(lambda v: float(f"{v:.3g}")) if col.dtype.kind == "f" else col)
    # headers and names may wrap in the book's column: snake_case read as words
    view = view.rename(columns=lambda c: str(c).replace("_", " "))
    if key:
        view[key] = view[key].astype(str).str.replace("_", " ")
    blocks = []
    if constant:
        blocks.append("Every row: " + "; ".join(f"{c} {table[c].iloc[0]}" for c in constant) + ".")
    for c in long_text:
        blocks.append(f"`{c}` of each row:\n" + "\n".join(f"- {row[key] if key else i}: {row[c]}"
                                                          for i, row in table.iterrows()))
    return view, "\n\n".join(blocks)


def benchmark_uap_note(table: pd.DataFrame, results_root: Optional[Path] = None) -> str:
    """Why the ART UAP flip rate of the benchmark differs from experiment 2.2's (generated from the rows)."""
    import inspect

    from skinlib.attacks import uap_art
    from skinlib.results import read_results

    default_delta = inspect.signature(uap_art).parameters["delta"].default
    lines = []
    for profile, rows in table.groupby("profile", sort=True):
        art = rows[rows["method"] == "uap_art"].reset_index(drop=True)
        if art.empty:
            continue
        # where the benchmark ran ART under several stopping rules, the one experiment 2.2 uses
        deltas = art.get("schedule", pd.Series("", index=art.index)).astype(str).str.extract(r"delta=([0-9.]+)")[0]
        same_rule = art[pd.to_numeric(deltas, errors="coerce") == default_delta]
        a = (same_rule if not same_rule.empty else art).iloc[0]
        delta = deltas[a.name] if isinstance(deltas[a.name], str) else "?"
        loaded = " (loaded from a file by the script, not experiment 0's model of a run)" \
            if "(loaded)" in str(a["model"]) else ""
        line = (f"- `{profile}`: the benchmark's ART UAP ran with delta={delta} (ART's stop criterion: with 0, every "
                f"pass runs) on the model `{a['model']}`{loaded}, and fooled {float(a['test_flip_rate']):.1%} of "
                f"{int(a['test_images']):,} test images. Experiment 2.2 runs ART with delta={default_delta} (it stops "
                f"once {1 - default_delta:.0%} of the training images are fooled) on its own experiment-0 models")
        if results_root is not None:
            p = Path(results_root) / str(profile) / "exp2_2_uap.csv"
            if p.is_file():
                r = read_results(p)
                model = str(a["model"]).split("(")[0].split(":")[0]
                v = value(r, model=model, attack="uap_art", metric="flip_rate")
                if v == v:
                    line += f", where ART's UAP flips {pct(v)} of the test predictions of `{model}`"
        lines.append(line + ": the two flip rates measure different runs and are not expected to agree.")
    return "\n".join(lines)


def clean_results(run: Run) -> pd.DataFrame:
    """Experiment 0's rows of this run (the clean, undefended models), empty if not run yet."""
    from skinlib.results import read_results

    path = earlier_result(run, "exp0_classifier")
    return read_results(path) if path is not None else pd.DataFrame(columns=results_columns())


def earlier_result(run: Run, experiment: str) -> Optional[Path]:
    """The CSV an earlier page of this run wrote, or None: in the page's own results folder,
    else in the folder its staging folder will be promoted to (``<out>/.staging/<page>``)."""
    folders = [run.results_dir]
    if run.results_dir.parent.name == ".staging":
        folders.append(run.results_dir.parent.parent)
    for folder in folders:
        path = folder / f"{experiment}.csv"
        if path.is_file():
            return path
    return None


def benchmark_banner(found: Sequence[tuple[str, Optional[str], pd.DataFrame]], book_profile: str) -> str:
    """A banner for the benchmarks page: which of its profiles ran on synthetic and which on real data."""
    from skinlib.profiles import load_profile

    kinds = []
    for prof in dict.fromkeys(p for _, p, _ in found if p is not None):
        try:
            source = load_profile(prof).data.source
        except Exception:  # a profile no longer in profiles/: say what the rows say
            source = "unknown"
        what = ("synthetic images: they time the code and say nothing about skin lesions" if source == "synthetic"
                else f"real images, source `{source}`")
        kinds.append(f"`{prof}` ({what})")
    listed = "; ".join(kinds) if kinds else "none yet"
    return (f"> ℹ **Note: these tables are per benchmark profile, not the book's profile `{book_profile}`.**\n>\n"
            f"> Each table holds one profile's rows: {listed}. The benchmark scripts are run on their own, "
            "not by `skinlib run`; a table without a profile did not record one.\n")


# ---------------------------------------------------------------- the attack chapters' readings

def classifier_reading(results: pd.DataFrame, models: Sequence[str]) -> str:
    """Experiment 0: accuracy, macro recall and clinical FNR per model."""
    lines = []
    for m in models:
        lines.append(f"- **{m}**: accuracy {pct(value(results, model=m, metric='accuracy'))}, macro recall "
                     f"{pct(value(results, model=m, metric='macro_recall'))}; it misses "
                     f"{pct(value(results, model=m, metric='fnr', grouping='clinical'))} of the malignant test "
                     "images (clinical FNR).")
    return ("On this run:\n\n" + "\n".join(lines) + "\n\nThe gap between accuracy and macro recall measures how "
            "much the accuracy owes to the majority class (nevi).")


def poisoning_reading(results: pd.DataFrame, models: Sequence[str], top: float) -> str:
    """Experiment 1: nv and bkl recall, accuracy, and the FNR under both groupings, clean vs the largest fraction."""
    from skinlib.experiments import fmt_param

    p0, p1 = fmt_param(0.0), fmt_param(top)

    def at(m: str, p: str, metric: str, grouping: str = "") -> str:
        kw = {"grouping": grouping} if grouping else {}
        return pct(value(results, model=m, param=p, metric=metric, **kw))

    lines = []
    for m in models:
        lines.append(f"- **{m}**: recall of nv {at(m, p0, 'recall_nv')} clean, {at(m, p1, 'recall_nv')} at {top:.0%} "
                     f"flipped; recall of bkl {at(m, p0, 'recall_bkl')} -> {at(m, p1, 'recall_bkl')}; accuracy "
                     f"{at(m, p0, 'accuracy')} -> {at(m, p1, 'accuracy')}; FNR under the clinical grouping "
                     f"{at(m, p0, 'fnr', 'clinical')} -> {at(m, p1, 'fnr', 'clinical')}, under the thesis's "
                     f"{at(m, p0, 'fnr', 'thesis')} -> {at(m, p1, 'fnr', 'thesis')}.")
    return ("On this run:\n\n" + "\n".join(lines) + "\n\nAn nv -> bkl flip moves images between two benign classes "
            "of the clinical grouping, but from \"cancerous\" to \"healthy\" under the thesis's: only the latter FNR "
            "can measure it.")


def fgsm_reading(results: pd.DataFrame, models: Sequence[str], key: str) -> str:
    """Experiment 2.1: accuracy under FGSM, PGD and noise at the thesis's eps."""
    lines = []
    for m in models:
        def acc(attack: str) -> str:
            return pct(value(results, model=m, attack=attack, param=key, metric="accuracy"))

        lines.append(f"- **{m}**: accuracy {acc('fgsm')} under FGSM (flip rate "
                     f"{pct(value(results, model=m, attack='fgsm', param=key, metric='flip_rate'))}), {acc('pgd')} "
                     f"under PGD and {acc('random')} under random noise of the same size.")
    return "At the thesis's eps, on this run:\n\n" + "\n".join(lines)


def uap_flip_reading(results: pd.DataFrame, models: Sequence[str]) -> str:
    """Experiment 2.2: test flip rates of both UAPs against noise of the same norm."""
    lines = []
    for m in models:
        def flip(attack: str) -> str:
            return pct(value(results, model=m, attack=attack, metric="flip_rate"))

        lines.append(f"- **{m}**: test flip rate {flip('uap_art')} (ART) and {flip('uap_fast')} (fast), against "
                     f"{flip('random')} for random noise of the same norm.")
    return "On this run:\n\n" + "\n".join(lines)


def leakage_text(table: pd.DataFrame) -> str:
    """Experiment 0's leakage check in words (rows of :func:`skinlib.experiments.split_leakage`).

    Examples:
        >>> t = pd.DataFrame({"model": ["m", "m"], "split": ["by_image", "by_lesion"], "test_images": [100, 90],
        ...                   "seen_lesion_share": [0.2, 0.0], "accuracy": [0.8, 0.7], "ci_low": [0.75, 0.65],
        ...                   "ci_high": [0.85, 0.75], "fnr": [0.3, 0.4]})
        >>> "10.0 points" in leakage_text(t)
        True
    """
    rows = table.set_index("split")
    image, lesion = rows.loc["by_image"], rows.loc["by_lesion"]
    gap = image["accuracy"] - lesion["accuracy"]
    apart = image["ci_low"] > lesion["ci_high"] or lesion["ci_low"] > image["ci_high"]
    return (f"Split by image, {pct(image['seen_lesion_share'])} of {image['model']}'s test images show a lesion "
            f"it also saw in training (by lesion: {pct(lesion['seen_lesion_share'])}). Its test accuracy is "
            f"{pct(image['accuracy'])} ({pct(image['ci_low'])}-{pct(image['ci_high'])}) split by image and "
            f"{pct(lesion['accuracy'])} ({pct(lesion['ci_low'])}-{pct(lesion['ci_high'])}) split by lesion: "
            f"{100 * gap:+.1f} points for the image split, "
            + ("a measurable difference (the two intervals do not overlap)" if apart else
               "within the two intervals (they overlap; the test sets differ, so no paired interval exists)")
            + f". The clinical FNR is {pct(image['fnr'])} against {pct(lesion['fnr'])}. The thesis's absolute "
            "numbers, from a split by image, carry this leakage.")
