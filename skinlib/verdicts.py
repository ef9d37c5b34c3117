"""Verdicts: the rule that turns experiment 4's numbers into a word per defence.

Every verdict is computed from the tidy results (and the curves) of experiment 4, never
typed. The rule, also stated in the methods chapter:

- **holds against the adaptive attacker**: the defended system's accuracy under the
  worst case of the white-box attacks is higher than the undefended model's under the
  same attacks, and the paired 95% interval of the difference excludes 0;
- **grey box only**: it does not hold in the white box, but the thesis's grey-box FGSM
  (crafted on the undefended model) or the transfer attack from an independent surrogate
  gains it accuracy with an interval that excludes 0;
- **no measurable effect**: neither.

Two checks for gradient masking (Carlini et al. 2019, sections 4.x) qualify a verdict:
the gradient-free Square Attack doing better than every gradient attack (its paired
interval of the accuracy difference below 0), and an eps curve that does not fall to
(near) 0 at the largest budget. Either flags the system's gradient numbers as masked.

| Paper link: https://arxiv.org/abs/1902.06705 (Carlini et al. 2019)
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

HOLDS = "holds against the adaptive attacker"
GREY_ONLY = "grey box only"
NO_EFFECT = "no measurable effect"
#: The accuracy at the largest eps of the curve above which a curve "does not fall".
CURVE_FLOOR = 0.10


def _cell(results: pd.DataFrame, **where: str) -> tuple[float, float, float]:
    rows = results
    for col, val in where.items():
        rows = rows[rows[col].astype(str) == val]
    if rows.empty:
        return (np.nan, np.nan, np.nan)
    r = rows.iloc[0]
    return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])


def _excludes_zero_above(cell: tuple[float, float, float]) -> bool:
    return bool(np.isfinite(cell[1]) and cell[1] > 0)


def defence_verdicts(results: pd.DataFrame, curves: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per (model, defence) of experiment 4: the numbers behind its verdict, and the verdict.

    Columns: ``model, defence, clean, clean_cost (lo, hi), greybox, transfer, adaptive,
    adaptive_undefended, adaptive_gain (lo, hi), won_back, square_minus_gradient (lo,
    hi), curve_end, masking, verdict``. ``won_back`` is the share of the accuracy the
    undefended model loses to the adaptive attacks that the defence wins back.
    """
    res = results[(results["experiment"] == "exp4_adaptive") & (results["grouping"].fillna("") == "")]
    out = []
    for model in res["model"].drop_duplicates():
        r = res[res["model"] == model]
        und_clean = _cell(r, defence="none", setting="clean", metric="accuracy")[0]
        und_adapt = _cell(r, defence="none", attack="worst_case", setting="whitebox", metric="accuracy")[0]
        for defence in [d for d in r["defence"].drop_duplicates() if d != "none"]:
            d = r[r["defence"] == defence]
            cost = _cell(d, setting="clean", metric="accuracy_vs_undefended")
            gain = _cell(d, attack="worst_case", setting="whitebox", metric="accuracy_vs_undefended")
            grey_gain = _cell(d, attack="fgsm", setting="greybox", metric="accuracy_vs_undefended")
            transfer_gain = _cell(d, attack="pgd", setting="transfer", metric="accuracy_vs_undefended")
            square = _cell(d, attack="square", setting="whitebox", metric="accuracy_vs_gradient")
            adaptive = _cell(d, attack="worst_case", setting="whitebox", metric="accuracy")[0]
            lost = und_clean - und_adapt
            curve_end = np.nan
            if curves is not None and not curves.empty:
                c = curves[(curves["model"] == model) & (curves["defence"] == defence) & (curves["curve"] == "eps")]
                if not c.empty:
                    curve_end = float(c.sort_values("x")["accuracy"].iloc[-1])
            flags = []
            if np.isfinite(square[2]) and square[2] < 0:
                flags.append("Square beats the gradient attacks")
            if np.isfinite(curve_end) and curve_end > CURVE_FLOOR:
                flags.append(f"accuracy stays at {curve_end:.0%} at the largest eps")
            if _excludes_zero_above(gain):
                verdict = HOLDS
            elif _excludes_zero_above(grey_gain) or _excludes_zero_above(transfer_gain):
                verdict = GREY_ONLY
            else:
                verdict = NO_EFFECT
            out.append({
                "model": model, "defence": defence,
                "clean": _cell(d, setting="clean", metric="accuracy")[0],
                "clean_cost": cost[0], "clean_cost_low": cost[1], "clean_cost_high": cost[2],
                "greybox": _cell(d, attack="fgsm", setting="greybox", metric="accuracy")[0],
                "transfer": _cell(d, attack="pgd", setting="transfer", metric="accuracy")[0],
                "adaptive": adaptive, "adaptive_undefended": und_adapt,
                "adaptive_gain": gain[0], "adaptive_gain_low": gain[1], "adaptive_gain_high": gain[2],
                "won_back": gain[0] / lost if lost > 0 else np.nan,
                "square_minus_gradient": square[0], "square_minus_gradient_low": square[1],
                "square_minus_gradient_high": square[2], "curve_end": curve_end,
                "masking": "; ".join(flags) if flags else "none found", "verdict": verdict,
            })
    return pd.DataFrame(out)


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def verdict_sentence(row: pd.Series, eps_255: float) -> str:
    """One generated sentence for a row of :func:`defence_verdicts`."""
    text = (f"{row['model']}, {row['defence']}: {row['verdict']}. Clean accuracy {row['clean']:.1%} "
            f"({_pts(row['clean_cost'])} points against the undefended model, 95% interval "
            f"{_pts(row['clean_cost_low'])} to {_pts(row['clean_cost_high'])}); under the worst of the white-box "
            f"attacks at {eps_255:g}/255 it keeps {row['adaptive']:.1%} against the undefended model's "
            f"{row['adaptive_undefended']:.1%} ({_pts(row['adaptive_gain'])} points, "
            f"{_pts(row['adaptive_gain_low'])} to {_pts(row['adaptive_gain_high'])})")
    if np.isfinite(row["won_back"]):
        text += f", winning back {row['won_back']:.0%} of the accuracy the attacks take"
    text += (f"; the thesis's grey-box FGSM leaves it {row['greybox']:.1%} and the transfer attack from an "
             f"independent surrogate {row['transfer']:.1%}.")
    if row["masking"] != "none found":
        text += f" Gradient masking suspected: {row['masking']}."
    return text


