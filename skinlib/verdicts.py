"""Verdicts: the rule that turns experiment 4's numbers into a word per defence.

Every verdict is computed from the tidy results (and the curves) of experiment 4, never
typed. The rule, also stated in the methods chapter:

- **holds against the adaptive attacker**: the defended system's accuracy under the
  worst case of the white-box attacks is higher than the undefended model's under the
  same attacks, the paired 95% interval of the difference excludes 0, and the defence
  wins back at least half (:data:`HOLD_WON_BACK`) of the accuracy those attacks take
  from the undefended model;
- **helps but does not hold**: the paired gain excludes 0, but the defence wins back
  less than half of what the attacks take (a system left at 29% accuracy is never said
  to hold), or it would hold but is flagged for gradient masking (below);
- **grey box only**: it does not hold in the white box, but the thesis's grey-box FGSM
  (crafted on the undefended model) or the transfer attack from an independent surrogate
  gains it accuracy with an interval that excludes 0;
- **no measurable effect**: neither.

Three checks for gradient masking (Carlini et al. 2019, sections 4.x) qualify a verdict:
the gradient-free Square Attack doing better than every gradient attack (its paired
interval of the accuracy difference below 0), an eps curve that does not fall to (near)
0 at the largest budget, and a gain the gradient attacks find but Square (which hurts the
undefended model) does not. Any of them flags the system's gradient numbers as masked, and
a flagged defence is said at most to help: it never "holds".
Square is itself calibrated on the undefended model: where it falls measurably short of
the gradient attacks there, its failure to beat them behind a defence proves nothing,
and the verdict carries that caveat (the adaptive accuracy is an upper bound).

| Paper link: https://arxiv.org/abs/1902.06705 (Carlini et al. 2019)
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from skinlib.metrics import pool_over_seeds

HOLDS = "holds against the adaptive attacker"
PARTIAL = "helps against the adaptive attacker but does not hold"
GREY_ONLY = "grey box only"
NO_EFFECT = "no measurable effect"
#: The accuracy at the largest eps of the curve above which a curve "does not fall".
CURVE_FLOOR = 0.10
#: The share of the accuracy the adaptive attacks take from the undefended model that a
#: defence must win back (besides a paired gain above 0) to be said to hold.
HOLD_WON_BACK = 0.5


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
    hi), square_gain (lo, hi), square_won_back, curve_end, masking, caveat, verdict``.
    ``capped_by_masking`` is true where the numbers alone would say "holds" but a masking
    flag lowers the label to "helps but does not hold"; ``masking_checks`` names the checks
    that fired (``square_beats``, ``square_gain``, ``curve_end``; comma-separated).
    ``won_back`` is the share of the accuracy the undefended model loses to the adaptive
    attacks that the defence wins back; ``square_won_back`` the same for Square alone, on
    its images. Masking is flagged when Square beats the gradient attacks, when the eps
    curve stays high, or when Square (measurably hurting the undefended model) gains
    nothing measurable through a defence that the gradient attacks find a gain in. ``caveat``
    is set when Square, on the undefended model, is measurably weaker than the gradient
    attacks (it cannot then reach their level; its own gain through the defence is stated),
    or when the attack of the convergence curves was still falling at the reported setting:
    either way the adaptive accuracy is an upper bound.
    In the second case (``convergence_drop``, the fall beyond the reported setting on the
    curves' images) the label is chosen on the conservative side: the gain and the share won
    back less that fall must still pass the rule.
    """
    res = results[(results["experiment"] == "exp4_adaptive") & (results["grouping"].fillna("") == "")]
    out = []
    for model in res["model"].drop_duplicates():
        r = res[res["model"] == model]
        und_clean = _cell(r, defence="none", setting="clean", metric="accuracy")[0]
        und_adapt = _cell(r, defence="none", attack="worst_case", setting="whitebox", metric="accuracy")[0]
        # Square on the undefended model calibrates the gradient-free check: where it cannot
        # match the gradient attacks on a model without a masking step, it cannot reveal masking
        square_power = _cell(r, defence="none", attack="square", setting="whitebox", metric="accuracy_vs_gradient")
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
                c = system_curves(curves, model, defence, "eps")
                if not c.empty:
                    curve_end = float(c.sort_values("x")["accuracy"].iloc[-1])
            flags, checks = [], []
            if np.isfinite(square[2]) and square[2] < 0:
                flags.append("Square beats the gradient attacks")
                checks.append("square_beats")
            # what Square alone takes from the undefended model, and wins back through the defence (its images)
            square_lost, square_gain, square_bites = _square_cells(r, defence)
            square_won_back = square_gain[0] / -square_lost[0] if square_bites else np.nan
            if square_bites and _excludes_zero_above(gain) and not _excludes_zero_above(square_gain):
                flags.append(f"Square, which needs no gradient, does about as well through it as against the "
                             f"undefended model ({_pts(square_gain[0])} points, {_pts(square_gain[1])} to "
                             f"{_pts(square_gain[2])}; on the undefended model it takes {-100 * square_lost[0]:.1f} points "
                             f"from clean), while the gradient attacks find a gain of {_pts(gain[0])}")
                checks.append("square_gain")
            caveat = ""
            if not flags and _excludes_zero_above(square_power):
                caveat = (f"Square, on the undefended model {_pts(square_power[0])} points above the gradient "
                          f"attacks ({_pts(square_power[1])} to {_pts(square_power[2])}), cannot reach their level, "
                          f"so the adaptive accuracy is an upper bound")
                caveat += (f"; it does show whether the defence blunts an attacker that needs no gradient: through "
                           f"it Square wins back {square_won_back:.0%} of what it takes from the undefended model "
                           f"({_pts(square_gain[0])} points, {_pts(square_gain[1])} to {_pts(square_gain[2])})"
                           if square_bites and np.isfinite(square_won_back) else
                           "; at its query budget it takes no measurable accuracy even from the undefended model, "
                           "so the gradient-free check is inconclusive")
            gap = convergence_gap(curves, model, defence) if curves is not None else None
            # what the longer run of the convergence curves still took off: an attack that had not
            # converged leaves the verdict on its conservative side (gain and share less that drop)
            drop = gap[0] - gap[1] if gap is not None and gap[0] - gap[1] > CONVERGENCE_TOLERANCE else 0.0
            won_back = gain[0] / lost if lost > 0 else np.nan
            sure_gain = (gain[0] - drop, gain[1] - drop, gain[2] - drop)
            sure_won_back = sure_gain[0] / lost if lost > 0 else np.nan
            if drop:
                times = convergence_multiple(system_curves(curves, model, defence))
                caveat += ("; " if caveat else "") + (
                    f"the attack had not reached its plateau at the reported setting ({times} the steps and "
                    f"restarts take {gap[0]:.1%} to {gap[1]:.1%} on the convergence curves' images), so the "
                    f"adaptive accuracy is an upper bound; the verdict is read with that further "
                    f"{100 * drop:.1f}-point fall taken off the gain (it then wins back {sure_won_back:.0%})")
            if np.isfinite(curve_end) and curve_end > CURVE_FLOOR:
                flags.append(f"accuracy stays at {curve_end:.0%} at the largest eps")
                checks.append("curve_end")
            if _excludes_zero_above(sure_gain):
                verdict = HOLDS if np.isfinite(sure_won_back) and sure_won_back >= HOLD_WON_BACK else PARTIAL
            elif _excludes_zero_above(grey_gain) or _excludes_zero_above(transfer_gain):
                verdict = GREY_ONLY
            else:
                verdict = NO_EFFECT
            # a gain the masking checks doubt is not evidence of holding: the label is capped
            capped = bool(flags) and verdict == HOLDS
            if capped:
                verdict = PARTIAL
            out.append({
                "model": model, "defence": defence,
                "clean": _cell(d, setting="clean", metric="accuracy")[0],
                "clean_cost": cost[0], "clean_cost_low": cost[1], "clean_cost_high": cost[2],
                "greybox": _cell(d, attack="fgsm", setting="greybox", metric="accuracy")[0],
                "transfer": _cell(d, attack="pgd", setting="transfer", metric="accuracy")[0],
                "adaptive": adaptive, "adaptive_undefended": und_adapt,
                "adaptive_gain": gain[0], "adaptive_gain_low": gain[1], "adaptive_gain_high": gain[2],
                "won_back": won_back, "convergence_drop": drop,
                "square_minus_gradient": square[0], "square_minus_gradient_low": square[1],
                "square_minus_gradient_high": square[2], "square_gain": square_gain[0],
                "square_gain_low": square_gain[1], "square_gain_high": square_gain[2],
                "square_won_back": square_won_back, "curve_end": curve_end,
                "masking": "; ".join(flags) if flags else "none found", "masking_checks": ",".join(checks),
                "caveat": caveat,
                "capped_by_masking": capped, "verdict": verdict,
            })
    return pd.DataFrame(out)


