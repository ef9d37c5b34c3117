"""Small display helpers shared by the book's notebooks (figures, tables, thesis rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from skinlib.context import Run
from skinlib.labels import CLASSES
from skinlib.models import MODELS


def show(run: Run, fig, name: str) -> None:
    """Save ``fig`` under the run's figures and display it as a PNG (whatever the backend)."""
    from IPython.display import Image, display

    path = run.save_figure(fig, name)
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
    from skinlib.metrics import confusion

    return {name: confusion(y_true, pred, normalize="true") for name, pred in predictions.items()}


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

def defence_tables(results: pd.DataFrame) -> list[pd.DataFrame]:
    """Clean cost of a defence, then model and health metrics under attack (both settings)."""
    from skinlib.report import metrics_table

    clean = results[results["attack"] == "none"]
    attacked = results[results["attack"] != "none"]
    index = ["model", "attack", "setting"]
    return [
        metrics_table(clean, index=["model", "param"], metrics=["accuracy", "macro_recall", "fnr"], grouping="clinical"),
        metrics_table(attacked, index=index, grouping=None,
                      metrics=["accuracy", "macro_recall", "macro_specificity", "error_rate", "flip_rate"]),
        metrics_table(attacked, index=index, grouping="clinical",
                      metrics=["health_accuracy", "sensitivity", "health_specificity", "npv", "fnr"]),
    ]


def show_defence_confusions(run: Run, outcomes: dict, experiment: str, defence: str) -> None:
    """Grey-box confusion matrices (7-class and malignant/benign) for FGSM and ART's UAP."""
    from skinlib import plots

    y = run.y("test")
    for attack in ("fgsm", "uap_art"):
        preds = {m: o.predictions[f"{attack}/greybox"] for m, o in outcomes.items()}
        show(run, plots.confusion_matrices(confusions(y, preds), labels(), f"{attack}, grey box, defence: {defence}"),
             f"{experiment}_confusion_{attack}")
        show(run, plots.health_confusions(health_confusions(y, preds)), f"{experiment}_health_confusion_{attack}")


#: How much lower white-box accuracy must be, in accuracy points, for a defence to be
#: read as holding "only against the grey-box attacker".
GREYBOX_ONLY_GAP = 0.10


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