#: Experiment 4's attacks in the order of its tables: (attack, setting, column title).
ADAPTIVE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("none", "clean", "clean"), ("fgsm", "greybox", "grey FGSM (thesis)"), ("pgd", "greybox", "grey PGD"),
    ("pgd", "transfer", "transfer PGD"), ("fgsm", "whitebox", "FGSM (1 step)"), ("pgd", "whitebox", "PGD"),
    ("apgd_ce", "whitebox", "APGD-CE"), ("apgd_dlr", "whitebox", "APGD-DLR"), ("pgd_lowfreq", "whitebox", "low-freq"),
    ("pgd_codec", "whitebox", "codec BPDA"), ("square", "whitebox", "Square"),
    ("worst_case", "whitebox", "worst case"),
)


def adaptive_table(results: pd.DataFrame, model: str, settings: tuple[str, ...] = ("clean", "greybox", "transfer"),
                   metric: str = "accuracy", grouping: str = "") -> pd.DataFrame:
    """Experiment 4 for one model and some settings: rows = defences, columns = attacks (:data:`ADAPTIVE_COLUMNS`).

    Cells hold the value in percent and its lesion-bootstrap interval in brackets; ``-``
    where an attack does not apply (the codec attacks only face the LLT). Call it once
    for ``("clean", "greybox", "transfer")`` and once for ``("whitebox",)`` to keep each
    table narrow.
    """
    res = results[(results["experiment"] == "exp4_adaptive") & (results["model"] == model)
                  & (results["metric"] == metric) & (results["grouping"].fillna("") == grouping)]
    columns = [c for c in ADAPTIVE_COLUMNS if c[1] in settings]
    rows = []
    for defence in res["defence"].drop_duplicates():
        d = res[res["defence"] == defence]
        row = {"defence": defence}
        for attack, setting, title in columns:
            v = _cell(d, attack=attack, setting=setting)
            row[title] = "-" if not np.isfinite(v[0]) else (
                f"{100 * v[0]:.0f} [{100 * v[1]:.0f}, {100 * v[2]:.0f}]" if np.isfinite(v[1]) else f"{100 * v[0]:.0f}")
        rows.append(row)
    return pd.DataFrame(rows).set_index("defence")