def pgd_at_summary(model: str, history: dict, max_epochs: int) -> str:
    """One sentence on how PGD adversarial training of ``model`` ended: the plateau or the budget.

    ``history`` is :func:`skinlib.defences.pgd_adversarial_training`'s (epoch 0 is the
    exp0 model before fine-tuning).

    Examples:
        >>> h = {"epoch": [0, 1, 2], "val_pgd_accuracy": [0.2, 0.5, 0.55], "val_accuracy": [0.7, 0.68, 0.7],
        ...      "stopped": ["budget"], "best_val_pgd_accuracy": [0.55]}
        >>> print(pgd_at_summary("m", h, 2))
        m: PGD adversarial training ran 2 of at most 2 epochs and was stopped by its epoch budget while validation accuracy under PGD was still rising (20.0% before, then 50.0%, 55.0%); the weights kept are epoch 2's (55.0%).
    """
    rob = [float(v) for v in history["val_pgd_accuracy"]]
    ran = len(rob) - 1
    best = int(np.argmax(rob))
    stopped = str(history.get("stopped", ["budget"])[0])
    trend = ", ".join(f"{v:.1%}" for v in rob[1:])
    if stopped == "plateau":
        how = "stopped because validation accuracy under PGD had stopped rising"
    elif best == ran:
        how = "was stopped by its epoch budget while validation accuracy under PGD was still rising"
    else:
        how = "was stopped by its epoch budget after validation accuracy under PGD had peaked"
    return (f"{model}: PGD adversarial training ran {ran} of at most {max_epochs} epochs and {how} "
            f"({rob[0]:.1%} before, then {trend}); the weights kept are epoch {best}'s ({rob[best]:.1%}).")


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def verdict_sentence(row: pd.Series, eps_255: float) -> str:
    """One generated sentence for a row of :func:`defence_verdicts`."""
    text = (f"{row['model']}, {row['defence']}: **{row['verdict']}**. Clean accuracy {row['clean']:.1%} "
            f"({_pts(row['clean_cost'])} points against the undefended model, 95% interval "
            f"{_pts(row['clean_cost_low'])} to {_pts(row['clean_cost_high'])}); under the worst of the white-box "
            f"attacks at {eps_255:g}/255 it keeps {row['adaptive']:.1%} against the undefended model's "
            f"{row['adaptive_undefended']:.1%} ({_pts(row['adaptive_gain'])} points, "
            f"{_pts(row['adaptive_gain_low'])} to {_pts(row['adaptive_gain_high'])})")
    if np.isfinite(row["won_back"]):
        text += f", winning back {row['won_back']:.0%} of the accuracy the attacks take"
        if row.get("capped_by_masking", False):
            text += (" (enough to hold by the numbers, but a defence flagged for gradient masking is said at most "
                     "to help: the gain may be the masking's)")
        elif row["verdict"] == PARTIAL:
            text += f" (to hold, a defence must win back at least {HOLD_WON_BACK:.0%})"
    text += (f"; the thesis's grey-box FGSM leaves it {row['greybox']:.1%} and the transfer attack from an "
             f"independent surrogate {row['transfer']:.1%}.")
    if row["masking"] != "none found":
        text += f" Gradient masking suspected: {row['masking']}."
    if row.get("caveat"):
        text += f" Caveat: {row['caveat']}."
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
                   metric: str = "accuracy", grouping: str = "",
                   interval_attacks: Optional[tuple[str, ...]] = None) -> pd.DataFrame:
    """Experiment 4 for one model and some settings: rows = defences, columns = attacks (:data:`ADAPTIVE_COLUMNS`).

    Cells hold the value in percent and its lesion-bootstrap interval in brackets (only
    for ``interval_attacks`` when given, so that eight attacks fit one page width); ``-``
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
            shown = np.isfinite(v[1]) and (interval_attacks is None or attack in interval_attacks)
            row[title] = "-" if not np.isfinite(v[0]) else (
                f"{100 * v[0]:.0f} [{100 * v[1]:.0f}, {100 * v[2]:.0f}]" if shown else f"{100 * v[0]:.0f}")
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
        "Square won back": (100 * table["square_won_back"]).round(0),
        "verdict": table["verdict"],
    }).set_index(["model", "defence"])


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
    return pd.DataFrame(rows).set_index(["model", "defence"])


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


#: Readable names of the LLT's parts (:func:`skinlib.defences.apply_llt_part`) in tables and sentences.
LLT_PART_TEXT = {"none": "as crafted", "flip": "flip alone", "webp": "WebP alone", "both": "WebP + flip (LLT)"}


def llt_parts_table(parts: pd.DataFrame) -> pd.DataFrame:
    """Experiment 3.2's ablation (``exp3_2_llt_parts.csv``) for display: rows (model, grey-box
    attack), columns the parts of the LLT, cells accuracy in percent with its 95% interval."""
    from skinlib.pages import format_cell

    t = parts.assign(cell=[format_cell(v, lo, hi, ci_decimals=0)
                           for v, lo, hi in parts[["accuracy", "ci_low", "ci_high"]].to_numpy()],
                     row=parts["model"] + " · " + parts["attack"])
    table = t.pivot(index="row", columns="transform", values="cell")
    table = table.reindex(index=list(dict.fromkeys(t["row"])), columns=list(LLT_PART_TEXT))
    return table.rename(columns=LLT_PART_TEXT).rename_axis(index="model · grey-box attack", columns=None)


def llt_parts_answer(parts: pd.DataFrame, attack: str = "pgd") -> list[str]:
    """One generated sentence per model: which part of the LLT undoes the grey-box ``attack``.

    From :func:`skinlib.experiments.llt_parts`: the accuracy as crafted and through each
    part, the share of the whole LLT's paired gain that the flip alone wins back, and what
    that means for reading the thesis's grey-box LLT rows.
    """
    out = []
    for model, d in parts[parts["attack"] == attack].groupby("model", sort=False):
        by = d.set_index("transform")
        if not {"none", "flip", "webp", "both"} <= set(by.index):
            continue
        cell = lambda k: f"{by.loc[k, 'accuracy']:.1%}"  # noqa: E731
        flip_gain, both_gain = float(by.loc["flip", "gain"]), float(by.loc["both", "gain"])
        text = (f"**{model}:** a grey-box {attack.upper()} perturbation (crafted on the undefended model) leaves it "
                f"{cell('none')} accurate; the flip alone gives {cell('flip')}, WebP alone {cell('webp')}, "
                f"both {cell('both')}.")
        if both_gain > 0 and float(by.loc["both", "gain_low"]) > 0:
            share = flip_gain / both_gain
            text += f" The flip alone wins back {share:.0%} of what the whole LLT wins back"
            if float(by.loc["flip", "gain_low"]) > 0 and share >= 0.5:
                text += (": a perturbation crafted for the unflipped image mostly stops working once the image "
                         "is mirrored, codec or not, so the grey-box rows cannot tell whether WebP removes "
                         "perturbations. Only an attacker who knows the flip (the white box, where it is "
                         "differentiated exactly) isolates what WebP does.")
            else:
                text += ", so the grey-box gain is mostly WebP's."
        else:
            text += " The LLT as a whole wins back nothing measurable here."
        out.append(text)
    return out


#: The largest share of a perturbation's energy the codec may pass on and still be said to remove it.
REMOVES_ENERGY = 0.5


def webp_answer(results: pd.DataFrame, codec: Optional[dict], curves: Optional[pd.DataFrame] = None,
                defence: str = "llt", seed: Optional[int] = None) -> list[str]:
    """Does the LLT's WebP step remove small perturbations, or only hide the gradient?

    One generated sentence per model of experiment 4, from three measurements: (1) what
    the codec does to a perturbation (``codec``, the fidelity of ``exp4_codec.json``: the
    energy of WebP's response to random sign noise at the attack's budget, relative to the
    noise's; below :data:`REMOVES_ENERGY` it removes, else it passes or scrambles it);
    (2) the identity-gradient PGD (plain BPDA) against the strongest attack that models the
    codec (the worst case over all white-box attacks): lower means plain BPDA was masked,
    "measurably" when the two 95% intervals do not overlap (they are not paired); (3) the
    LLT's eps curve at its largest budget; and (4) whether the LLT blunts the gradient-free
    Square too (:func:`square_sentence`). ``seed`` (the training seed of ``results``) is
    named in each sentence's heading where given. Returns ``[]`` where experiment 4 did not run.
    """
    res = results[(results["experiment"] == "exp4_adaptive") & (results["grouping"].fillna("") == "")]
    out = []
    for model in res["model"].drop_duplicates():
        d = res[(res["model"] == model) & (res["defence"] == defence) & (res["setting"] == "whitebox")]
        bpda = _cell(d, attack="pgd", metric="accuracy")
        worst = _cell(d, attack="worst_case", metric="accuracy")
        if not (_finite(bpda[0]) and _finite(worst[0])):
            continue
        parts = [f"**{model}" + (f", seed {seed}" if seed is not None else "") + ":**"]
        if codec and _finite(codec.get("sign_energy_kept", np.nan)):
            kept = float(codec["sign_energy_kept"])
            removes = kept < REMOVES_ENERGY
            parts.append(
                f"WebP {'removes' if removes else 'does not remove'} a perturbation of the attack's budget: "
                f"its response to random sign noise carries {kept:.1f} times the noise's energy, and the identity "
                f"predicts that response with R² {codec.get('sign_r2_identity', np.nan):.2f} (the fitted codec "
                f"stand-in: {codec.get('sign_r2_standin', np.nan):.2f}).")
        gap = bpda[0] - worst[0]
        measurable = _finite(bpda[1]) and _finite(worst[2]) and worst[2] < bpda[1]
        if gap > 0:
            parts.append(
                f"Plain BPDA (PGD with the identity as WebP's gradient) leaves {system_text(defence)} {bpda[0]:.1%} "
                f"({_range(bpda)}); the worst case over all white-box attacks (the codec-gradient and low-frequency PGD "
                f"among them) {worst[0]:.1%} ({_range(worst)}): "
                f"{100 * gap:.1f} points lower, " + ("so part of what plain BPDA shows is gradient masking."
                                                     if measurable else
                                                     "a gap within the two unpaired intervals, so masking of "
                                                     "plain BPDA is suggested but not established."))
        else:
            parts.append(f"No attack does better than plain BPDA ({bpda[0]:.1%}, {_range(bpda)}).")
        square = square_sentence(res[res["model"] == model], defence)
        if square:
            parts.append(square)
        if curves is not None and not curves.empty:
            converged = convergence_sentence(curves, model, defence)
            if converged:
                parts.append(converged)
            c = system_curves(curves, model, defence, "eps")
            if len(c) >= 2:
                c = c.sort_values("x")
                points = ", ".join(f"{a:.0%} at {x:g}/255" for x, a in zip(c["x"].iloc[-2:], c["accuracy"].iloc[-2:]))
                how = "codec-gradient PGD" if _curve_attack(c) == "pgd_codec" else "plain BPDA"
                parts.append(f"Along its eps curve ({how}) {system_text(defence)} keeps {points}"
                             + (": whatever it does to perturbations of the thesis's size, it does not stop larger "
                                "ones." if c["accuracy"].iloc[-1] <= CURVE_FLOOR else "."))
                worth = budget_multiple(curves, model, defence)
                reference = budget_multiple(curves, model, "pgd_at")
                if _finite(worth):
                    parts.append(
                        f"Set beside the undefended model's curve, {system_text(defence)} is worth about {worth:.1f} times the "
                        f"attacker's budget (the median over the curve's points: to bring it as low as the undefended "
                        f"model, the attacker needs that much more eps)"
                        + (f"; PGD adversarial training, {reference:.1f} times." if _finite(reference) else "."))
        out.append(" ".join(parts))
    return out


def _square_cells(results: pd.DataFrame, defence: str) -> tuple[tuple, tuple, bool]:
    """For one model of experiment 4: Square's change from clean on the undefended model, Square's paired
    difference through ``defence`` from the undefended model, and whether the first is measurably below 0."""
    lost = _cell(results[results["defence"] == "none"], attack="square", setting="whitebox",
                 metric="accuracy_vs_clean")
    gain = _cell(results[results["defence"] == defence], attack="square", setting="whitebox",
                 metric="accuracy_vs_undefended")
    return lost, gain, bool(_finite(lost[2]) and lost[2] < 0)


def square_sentence(results: pd.DataFrame, defence: str) -> str:
    """Whether a defence blunts the gradient-free Square Attack, or only the gradient attacks.

    A step that removes perturbations takes accuracy back from an attacker that never uses
    its gradient too; one that only hides the gradient does not. Reads, for one model of
    experiment 4, Square's fall from clean on the undefended model and the paired
    difference of Square's accuracy through ``defence`` from the undefended model's, on
    Square's images. Empty text where Square did not run.

    Examples:
        >>> r = pd.DataFrame([
        ...     {"defence": "none", "attack": "square", "setting": "whitebox", "metric": "accuracy_vs_clean",
        ...      "value": -0.30, "ci_low": -0.38, "ci_high": -0.22},
        ...     {"defence": "llt", "attack": "square", "setting": "whitebox", "metric": "accuracy_vs_undefended",
        ...      "value": 0.01, "ci_low": -0.04, "ci_high": 0.06}])
        >>> square_sentence(r, "llt")[:80]
        'Square, which needs no gradient, takes 30.0 points from the undefended model on '
    """
    lost, gain, bites = _square_cells(results, defence)
    if not (_finite(lost[0]) and _finite(gain[0])):
        return ""
    if not bites:
        return (f"Square, which needs no gradient, takes no measurable accuracy from the undefended model at its "
                f"query budget ({_pts(lost[0])} points, {_pts(lost[1])} to {_pts(lost[2])}), so it cannot tell "
                f"removal from hiding.")
    text = (f"Square, which needs no gradient, takes {-100 * lost[0]:.1f} points from the undefended model on "
            f"its images ({-100 * lost[2]:.1f} to {-100 * lost[1]:.1f}); through {system_text(defence)} it is "
            f"{_pts(gain[0])} points against the undefended model ({_pts(gain[1])} to {_pts(gain[2])}), ")
    if _excludes_zero_above(gain):
        return text + (f"winning back {gain[0] / -lost[0]:.0%} of that: {system_text(defence)} blunts an attacker that never "
                       f"uses its gradient as well, so its gain is not only a hidden gradient.")
    return text + (f"no measurable gain: an attacker that never uses its gradient does about as well through it, "
                   f"so on these images what the gradient attacks lose against {system_text(defence)} points to a hidden "
                   f"gradient rather than removed perturbations.")


def _exp4(results: pd.DataFrame) -> pd.DataFrame:
    return results[(results["experiment"] == "exp4_adaptive") & (results["grouping"].fillna("") == "")]


def verdicts_over_seeds(by_seed: dict[int, tuple[pd.DataFrame, Optional[pd.DataFrame]]]) -> pd.DataFrame:
    """Experiment 4's verdict on every training seed that ran it, side by side, and one over them.

    ``by_seed`` maps a seed to its results and curves. One row per model and defence: one
    column per seed (``seed K``) with the short verdict, ``masking flagged on`` (the seeds
    where a masking check fired, "none" if none), ``agree`` (every seed gave the same
    label), Square's gain through the defence pooled over the seeds where Square hurts the
    undefended model (``square_pooled``, ``square_pooled_low``, ``square_pooled_high``,
    ``square_pooled_q_p``: :func:`skinlib.metrics.pool_over_seeds`) and ``over seeds``, the
    label the seeds support together:

    - the shared label where every seed gives the same one;
    - where they differ only because the check "Square gains nothing measurable through it"
      capped "holds" on some seeds (no other check fired there, and every seed holds by its
      numbers), that check is read once more on the pooled gain: an interval above 0 with
      seeds that do not measure different effects (Cochran's Q p >= 0.05) clears it, and
      the label is "holds" (one seed's 150-odd Square images have intervals about +-6
      points wide, too wide to tell a real gain of 5 to 10 points from none);
    - else "not settled": a label that changes with the seed is not a finding yet.

    Examples:
        >>> def rows(gain):
        ...     return pd.DataFrame([
        ...         {"experiment": "exp4_adaptive", "model": "m", "defence": d, "attack": a, "setting": s,
        ...          "grouping": "", "metric": k, "value": v, "ci_low": lo, "ci_high": hi}
        ...         for d, a, s, k, v, lo, hi in [
        ...             ("none", "none", "clean", "accuracy", 0.8, 0.7, 0.9),
        ...             ("none", "worst_case", "whitebox", "accuracy", 0.1, 0.0, 0.2),
        ...             ("d", "worst_case", "whitebox", "accuracy_vs_undefended", *gain)]])
        >>> t = verdicts_over_seeds({0: (rows((0.5, 0.4, 0.6)), None), 1: (rows((0.2, 0.1, 0.3)), None)})
        >>> t[["seed 0", "seed 1", "over seeds"]].iloc[0].tolist(), bool(t["agree"].iloc[0])
        (['holds', 'helps but does not hold', 'not settled'], False)
    """
    per_seed: dict[tuple[str, str], dict[int, pd.Series]] = {}
    for seed, (results, curves) in sorted(by_seed.items()):
        for _, r in defence_verdicts(results, curves).iterrows():
            per_seed.setdefault((r["model"], r["defence"]), {})[seed] = r
    out = []
    for (model, defence), rows in per_seed.items():
        labels = {f"seed {k}": _SHORT_VERDICT.get(r["verdict"], r["verdict"]) for k, r in rows.items()}
        flagged = [f"seed {k}" for k, r in rows.items() if r["masking"] != "none found"]
        agree = len(set(labels.values())) == 1 and len(rows) == len(by_seed)
        # Square's gain, pooled over the seeds on which it measurably hurts the undefended model
        bites = [(r["square_gain"], r["square_gain_low"], r["square_gain_high"]) for r in rows.values()
                 if _finite(r["square_won_back"])]
        pooled = pool_over_seeds(bites)
        square_only = all(not r["capped_by_masking"] or r["masking_checks"] == "square_gain" for r in rows.values())
        holds_by_numbers = all(r["verdict"] == HOLDS or r["capped_by_masking"] for r in rows.values())
        if agree:
            over = next(iter(labels.values()))
        elif (len(rows) == len(by_seed) and holds_by_numbers and square_only and np.isfinite(pooled[1])
              and pooled[1] > 0 and pooled[3] >= 0.05):
            over = _SHORT_VERDICT[HOLDS]
        else:
            over = "not settled"
        out.append({"model": model, "defence": defence, **labels, "masking flagged on": ", ".join(flagged) or "none",
                    "agree": agree, "square_pooled": pooled[0], "square_pooled_low": pooled[1],
                    "square_pooled_high": pooled[2], "square_pooled_q_p": pooled[3], "over seeds": over})
    return pd.DataFrame(out)


def seed_verdict_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`verdicts_over_seeds` for the page: one row per model and system (named in words),
    the seeds grouped by the label they gave, so the table keeps its width however many seeds ran,
    then Square's pooled gain (points, 95% interval) and the label over the seeds. With one model
    the index is the system alone, the model named in its header.

    Examples:
        >>> t = pd.DataFrame([{"model": "m", "defence": "llt", "seed 0": "holds", "seed 1": "holds",
        ...                    "seed 2": "helps but does not hold", "masking flagged on": "none", "agree": False}])
        >>> seed_verdict_table(t)["verdict by seed"].iloc[0]
        'holds (seeds 0, 1); helps but does not hold (seed 2)'
    """
    seeds = [c for c in table.columns if c.startswith("seed ")]
    rows = []
    for _, r in table.iterrows():
        by_label: dict[str, list[str]] = {}
        for s in seeds:
            if isinstance(r[s], str):
                by_label.setdefault(r[s], []).append(s.removeprefix("seed "))
        said = [f"{label} ({'seeds' if len(k) > 1 else 'seed'} {', '.join(k)})" for label, k in by_label.items()]
        pooled = (f"{_pts(r['square_pooled'])} [{_pts(r['square_pooled_low'])}, {_pts(r['square_pooled_high'])}]"
                  if _finite(r.get("square_pooled", np.nan)) else "")
        rows.append({"model": r["model"], "system": system_text(r["defence"]), "verdict by seed": "; ".join(said),
                     "masking flagged on": r["masking flagged on"], "Square's gain, pooled (points)": pooled,
                     "over the seeds": r.get("over seeds", "")})
    frame = pd.DataFrame(rows)
    if frame["model"].nunique() == 1:  # one model: its name heads the systems, the table stays narrow
        return frame.drop(columns="model").set_index("system").rename_axis(f"system ({frame['model'].iloc[0]})")
    return frame.set_index(["model", "system"])


#: The harder cascade has flattened out when its last :data:`STRESS_TAIL` attacks each break at
#: most this share of the images (and at most one image).
STRESS_FLAT = 0.002
STRESS_TAIL = 3


def stress_reading(stress: pd.DataFrame, results_by_seed: dict[int, pd.DataFrame]) -> list[str]:
    """What the harder battery of ``benchmarks/stress_defences.py`` does to the defences said to hold.

    ``stress`` is that script's table; ``results_by_seed`` experiment 4's results per training
    seed (each stress row is read against its own seed's). One sentence per (model, defence): the headline gradient attacks re-run,
    what the cascade of harder attacks adds (the drop with its paired interval), and the
    share of the undefended model's loss the defence still wins back when its adaptive
    accuracy is the lower of the harder worst case and the published one (an upper bound of
    their per-image worst case, which the two separate runs cannot give), against
    :data:`HOLD_WON_BACK`.

    Examples:
        >>> stress_reading(pd.DataFrame(columns=["seed", "model", "defence", "stage"]), {})
        []
    """
    out = []
    for (seed, model, defence), rows in stress.groupby(["seed", "model", "defence"], sort=False):
        res = _exp4(results_by_seed[seed]) if seed in results_by_seed else pd.DataFrame()
        head = rows[rows["stage"] == "headline"]
        harder = rows[rows["stage"] == "harder"]
        summary = rows[rows["stage"] == "summary"]
        if head.empty or harder.empty or summary.empty or res.empty:
            continue
        r = res[res["model"] == model]
        und_clean = _cell(r, defence="none", setting="clean", metric="accuracy")[0]
        und_adapt = _cell(r, defence="none", attack="worst_case", setting="whitebox", metric="accuracy")[0]
        published = _cell(r[r["defence"] == defence], attack="worst_case", setting="whitebox", metric="accuracy")[0]
        before, after = float(head["accuracy"].iloc[-1]), float(harder["accuracy"].iloc[-1])
        drop = summary.iloc[0]
        n = int(rows["n_images"].iloc[0])
        broke = harder["newly_broken"].to_numpy()
        # the tail of the cascade that breaks at most one image per attack: where it has flattened out
        big = np.flatnonzero(broke > max(1, STRESS_FLAT * n))
        tail = len(broke) - (big[-1] + 1 if len(big) else 0)
        text = (f"**{system_text(defence)} ({model}, seed {int(seed)}), attacked harder:** its headline gradient attacks, "
                f"re-run, leave it {before:.1%} accurate on {n} images; {len(harder)} harder attacks, each on the "
                f"images every earlier one left correct, break {int(drop['newly_broken'])} more and take it to "
                f"{after:.1%} ({_pts(drop['accuracy'])} points, {_pts(drop['ci_low'])} to {_pts(drop['ci_high'])}). "
                + (f"The last {tail} of them broke {int(broke[len(broke) - tail:].sum())} between them: the cascade "
                   f"has flattened out." if tail >= STRESS_TAIL else
                   "Its last attacks still break images, so the harder worst case is an upper bound as well."))
        if np.isfinite(published) and und_clean > und_adapt:
            worst = min(after, published)
            share = (worst - und_adapt) / (und_clean - und_adapt)
            text += (f" With its adaptive accuracy read as {worst:.1%} (the lower of that and the published worst case, "
                     f"{published:.1%}), it wins back {share:.0%} of what the adaptive attacks take from the undefended "
                     f"model: " + (f"still at least the {HOLD_WON_BACK:.0%} the rule asks of a defence that holds."
                                   if share >= HOLD_WON_BACK else
                                   f"below the {HOLD_WON_BACK:.0%} the rule asks of a defence that holds, so the "
                                   f"label 'holds' does not survive the harder attacks."))
        out.append(text)
    return out


def stress_table(stress: pd.DataFrame) -> pd.DataFrame:
    """The harder battery's cascade for display: one row per (system, attack) in the order run, one
    column per training seed, each cell ``"<broke>/<attacked> → <after>"`` (of the images still
    correct before the attack, those it turned wrong, and the accuracy after it), so the seeds of one
    system read side by side; a seed that did not run the attack shows "—".

    Shape: columns ``system, attack, stage, seed K...``.

    Examples:
        >>> t = pd.DataFrame({"seed": [0, 2], "model": "m", "defence": "llt", "stage": "harder",
        ...                   "attack": "pgd", "attacked": [300, 280], "newly_broken": [9, 4],
        ...                   "accuracy": [0.552, 0.516]})
        >>> stress_table(t).iloc[0].tolist()
        ['the LLT', 'pgd', 'harder', '9/300 → 55.2%', '4/280 → 51.6%']
    """
    t = stress[stress["stage"] != "summary"].copy()
    several = t["model"].nunique() > 1
    t["system"] = [system_text(d) + (f" ({m})" if several else "") for m, d in zip(t["model"], t["defence"])]
    t["cell"] = [f"{int(b)}/{int(a)} → {v:.1%}" for b, a, v in zip(t["newly_broken"], t["attacked"], t["accuracy"])]
    keys = ["system", "attack", "stage"]
    wide = t.pivot_table(index=keys, columns="seed", values="cell", aggfunc="first")
    wide = wide.reindex(pd.MultiIndex.from_frame(t[keys].drop_duplicates()))  # the order the attacks ran in
    wide.columns = [f"seed {int(k)}" for k in wide.columns]
    return wide.fillna("—").reset_index()


def seed_agreement(table: pd.DataFrame) -> str:
    """One sentence on :func:`verdicts_over_seeds`: which verdicts every seed shares, which move."""
    seeds = [c for c in table.columns if c.startswith("seed ")]
    if len(seeds) < 2:
        return (f"Experiment 4 ran on one training seed here ({seeds[0] if seeds else 'none'}), so no verdict "
                f"has been checked against a retraining from another seed.")

    def flags(r: pd.Series) -> str:
        on = r["masking flagged on"]
        return "" if on == "none" else ("; masking flagged on every seed" if len(on.split(", ")) == len(seeds)
                                        else f"; masking flagged on {on} only")

    same = [f"{system_text(r['defence'])} ({r['model']}: {r[seeds[0]]}{flags(r)})"
            for _, r in table.iterrows() if r["agree"]]
    def by_seed(r: pd.Series) -> str:
        return (f"{system_text(r['defence'])} ({r['model']}: "
                + ", ".join(f"{s} {r[s]}" for s in seeds if isinstance(r[s], str)) + f"{flags(r)})")

    settled = table.get("over seeds", pd.Series("not settled", index=table.index)) != "not settled"
    moved = [by_seed(r) for i, r in table.iterrows() if not r["agree"] and not settled[i]]
    pooled = [by_seed(r) + (f", where Square's gain pooled over the seeds is {_pts(r['square_pooled'])} points "
                            f"({_pts(r['square_pooled_low'])} to {_pts(r['square_pooled_high'])}, Cochran's Q p "
                            f"{_q_p(r['square_pooled_q_p'])}): the gradient-free check passes over the seeds and "
                            f"the label over them is \"{r['over seeds']}\"")
              for i, r in table.iterrows() if not r["agree"] and settled[i]]
    text = f"Over the {len(seeds)} training seeds that ran experiment 4 ({', '.join(seeds)}), "
    text += (f"the label is the same on every seed for {_and(same)}" if same else
             "no label is the same on every seed")
    if pooled:
        text += (f"; the label changes with the seed only through the flag \"Square gains nothing measurable\" "
                 f"for {_and(pooled)}")
    if moved:
        text += (f"; it changes with the seed for {_and(moved)}, so there the label is not a finding yet")
    return text + "."


def _q_p(p: float) -> str:
    """Cochran's Q p-value as the sentences print it: "< 0.01" or "= 0.88"."""
    return "< 0.01" if p < 0.005 else f"= {p:.2f}"


def square_reading(gains: list[tuple[float, float, float]], defence: str) -> str:
    """What Square's gain through ``defence`` says, read per training seed and pooled over them.

    ``gains`` holds one paired ``(value, ci_low, ci_high)`` per seed. With one seed, its
    interval decides. With several, the seeds are pooled
    (:func:`skinlib.metrics.pool_over_seeds`): where Cochran's Q says they measure
    different effects (p < 0.05) nothing is settled; else the pooled interval decides,
    and a pooled reading that single seeds do not all share says so. Returns a clause to
    follow "Square is".

    Examples:
        >>> square_reading([(0.02, -0.03, 0.07)], "llt")[:40]
        'not measurably blunted by the LLT on its'
    """
    n, n_yes, name = len(gains), sum(_excludes_zero_above(g) for g in gains), system_text(defence)
    removed = "so part of the gain is perturbation the codec removes, not only a gradient the attacks cannot follow"
    hidden = "so the gain against the gradient attacks is best read as a gradient they cannot follow"
    if n == 1:
        return (f"measurably blunted by {name} on its seed, {removed}" if n_yes else
                f"not measurably blunted by {name} on its seed, {hidden}") + "; one seed is not yet a finding"
    value, lo, hi, p = pool_over_seeds(gains)
    stats = (f"{_pts(value)} points, {_pts(lo)} to {_pts(hi)}; the seeds differ "
             f"{'measurably' if p < 0.05 else 'by no more than test sampling explains'}, Cochran's Q p "
             + _q_p(p))
    if p < 0.05:
        return (f"measurably blunted by {name} on {n_yes} of {n} seeds, but the seeds measure different "
                f"effects (pooled {stats}), so Square does not settle whether the gain is removed perturbation or a "
                f"hidden gradient")
    if lo > 0:
        return (f"measurably blunted by {name} on {n_yes} of {n} seeds and pooled over them ({stats}), {removed}"
                + ("" if n_yes == n else "; single seeds do not all show it, and a further seed would test it"))
    return (f"not measurably blunted by {name} pooled over the {n} seeds ({stats}; on single seeds: {n_yes} "
            f"of {n}), {hidden}")


def square_over_seeds(by_seed: dict[int, pd.DataFrame], defence: str, reference: str = "pgd_at",
                      reading: bool = True) -> str:
    """Square's gain through ``defence`` (and through the reference defence) on every seed, and what it says.

    The gradient-free check of one seed rests on 150-odd images and one random search, so
    the seeds are read together (:func:`square_reading`). ``reading=False`` gives the
    numbers and the pooled estimate only, for a page that states the reading elsewhere
    (the summary's short answer, :func:`webp_bottom_line`). Empty text where fewer than
    two seeds ran Square.
    """
    per_model: dict[str, list[str]] = {}
    gains: dict[str, list[tuple[float, float, float]]] = {}
    for seed, results in sorted(by_seed.items()):
        res = _exp4(results)
        for model in res["model"].drop_duplicates():
            r = res[res["model"] == model]
            bits = []
            for d in (defence, reference):
                lost, gain, bites = _square_cells(r, d)
                if not (_finite(gain[0]) and bites):
                    continue
                bits.append(f"{system_text(d)} {_pts(gain[0])} ({_pts(gain[1])} to {_pts(gain[2])})")
                if d == defence:
                    gains.setdefault(model, []).append(gain)
            if bits:
                per_model.setdefault(model, []).append(f"seed {seed}: " + ", ".join(bits))
    out = []
    for model, readings in per_model.items():
        if len(gains.get(model, [])) < 2:
            continue
        text = (f"Over training seeds ({model}), Square's gain against the undefended model, points with its paired "
                f"95% interval ({system_text(reference)} for reference) — " + "; ".join(readings) + ".")
        if reading:
            text += f" Square is {square_reading(gains[model], defence)}."
        else:
            value, lo, hi, p = pool_over_seeds(gains[model])
            text += (f" Pooled over the seeds, {system_text(defence)}: {_pts(value)} ({_pts(lo)} to {_pts(hi)}), "
                     f"Cochran's Q p " + _q_p(p) + ".")
        out.append(text)
    return " ".join(out)


#: The fall in accuracy, from the reported setting to the convergence curves' longer run
#: (``adaptive.convergence_factor`` times its steps and restarts), above which the attack is said not
#: to have reached its plateau.
CONVERGENCE_TOLERANCE = 0.01


def webp_bottom_line(by_seed: dict[int, tuple[pd.DataFrame, Optional[pd.DataFrame]]], defence: str = "llt",
                     reference: str = "pgd_at") -> list[str]:
    """The short answer to "does the LLT remove small perturbations or hide the gradient?", over seeds.

    One sentence per model of experiment 4, from every training seed that ran it
    (``by_seed`` as in :func:`verdicts_over_seeds`): the verdict's label on each seed, how
    many times the attacker's budget the defence is worth on each seed
    (:func:`budget_multiple`, the reference defence beside it), and what the gradient-free
    Square's gain through it says, per seed and pooled (:func:`square_reading`), with a
    warning where Square is measurably weaker than the gradient attacks on the undefended model.

    Examples:
        >>> webp_bottom_line({})
        []
    """
    per_model: dict[str, dict[str, list]] = {}
    for seed, (results, curves) in sorted(by_seed.items()):
        table = defence_verdicts(results, curves)
        res = _exp4(results)
        for _, row in table[table["defence"] == defence].iterrows():
            model = row["model"]
            m = per_model.setdefault(model, {"seeds": [], "labels": [], "worth": [], "ref": [], "square": [],
                                                  "weak": []})
            m["seeds"].append(seed)
            m["labels"].append(_SHORT_VERDICT.get(row["verdict"], row["verdict"]))
            if curves is not None and not curves.empty:
                m["worth"].append(budget_multiple(curves, model, defence))
                m["ref"].append(budget_multiple(curves, model, reference))
            _, gain, bites = _square_cells(res[res["model"] == model], defence)
            if _finite(gain[0]) and bites:
                m["square"].append(gain)
            power = _cell(res[(res["model"] == model) & (res["defence"] == "none")], attack="square",
                          setting="whitebox", metric="accuracy_vs_gradient")
            if _excludes_zero_above(power):
                m["weak"].append(power[0])
    out = []
    for model, m in per_model.items():
        n = len(m["seeds"])
        seeds = f"{n} training seed{'s' if n > 1 else ''}"
        labels = (f"{m['labels'][0]} on {'every seed' if n > 1 else 'that seed'}" if len(set(m["labels"])) == 1
                  else "gets a label that moves with the seed (" + ", ".join(
                      f"seed {k}: {lab}" for k, lab in zip(m["seeds"], m["labels"])) + ")")
        text = f"**In short ({model}, {seeds}):** against the adaptive attacker {system_text(defence)} {labels}"
        worth = [w for w in m["worth"] if _finite(w)]
        if worth:
            ref = [w for w in m["ref"] if _finite(w)]
            span = f"{min(worth):.1f}" if len(worth) == 1 else f"{min(worth):.1f} to {max(worth):.1f}"
            text += (f". Against the strongest gradient attack it is worth about {span} times the attacker's budget"
                     + (f" ({system_text(reference)}: {min(ref):.1f} to {max(ref):.1f})" if len(ref) > 1 else
                        f" ({system_text(reference)}: {ref[0]:.1f})" if ref else ""))
        if m["square"]:
            text += f". The gradient-free Square is {square_reading(m['square'], defence)}."
            weak = m["weak"]
            if weak:
                span = _pts(min(weak)) if len(weak) == 1 else f"{_pts(min(weak))} to {_pts(max(weak))}"
                text += (f" Square is a weak probe here, though: on the undefended model it stays {span} points above "
                         f"the gradient attacks, so it shows what an attacker without gradients gets, not how far a "
                         f"stronger one would go.")
        else:
            text += ". Square did not run, so nothing separates removed perturbations from a hidden gradient."
        out.append(text)
    return out


def system_curves(curves: pd.DataFrame, model: str, defence: str, curve: Optional[str] = None) -> pd.DataFrame:
    """Experiment 4's curve rows of one defended system (``curve``: ``steps``, ``restarts`` or ``eps``;
    all three when ``None``).

    Examples:
        >>> c = pd.DataFrame({"model": ["m", "m", "n"], "defence": "llt", "curve": ["eps", "steps", "eps"]})
        >>> len(system_curves(c, "m", "llt")), len(system_curves(c, "m", "llt", "eps"))
        (2, 1)
    """
    rows = curves[(curves["model"] == model) & (curves["defence"] == defence)]
    return rows if curve is None else rows[rows["curve"] == curve]


def _curve_attack(curves: pd.DataFrame) -> str:
    """The attack experiment 4's curves followed (``pgd`` in curves written before the column)."""
    return str(curves["attack"].iloc[0]) if "attack" in curves and not curves.empty else "pgd"


def budget_multiple(curves: pd.DataFrame, model: str, defence: str) -> float:
    """How many times the attacker's budget a defence is worth, read off experiment 4's eps curves.

    For each budget ``eps`` of the defended system's curve, the budget at which the
    undefended model's curve falls to the same accuracy (linear interpolation between its
    points); the ratio of the two, and the median over the points. Points the undefended
    curve never reaches (above its clean accuracy or at its floor) are left out; NaN where
    none is left. An upper bound on what the defence buys: a stronger attack on the
    defended system would lower it. Shape: one number per model and defence.

    Examples:
        >>> c = pd.DataFrame({"model": "m", "curve": "eps", "x": [0, 1, 2, 4, 0, 1, 2, 4],
        ...                   "defence": ["none"] * 4 + ["d"] * 4,
        ...                   "accuracy": [0.8, 0.4, 0.1, 0.0, 0.8, 0.6, 0.4, 0.1]})
        >>> float(budget_multiple(c, "m", "d"))
        2.0
    """
    base = system_curves(curves, model, "none", "eps").sort_values("x")
    own = system_curves(curves, model, defence, "eps").sort_values("x")
    if len(base) < 2 or own.empty:
        return np.nan
    acc = np.minimum.accumulate(base["accuracy"].to_numpy(dtype=float))  # an attack's curve cannot rise with eps
    eps = base["x"].to_numpy(dtype=float)
    ratios = [x / float(np.interp(a, acc[::-1], eps[::-1]))
              for x, a in zip(own["x"].astype(float), own["accuracy"].astype(float))
              if x > 0 and acc[-1] < a < acc[0]]
    return float(np.median(ratios)) if ratios else np.nan


def convergence_multiple(curves: pd.DataFrame) -> str:
    """How many times the reported steps the convergence curves ran, in words ("twice", "5 times").

    Examples:
        >>> convergence_multiple(pd.DataFrame({"curve": ["steps"] * 3, "x": [0, 20, 100],
        ...                                    "headline": [False, True, False]}))
        '5 times'
    """
    steps = curves[curves["curve"] == "steps"]
    head = steps[steps["headline"].astype(bool)]
    if head.empty or float(head["x"].iloc[0]) <= 0:
        return "more"
    factor = round(float(steps["x"].max()) / float(head["x"].iloc[0]))
    return {1: "once", 2: "twice"}.get(factor, f"{factor} times")


def convergence_gap(curves: pd.DataFrame, model: str, defence: str) -> Optional[tuple[float, float]]:
    """(accuracy at the reported steps and restarts, after the longer run) from experiment 4's
    convergence curves, or ``None`` where they are missing."""
    c = system_curves(curves, model, defence)
    if c.empty or "headline" not in c or "n_images" not in c:
        return None
    steps, restarts = c[c["curve"] == "steps"], c[c["curve"] == "restarts"]
    head = steps[steps["headline"].astype(bool)]
    if head.empty or restarts.empty:
        return None
    return float(head["accuracy"].iloc[0]), float(restarts.sort_values("x")["accuracy"].iloc[-1])


def convergence_sentence(curves: pd.DataFrame, model: str, defence: str,
                         tolerance: float = CONVERGENCE_TOLERANCE) -> str:
    """Whether the attack of experiment 4's convergence curves had converged at the reported setting.

    Compares, on the curves' images, the accuracy at the reported steps and restarts (the
    ``headline`` point of the steps curve) with the accuracy after all restarts of the
    longer run; a drop of more than ``tolerance`` means the reported accuracy is an upper
    bound. Empty text where the curves are missing.

    Examples:
        >>> c = pd.DataFrame({"model": "m", "defence": "llt", "attack": "pgd_codec", "n_images": 200,
        ...                   "curve": ["steps", "steps", "restarts", "restarts"], "x": [20, 40, 1, 2],
        ...                   "accuracy": [0.55, 0.535, 0.535, 0.53], "headline": [True, False, True, False]})
        >>> convergence_sentence(c, "m", "llt")
        'With twice the steps and restarts, codec-gradient PGD takes it from 55.0% to 53.0% on the 200 images of the convergence curves: not yet on its plateau at the reported setting, so its reported accuracy is an upper bound (its last restart still took 0.5 points off).'
    """
    gap = convergence_gap(curves, model, defence)
    if gap is None:
        return ""
    at, end = gap
    c = system_curves(curves, model, defence)
    steps = c[c["curve"] == "steps"]
    attack = "codec-gradient PGD" if _curve_attack(c) == "pgd_codec" else "PGD"
    restarts = c[c["curve"] == "restarts"].sort_values("x")["accuracy"].to_numpy()
    text = (f"With {convergence_multiple(c)} the steps and restarts, {attack} takes it from {at:.1%} to {end:.1%} "
            f"on the {int(steps['n_images'].iloc[0])} images of the convergence curves")
    if at - end > tolerance:
        text += ": not yet on its plateau at the reported setting, so its reported accuracy is an upper bound"
        if len(restarts) > 1:
            text += f" (its last restart still took {(restarts[-2] - restarts[-1]) * 100:.1f} points off)"
        return text + "."
    return text + ": on its plateau at the reported setting."


# ---------------------------------------------------------------- research questions
#
# The answers to the thesis's research questions (its section 1.4), generated from the
# tidy results of experiments 0-4. Every verb that claims a change is chosen by
# :func:`Change.direction`: paired interval first, unpaired intervals where no paired
# row exists, "no measurable change" otherwise.

#: The thesis's research questions, quoted from its section 1.4.
RESEARCH_QUESTIONS: dict[str, str] = {
    "RQ1": "How would the classifiers - combination of DL model and ISIC2018 dataset - be impacted by "
           "adversarial attacks (e.g. FGSM, UAP)?",
    "RQ2": "Concerning adversarial attacks, more precisely for FGSM, is there a way to mitigate this attack "
           "on this dataset?",
    "RQ3": "Is there a way to achieve the same results against UAP (Presented by Hirano et. al.) by using "
           "simplified methods or by combining known methods (e.g. Adversarial training and Low level "
           "Transformation)?",
}
NO_CHANGE = "makes no measurable change to"
#: The rule every generated verb follows (shown on the summary page and in the methods chapter).
WORD_RULE = (
    'A change is named ("raises", "lowers") only when the paired 95% lesion-bootstrap interval of the '
    'difference excludes 0; otherwise the sentence says the attack or defence "makes no measurable change". '
    "Where the results hold no paired row for a comparison (marked *unpaired*), the two systems' own 95% "
    "intervals are compared instead, and a change is named only when they do not overlap, a stricter test. "
    'A defence is never said to "hold" on the strength of experiments 3.1-3.3: only the adaptive '
    "evaluation of experiment 4 gives that word, by the rule of the methods chapter."
)
#: How each system of the ``defence`` column is named in a sentence.
SYSTEM_TEXT: dict[str, str] = {"none": "the undefended model", "retraining": "retraining", "llt": "the LLT",
                               "retraining+llt": "retraining with the LLT", "pgd_at": "PGD adversarial training"}


def system_text(defence: str) -> str:
    """``defence`` named in a sentence (:data:`SYSTEM_TEXT`; an unknown id as it is).

    Examples:
        >>> system_text("llt")
        'the LLT'
    """
    return SYSTEM_TEXT.get(defence, defence)


#: The defences of experiments 3.1-3.3: (experiment, defence, name in a sentence).
DEFENCES: tuple[tuple[str, str, str], ...] = (
    ("exp3_1_retraining", "retraining", "retraining"),
    ("exp3_2_llt", "llt", "the LLT"),
    ("exp3_3_combined", "retraining+llt", "the combination"),
)
_SHORT_VERDICT = {HOLDS: "holds", PARTIAL: "helps but does not hold", GREY_ONLY: "helps in the grey box only",
                  NO_EFFECT: "has no measurable effect"}
_NAN3 = (np.nan, np.nan, np.nan)


def change_word(cell: tuple[float, float, float], up: str = "raises", down: str = "lowers") -> str:
    """``up``/``down`` when the paired interval ``(value, lo, hi)`` excludes 0, else :data:`NO_CHANGE`."""
    _, lo, hi = cell
    if np.isfinite(lo) and lo > 0:
        return up
    if np.isfinite(hi) and hi < 0:
        return down
    return NO_CHANGE


def _finite(v: float) -> bool:
    return v is not None and bool(np.isfinite(v))


class Change:
    """One metric of one system (``after``) against a reference system (``before``).

    Each of ``before``, ``after``, ``diff`` is ``(value, ci_low, ci_high)``; ``diff`` is
    ``after - before`` with its paired interval when ``paired`` (a ``<metric>_vs_<reference>``
    row), else the bare difference of the two values.

    Examples:
        >>> Change((0.7, 0.68, 0.72), (0.3, 0.28, 0.33), (-0.4, -0.43, -0.37), True).direction
        -1
        >>> Change((0.7, 0.68, 0.72), (0.69, 0.66, 0.71), (-0.01, np.nan, np.nan), False).direction
        0
    """

    def __init__(self, before, after, diff, paired: bool):
        self.before, self.after, self.diff, self.paired = tuple(before), tuple(after), tuple(diff), bool(paired)

    def __repr__(self) -> str:
        return f"Change(before={self.before}, after={self.after}, diff={self.diff}, paired={self.paired})"

    @property
    def measured(self) -> bool:
        return _finite(self.after[0]) and _finite(self.diff[0])

    @property
    def direction(self) -> int:
        """+1 (measurably up), -1 (measurably down) or 0 (no measurable change, or not measured)."""
        if not self.measured:
            return 0
        if self.paired:
            word = change_word(self.diff)
            return 1 if word == "raises" else -1 if word == "lowers" else 0
        (_, b_lo, b_hi), (_, a_lo, a_hi) = self.before[:3], self.after[:3]
        if not all(_finite(v) for v in (b_lo, b_hi, a_lo, a_hi)):
            return 0
        if a_lo > b_hi:
            return 1
        if a_hi < b_lo:
            return -1
        return 0


def _where(rows: pd.DataFrame, **where: str) -> pd.DataFrame:
    for col, val in where.items():
        rows = rows[rows[col] == val]
    return rows


def measure(after: pd.DataFrame, before: Optional[pd.DataFrame], metric: str, *, grouping: str = "",
            reference: Optional[str] = None) -> Change:
    """The :class:`Change` of ``metric`` from the system of rows ``before`` to that of rows ``after``.

    ``after``/``before`` are tidy rows of one system each (text columns as from
    :func:`skinlib.report.tidy`). The paired row ``<metric>_vs_<reference>`` of ``after``
    gives the difference and its interval when it exists; otherwise the difference is
    ``after - before`` and :attr:`Change.direction` compares the two intervals.
    """
    a = _cell(after, metric=metric, grouping=grouping)
    b = _cell(before, metric=metric, grouping=grouping) if before is not None else _NAN3
    if reference:
        d = _cell(after, metric=f"{metric}_vs_{reference}", grouping=grouping)
        if _finite(d[0]):
            if not _finite(b[0]) and _finite(a[0]):
                b = (a[0] - d[0], np.nan, np.nan)
            return Change(b, a, d, True)
    return Change(b, a, (a[0] - b[0], np.nan, np.nan), False)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _range(cell) -> str:
    return f"{100 * cell[1]:.1f}-{100 * cell[2]:.1f}%" if _finite(cell[1]) and _finite(cell[2]) else "no interval"


def change_clause(change: Change, what: str, *, up: str = "raises", down: str = "lowers") -> str:
    """``"lowers accuracy from 70.6% to 34.4% (-36.2 points, paired 95% interval -39.0 to -33.4)"``.

    The verb is ``up``/``down`` or :data:`NO_CHANGE` by :attr:`Change.direction`; an
    unpaired comparison says so and gives both systems' intervals.
    """
    if not change.measured:
        return f"leaves {what} unmeasured (no results)"
    b, a, d = change.before, change.after, change.diff
    if change.paired:
        detail = f"{_pts(d[0])} points, paired 95% interval {_pts(d[1])} to {_pts(d[2])}"
    else:
        detail = f"{_pts(d[0])} points, unpaired: 95% intervals {_range(b)} and {_range(a)}"
    values = f"{_pct(b[0])} to {_pct(a[0])}" if _finite(b[0]) else f"{_pct(a[0])}"
    direction = change.direction
    if direction == 0:
        return f"{NO_CHANGE} {what} ({values}; {detail})"
    return f"{up if direction > 0 else down} {what} from {values} ({detail})"


def _and(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _budget(eps: float) -> str:
    return f"{eps * 255:.3g}/255"


def _attack_name(attack: str, fgsm_eps: float, uap_budget: str) -> str:
    if attack == "fgsm":
        return f"FGSM at {_budget(fgsm_eps)}"
    return f"ART's UAP at {uap_budget}" if uap_budget else "ART's UAP"


def _uap_note(fgsm_eps: float) -> str:
    return f"the thesis does not state its UAP budget; FGSM's is {_budget(fgsm_eps)}"


def _tidy(results: pd.DataFrame) -> pd.DataFrame:
    from skinlib.report import tidy

    return tidy(results, required=("experiment", "model", "attack", "defence", "setting", "metric", "value"))


def _at_param(rows: pd.DataFrame, value) -> pd.DataFrame:
    from skinlib.report import param_matches

    return rows[param_matches(rows["param"], value)] if len(rows) else rows


def _clean(res: pd.DataFrame, model: str) -> pd.DataFrame:
    """The undefended clean model (experiment 0)."""
    return _where(res, experiment="exp0_classifier", model=model, attack="none", setting="clean")


def _attacked(res: pd.DataFrame, model: str, attack: str, fgsm_eps: float) -> pd.DataFrame:
    """The undefended model under the thesis's FGSM (at ``fgsm_eps``) or ART's UAP (experiment 2)."""
    if attack == "fgsm":
        return _at_param(_where(res, experiment="exp2_1_fgsm", model=model, attack="fgsm", setting="greybox"),
                         fgsm_eps)
    return _where(res, experiment="exp2_2_uap", model=model, attack=attack, setting="greybox")


FNR_WHAT = "the missed-malignancy rate (clinical FNR)"
SPEC_WHAT = "the specificity for benign lesions (clinical)"


def _three(after: pd.DataFrame, before: pd.DataFrame, reference: Optional[str]) -> dict[str, Change]:
    return {"accuracy": measure(after, before, "accuracy", reference=reference),
            "fnr": measure(after, before, "fnr", grouping="clinical", reference=reference),
            "spec": measure(after, before, "health_specificity", grouping="clinical", reference=reference)}


def _three_clauses(ch: dict[str, Change]) -> str:
    return (f"{change_clause(ch['accuracy'], 'accuracy')}, {change_clause(ch['fnr'], FNR_WHAT)} and "
            f"{change_clause(ch['spec'], SPEC_WHAT)}")


def _fnr_fall_note(after: pd.DataFrame, before: pd.DataFrame, ch: dict[str, Change],
                   reference: Optional[str]) -> str:
    """When an attack lowers the missed-malignancy rate: say how (which class the predictions went to)."""
    if ch["fnr"].direction >= 0:
        return ""
    from skinlib.labels import CLASSES, GROUPINGS

    rises = []
    for c in CLASSES:
        r = measure(after, before, f"recall_{c}", reference=reference)
        if r.direction > 0:
            rises.append((r.diff[0], c, r))
    text = " The fall in missed malignancies is no protection"
    if rises:
        _, c, r = max(rises)
        kind = "malignant" if c in GROUPINGS["clinical"] else "benign"
        text += (f": the perturbation drives predictions into {c}, a {kind} class (recall of {c} "
                 f"{_pct(r.before[0])} to {_pct(r.after[0])})")
        if ch["spec"].direction < 0:
            text += ", so benign lesions are called malignant and specificity falls with it"
    elif ch["spec"].direction < 0:
        text += ": benign lesions are called malignant more often, and specificity falls with it"
    return text + "."


def attack_effect(results: pd.DataFrame, experiment: str, model: str, attack: str, param=None) -> str:
    """One generated clause: what ``attack`` did to accuracy, the missed-malignancy rate and specificity,
    against the same model on clean images (paired ``*_vs_clean`` rows where they exist)."""
    res = _tidy(results)
    after = _where(res, experiment=experiment, model=model, attack=attack, setting="greybox")
    if param is not None:
        after = _at_param(after, param)
    return _three_clauses(_three(after, _clean(res, model), "clean"))


def _poisoning_sentence(res: pd.DataFrame, model: str) -> tuple[str, Optional[Change]]:
    from skinlib.report import param_value

    rows = _where(res, experiment="exp1_poisoning", model=model, attack="poisoning")
    fractions = sorted({param_value(p) for p in rows["param"] if param_value(p) is not None})
    if not rows.size or 0.0 not in fractions or len(fractions) < 2:
        return "Experiment 1 (poisoning) has no results for this model in this run.", None
    base = _at_param(rows, 0.0)
    top = fractions[-1]
    ch = _three(_at_param(rows, top), base, None)
    first = next((f for f in fractions[1:]
                  if measure(_at_param(rows, f), base, "accuracy").direction < 0), None)
    tail = (f"; the smallest fraction of the sweep that measurably lowers accuracy is {first:.0%}" if first is not None
            else "; no fraction of the sweep measurably lowers accuracy")
    return (f"Label-flip poisoning with {top:.0%} of the training nevi relabelled bkl, against a model trained "
            f"alike on clean labels, {_three_clauses(ch)}{tail}.", (f"poisoning ({top:.0%} of nevi relabelled)",
                                                                  ch["accuracy"]))


def rq1_answer(results: pd.DataFrame, model: str, fgsm_eps: float, uap_budget: str = "") -> str:
    """RQ1 for one model: what poisoning, FGSM (at ``fgsm_eps``) and ART's UAP did against the clean model.

    ``uap_budget`` describes the UAP's budget in words (see
    :func:`skinlib.report.attack_budgets`); the first sentence is the verdict, the
    following ones give the numbers.
    """
    res = _tidy(results)
    clean = _clean(res, model)
    poison, poison_acc = _poisoning_sentence(res, model)
    names = {}
    sentences = [poison]
    for attack in ("fgsm", "uap_art"):
        label = _attack_name(attack, fgsm_eps, uap_budget)
        after = _attacked(res, model, attack, fgsm_eps)
        if after.empty:
            sentences.append(f"{label}: experiment 2 has no results for this model in this run.")
            continue
        ch = _three(after, clean, "clean")
        names[label] = ch["accuracy"]
        long = f"{label} (crafted on the undefended model, as in the thesis"
        long += f"; {_uap_note(fgsm_eps)})" if attack == "uap_art" else ")"
        sentences.append(f"{long} {_three_clauses(ch)}." + _fnr_fall_note(after, clean, ch, "clean"))
    if poison_acc is not None:
        names = {poison_acc[0]: poison_acc[1], **names}
    down = [n for n, c in names.items() if c.direction < 0]
    flat = [n for n, c in names.items() if c.direction >= 0]
    if down:
        head = f"Accuracy falls measurably under {_and(down)}"
        head += f"; {_and(flat)} {'makes' if len(flat) == 1 else 'make'} no measurable change to it." if flat else "."
    elif names:
        head = "No attack of this run measurably lowers accuracy."
    else:
        head = "No attack results for this model in this run."
    return f"**RQ1 — {model}:** {head} " + " ".join(sentences)


def _won_back(defended: float, undefended_clean: float, undefended_attacked: float) -> float:
    lost = undefended_clean - undefended_attacked
    return (defended - undefended_attacked) / lost if _finite(lost) and lost > 0 else np.nan


def _adaptive_eps(res: pd.DataFrame) -> Optional[float]:
    from skinlib.report import param_value

    rows = _where(res, experiment="exp4_adaptive", attack="worst_case")
    values = [param_value(p) for p in rows["param"].drop_duplicates()]
    values = [v for v in values if v is not None]
    return values[0] if values else None


def rq_defence_answer(results: pd.DataFrame, model: str, attack: str, fgsm_eps: float,
                      verdict_table: Optional[pd.DataFrame] = None, uap_budget: str = "") -> str:
    """RQ2 (``attack="fgsm"``) or RQ3 (``attack="uap_art"``) for one model, in generated words.

    First the verdict: which defences measurably raise accuracy under the attack in the
    grey box (the thesis's setting), then in the white box (the attack recomputed through
    the defence), then the adaptive verdict of experiment 4 (:func:`defence_verdicts`,
    passed as ``verdict_table``). Then the numbers: accuracy and the missed-malignancy rate
    against the undefended model under the same attack and setting (paired
    ``*_vs_undefended`` rows where they exist), and the share of the attack's damage won
    back.
    """
    res = _tidy(results)
    rq = "RQ2" if attack == "fgsm" else "RQ3"
    name = _attack_name(attack, fgsm_eps, uap_budget)
    clean = _clean(res, model)
    undefended = _attacked(res, model, attack, fgsm_eps)
    u_clean = _cell(clean, metric="accuracy", grouping="")[0]
    u_att = _cell(undefended, metric="accuracy", grouping="")[0]
    grey, white, found = {}, {}, []
    for experiment, defence, label in DEFENCES:
        rows = _where(res, experiment=experiment, model=model, attack=attack, defence=defence)
        if rows.empty:
            continue
        found.append(label)
        for setting, store in (("greybox", grey), ("whitebox", white)):
            after = _where(rows, setting=setting)
            if not after.empty:
                store[label] = (_three(after, undefended, "undefended"), after)
    if not found:
        return f"**{rq} — {model}:** Experiments 3.1-3.3 have no results for this model and {name} in this run."

    def who(store, sign):
        return [lab for lab, (ch, _) in store.items() if ch["accuracy"].direction == sign]

    head = []
    for setting_name, store in (("in the grey box (the thesis's setting)", grey),
                                ("in the white box (the attack recomputed through the defence)", white)):
        if not store:
            continue
        up, flat, down = who(store, 1), who(store, 0), who(store, -1)
        bits = []
        if up:
            bits.append(f"{_and(up)} measurably {'raises' if len(up) == 1 else 'raise'} accuracy")
        if flat:
            bits.append(f"{_and(flat)} {'makes' if len(flat) == 1 else 'make'} no measurable change to it")
        if down:
            bits.append(f"{_and(down)} measurably {'lowers' if len(down) == 1 else 'lower'} it")
        head.append(f"{setting_name}, {'; '.join(bits)}")
    verdict_bits, adaptive_bits = [], []
    v = verdict_table[verdict_table["model"] == model] if verdict_table is not None and len(verdict_table) else None
    eps4 = _adaptive_eps(res)
    for _, defence, label in DEFENCES:
        if v is None or v.empty:
            break
        row = v[v["defence"] == defence]
        if row.empty:
            continue
        r = row.iloc[0]
        verdict_bits.append(f"{label} {_SHORT_VERDICT.get(r['verdict'], r['verdict'])}")
        won = f", {r['won_back']:.0%} of the loss won back" if _finite(r["won_back"]) else ""
        if r.get("masking", "none found") != "none found":
            won += (", flagged for gradient masking, which caps its label at 'helps'" if r.get("capped_by_masking")
                    else ", flagged for gradient masking")
        adaptive_bits.append(
            f"{label} {_SHORT_VERDICT.get(r['verdict'], r['verdict'])} ({_pct(r['adaptive'])} under the worst case "
            f"against the undefended model's {_pct(r['adaptive_undefended'])}: {_pts(r['adaptive_gain'])} points, "
            f"paired 95% interval {_pts(r['adaptive_gain_low'])} to {_pts(r['adaptive_gain_high'])}{won})")
    budget4 = f" at {_budget(eps4)}" if eps4 else ""
    if verdict_bits:
        head.append(f"against the adaptive attacker of experiment 4, {_and(verdict_bits)}")
    text = f"**{rq} — {model}:** Against {name}, " + "; ".join(head) + "."
    if _finite(u_att):
        text += f" The undefended model keeps {_pct(u_att)} under this attack (clean: {_pct(u_clean)})."
    if grey:
        parts = []
        for label, (ch, after) in grey.items():
            won = _won_back(ch["accuracy"].after[0], u_clean, u_att)
            share = f", winning back {won:.0%} of what the attack took" if _finite(won) else ""
            parts.append(f"{label} {change_clause(ch['accuracy'], 'accuracy')}{share}, and "
                         f"{change_clause(ch['fnr'], FNR_WHAT)}")
        text += " Grey box, against the undefended model under the same attack: " + "; ".join(parts) + "."
    if white:
        parts = [f"{label} {change_clause(ch['accuracy'], 'accuracy')}" for label, (ch, _) in white.items()]
        text += " White box, against the same undefended model: " + "; ".join(parts) + "."
    if adaptive_bits:
        stronger = "" if attack == "fgsm" else ", a stronger attacker than one universal perturbation"
        text += (f" Adaptive verdict (experiment 4: the worst case of iterated per-image white-box attacks"
                 f"{budget4}{stronger}; its retrained model is the one retrained against FGSM): "
                 + "; ".join(adaptive_bits) + ".")
    elif verdict_table is not None:
        text += (" Experiment 4 did not evaluate this model in this run (the profile's `adaptive.models`), "
                 "so there is no adaptive verdict for it.")
    return text


def research_answers(results: pd.DataFrame, models: list[str], fgsm_eps: float,
                     curves: Optional[pd.DataFrame] = None, uap_budget: str = "") -> list[str]:
    """The answers to the thesis's three research questions for one run: one item per question and model.

    Each item starts with ``**RQn — model:**`` (the summary renders them as a Markdown
    list), then a generated verdict sentence and its numbers (:func:`rq1_answer`,
    :func:`rq_defence_answer`). Items come in the order RQ1, RQ2, RQ3, models in order.
    Experiment 4's verdicts (:func:`defence_verdicts`, with ``curves``) supply the
    adaptive answer of RQ2 and RQ3 where it ran.
    """
    res = _tidy(results)
    verdict = defence_verdicts(res, curves) if (res["experiment"] == "exp4_adaptive").any() else pd.DataFrame(
        columns=["model", "defence"])
    out = [rq1_answer(res, m, fgsm_eps, uap_budget) for m in models]
    for attack in ("fgsm", "uap_art"):
        out += [rq_defence_answer(res, m, attack, fgsm_eps, verdict, uap_budget) for m in models]
    return out


def research_answers_markdown(results: pd.DataFrame, models: list[str], fgsm_eps: float,
                              curves: Optional[pd.DataFrame] = None, uap_budget: str = "") -> str:
    """:func:`research_answers` as one Markdown list per research question, each headed by the question."""
    items = research_answers(results, models, fgsm_eps, curves, uap_budget)
    blocks = []
    for rq, question in RESEARCH_QUESTIONS.items():
        mine = [i for i in items if i.startswith(f"**{rq} — ")]
        blocks.append(f"**{rq}** (the thesis, section 1.4): *{question}*\n\n" + "\n".join(f"- {i}" for i in mine))
    return "\n\n".join(blocks)
