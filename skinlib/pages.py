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
                param_filter: Optional[dict[str, Any]] = None) -> pd.DataFrame:
    """The thesis's numbers of ``tables`` beside ours (percent), or a note when unavailable."""
    from skinlib.report import load_thesis_tables, thesis_comparison

    thesis = load_thesis_tables()
    if thesis.empty:
        return pd.DataFrame({"note": ["thesis tables not found (set SKINLIB_THESIS_TABLES)"]})
    thesis = thesis[thesis["table"].astype(str).isin(list(tables))]
    table = thesis_comparison(results, thesis, model_map=model_map(run), param_filter=param_filter)
    return table.drop(columns=["experiment"]).reset_index(drop=True)


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
    """One generated sentence per model and attack: grey- vs white-box accuracy."""
    from IPython.display import Markdown

    lines = []
    for m in models:
        for attack in ("fgsm", "uap_art", "uap_fast"):
            grey = value(results, model=m, attack=attack, setting="greybox", metric="accuracy")
            white = value(results, model=m, attack=attack, setting="whitebox", metric="accuracy")
            verdict = ("holds only against the grey-box attacker" if grey - white > GREYBOX_ONLY_GAP
                       else "behaves about alike in both threat models")
            lines.append(f"- **{m}**, {attack}: accuracy {pct(grey)} grey box, {pct(white)} white box: "
                         f"the defence {verdict}.")
    return Markdown(f"On this run (a gap above {GREYBOX_ONLY_GAP:.0%} in accuracy counts as grey-box only):\n\n"
                    + "\n".join(lines))