def verdict_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The compact table behind the verdicts (percent): one row per model and defence."""
    def rng(v: float, lo: float, hi: float) -> str:
        return f"{100 * v:+.0f} [{100 * lo:+.0f}, {100 * hi:+.0f}]"

    return pd.DataFrame({
        "model": table["model"], "defence": table["defence"],
        "clean": (100 * table["clean"]).round(1),
        "clean cost": [rng(*r) for r in table[["clean_cost", "clean_cost_low", "clean_cost_high"]].to_numpy()],
        "adaptive": (100 * table["adaptive"]).round(1),
        "gain vs undefended": [rng(*r) for r in table[["adaptive_gain", "adaptive_gain_low",
                                                       "adaptive_gain_high"]].to_numpy()],
        "won back": (100 * table["won_back"]).round(0),
        "Square - gradient": [rng(*r) for r in table[["square_minus_gradient", "square_minus_gradient_low",
                                                      "square_minus_gradient_high"]].to_numpy()],
        "verdict": table["verdict"],
    })


def targeted_table(results: pd.DataFrame) -> pd.DataFrame:
    """The clinical threat: share of malignant test lesions called benign (clinical FNR), clean and under
    the targeted malignant-to-benign attack, per model and defence."""
    res = results[(results["experiment"] == "exp4_adaptive") & (results["grouping"] == "clinical")
                  & (results["metric"] == "fnr")]
    rows = []
    for (model, defence), d in res.groupby(["model", "defence"], sort=False):
        clean = _cell(d, setting="clean")
        attacked = _cell(d, attack="pgd_targeted", setting="whitebox")
        rows.append({"model": model, "defence": defence, "missed cancers, clean": f"{clean[0]:.1%}",
                     "missed cancers, targeted attack": f"{attacked[0]:.1%} [{attacked[1]:.0%}, {attacked[2]:.0%}]"})
    return pd.DataFrame(rows)


def codec_table(path) -> pd.DataFrame:
    """The codec stand-in's fidelity (``exp4_codec.json``): rows = measure, columns = kind of perturbation."""
    import json
    from pathlib import Path

    fidelity = json.loads(Path(path).read_text())
    names = {"r2_identity": "R^2 of the identity (plain BPDA)", "r2_standin": "R^2 of the stand-in",
             "energy_kept": "response energy / perturbation energy"}
    table = {kind: {names[k.split("_", 1)[1]]: v for k, v in fidelity.items()
                    if k.startswith(kind + "_") and k.split("_", 1)[1] in names}
             for kind in ("sign", "lowfreq")}
    return pd.DataFrame(table).rename(columns={"sign": "random sign noise", "lowfreq": "low-frequency noise"}).round(3)


# ---------------------------------------------------------------- research questions


def change_word(cell: tuple[float, float, float], up: str = "raises", down: str = "lowers") -> str:
    """``up``/``down`` when the paired interval excludes 0, else "no measurable change in"."""
    _, lo, hi = cell
    if np.isfinite(lo) and lo > 0:
        return up
    if np.isfinite(hi) and hi < 0:
        return down
    return "makes no measurable change to"


def _diff_phrase(cell: tuple[float, float, float], what: str, up: str = "raises", down: str = "lowers") -> str:
    word = change_word(cell, up, down)
    if not np.isfinite(cell[0]):
        return f"{what}: not measured"
    return f"{word} {what} ({_pts(cell[0])} points, {_pts(cell[1])} to {_pts(cell[2])})"


def attack_effect(results: pd.DataFrame, experiment: str, model: str, attack: str, param: Optional[str] = None) -> str:
    """One generated clause: what ``attack`` did to accuracy, the missed-malignancy rate and specificity."""
    r = results[(results["experiment"] == experiment) & (results["model"] == model) & (results["attack"] == attack)
                & (results["setting"] == "greybox")]
    if param is not None:
        r = r[r["param"].astype(str) == param]
    acc = _cell(r, metric="accuracy_vs_clean", grouping="")
    fnr = _cell(r, metric="fnr_vs_clean", grouping="clinical")
    spec = _cell(r, metric="health_specificity_vs_clean", grouping="clinical")
    return (f"{_diff_phrase(acc, 'accuracy')}, {_diff_phrase(fnr, 'the missed-malignancy rate (clinical FNR)')} "
            f"and {_diff_phrase(spec, 'the specificity for benign lesions')}")


def research_answers(results: pd.DataFrame, models: list[str], fgsm_eps: float,
                     curves: Optional[pd.DataFrame] = None) -> list[str]:
    """The answers to the thesis's three research questions for one run, in generated words.

    RQ1: what FGSM (at the thesis's eps) and ART's UAP did to each model, against clean,
    with paired intervals. RQ2 (FGSM) and RQ3 (UAP): what each defence won back against
    the undefended model under the same attack, grey and white box (experiments 3.x),
    and, where experiment 4 ran, its adaptive verdict.
    """
    key = f"{fgsm_eps:.6g}"
    fillna = results.assign(grouping=results["grouping"].fillna(""))
    verdict = defence_verdicts(fillna, curves) if (fillna["experiment"] == "exp4_adaptive").any() else pd.DataFrame()
    out = []
    for m in models:
        fg = attack_effect(fillna, "exp2_1_fgsm", m, "fgsm", key)
        ua = attack_effect(fillna, "exp2_2_uap", m, "uap_art")
        out.append(f"**RQ1 ({m}).** FGSM at {fgsm_eps * 255:g}/255 {fg}. ART's universal perturbation {ua}.")
        for attack, rq, name in (("fgsm", "RQ2", "FGSM"), ("uap_art", "RQ3", "ART's UAP")):
            parts = []
            for exp, d, label in (("exp3_1_retraining", "retraining", "retraining"), ("exp3_2_llt", "llt", "the LLT"),
                                  ("exp3_3_combined", "retraining+llt", "both")):
                r = fillna[(fillna["experiment"] == exp) & (fillna["model"] == m) & (fillna["attack"] == attack)
                           & (fillna["grouping"] == "")]
                if r.empty:
                    continue
                grey = _cell(r, setting="greybox", metric="accuracy_vs_undefended")
                white = _cell(r, setting="whitebox", metric="accuracy_vs_undefended")
                text = (f"{label} {_diff_phrase(grey, 'accuracy in the grey box', 'raises', 'lowers')} and "
                        f"{_diff_phrase(white, 'accuracy in the white box', 'raises', 'lowers')}")
                if attack == "fgsm" and not verdict.empty:
                    v = verdict[(verdict["model"] == m) & (verdict["defence"] == d)]
                    if not v.empty:
                        row = v.iloc[0]
                        text += (f"; against the adaptive attacks of experiment 4 it {row['verdict']} "
                                 f"({row['adaptive']:.1%} under the worst case, the undefended model "
                                 f"{row['adaptive_undefended']:.1%})")
                parts.append(text)
            if parts:
                out.append(f"**{rq} ({m}, {name}).** Against the undefended model under the same {name}: "
                           + "; ".join(parts) + ".")
    return out
