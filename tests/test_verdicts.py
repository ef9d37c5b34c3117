"""Verdicts: the rule that turns experiment 4's numbers into words, on hand-built tidy tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skinlib import metrics, verdicts


def _row(defence, attack, setting, metric, value, lo=np.nan, hi=np.nan, model="m", grouping=""):
    return {"profile": "p", "experiment": "exp4_adaptive", "model": model, "attack": attack, "defence": defence,
            "setting": setting, "param": "", "grouping": grouping, "metric": metric, "value": value,
            "ci_low": lo, "ci_high": hi}


def _table(white_gain, grey_gain, square=(0.0, -0.01, 0.01)):
    rows = [
        _row("none", "none", "clean", "accuracy", 0.80),
        _row("none", "worst_case", "whitebox", "accuracy", 0.10),
        _row("d", "none", "clean", "accuracy", 0.75),
        _row("d", "none", "clean", "accuracy_vs_undefended", -0.05, -0.08, -0.02),
        _row("d", "worst_case", "whitebox", "accuracy", 0.10 + white_gain[0]),
        _row("d", "worst_case", "whitebox", "accuracy_vs_undefended", *white_gain),
        _row("d", "fgsm", "greybox", "accuracy", 0.6),
        _row("d", "fgsm", "greybox", "accuracy_vs_undefended", *grey_gain),
        _row("d", "pgd", "transfer", "accuracy", 0.5),
        _row("d", "pgd", "transfer", "accuracy_vs_undefended", 0.0, -0.02, 0.02),
        _row("d", "square", "whitebox", "accuracy_vs_gradient", *square),
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("white, grey, expected", [
    ((0.40, 0.30, 0.50), (0.3, 0.2, 0.4), verdicts.HOLDS),
    ((0.30, 0.20, 0.40), (0.3, 0.2, 0.4), verdicts.PARTIAL),  # wins back 43% of the 70 points lost
    ((0.01, -0.02, 0.04), (0.3, 0.2, 0.4), verdicts.GREY_ONLY),
    ((0.01, -0.02, 0.04), (0.01, -0.01, 0.03), verdicts.NO_EFFECT),
])
def test_verdict_rule(white, grey, expected):
    table = verdicts.defence_verdicts(_table(white, grey))
    assert list(table["verdict"]) == [expected]
    row = table.iloc[0]
    assert row["won_back"] == pytest.approx(white[0] / 0.70)
    assert row["masking"] == "none found"
    sentence = verdicts.verdict_sentence(row, 2)
    assert expected in sentence and "75.0%" in sentence


def test_square_beating_the_gradients_and_a_flat_eps_curve_are_flagged():
    curves = pd.DataFrame([{"model": "m", "defence": "d", "curve": "eps", "x": x, "accuracy": a}
                           for x, a in ((0, 0.75), (8, 0.5), (16, 0.4))])
    table = verdicts.defence_verdicts(_table((0.3, 0.2, 0.4), (0.3, 0.2, 0.4), square=(-0.2, -0.3, -0.1)), curves)
    masking = table.iloc[0]["masking"]
    assert "Square" in masking and "40%" in masking
    assert "masking suspected" in verdicts.verdict_sentence(table.iloc[0], 2)


@pytest.mark.parametrize("square_on_undefended, inconclusive", [
    ((0.45, 0.40, 0.50), True),    # Square far weaker than the gradients even without a defence
    ((0.02, -0.01, 0.05), False),  # as strong as them there: its verdict behind the defence counts
])
def test_a_square_too_weak_on_the_undefended_model_makes_the_verdict_an_upper_bound(square_on_undefended,
                                                                                     inconclusive):
    frame = pd.concat([_table((0.40, 0.30, 0.50), (0.3, 0.2, 0.4)), pd.DataFrame([
        _row("none", "square", "whitebox", "accuracy_vs_gradient", *square_on_undefended)])], ignore_index=True)
    row = verdicts.defence_verdicts(frame).iloc[0]
    sentence = verdicts.verdict_sentence(row, 2)
    assert row["verdict"] == verdicts.HOLDS
    assert ("upper bound" in sentence) is inconclusive
    assert bool(row["caveat"]) is inconclusive


def _with_square(square_gain, square_lost=(-0.30, -0.38, -0.22)):
    """The HOLDS table, Square 30 points below clean on the undefended model (20 above the gradients)."""
    return pd.concat([_table((0.40, 0.30, 0.50), (0.3, 0.2, 0.4)), pd.DataFrame([
        _row("none", "square", "whitebox", "accuracy_vs_gradient", 0.20, 0.12, 0.28),
        _row("none", "square", "whitebox", "accuracy_vs_clean", *square_lost),
        _row("d", "square", "whitebox", "accuracy_vs_undefended", *square_gain)])], ignore_index=True)


def test_a_gain_square_does_not_see_is_flagged_as_masking():
    # the gradient attacks find +40 points, Square (which hurts the undefended model) finds none
    row = verdicts.defence_verdicts(_with_square((0.01, -0.04, 0.06))).iloc[0]
    assert "needs no gradient" in row["masking"] and "+40.0" in row["masking"]
    sentence = verdicts.verdict_sentence(row, 2)
    assert "masking suspected" in sentence
    # it wins back 57% (enough to hold by the numbers), but a flagged gain is not evidence of holding
    assert row["won_back"] > verdicts.HOLD_WON_BACK
    assert row["verdict"] == verdicts.PARTIAL and row["capped_by_masking"]
    assert "said at most to help" in sentence and "must win back" not in sentence


def test_a_defence_that_blunts_square_too_says_how_much_it_wins_back():
    row = verdicts.defence_verdicts(_with_square((0.15, 0.08, 0.22))).iloc[0]
    assert row["masking"] == "none found"
    assert row["verdict"] == verdicts.HOLDS and not row["capped_by_masking"]
    assert row["square_won_back"] == pytest.approx(0.5)
    assert "wins back 50% of what it takes" in row["caveat"] and "upper bound" in row["caveat"]
    # a Square that takes nothing measurable from the undefended model cannot say either
    weak = verdicts.defence_verdicts(_with_square((0.15, 0.08, 0.22), square_lost=(-0.02, -0.06, 0.01))).iloc[0]
    assert weak["masking"] == "none found" and "inconclusive" in weak["caveat"] and np.isnan(weak["square_won_back"])


def test_change_word_needs_the_interval_to_exclude_zero():
    assert verdicts.change_word((0.1, 0.05, 0.2)) == "raises"
    assert verdicts.change_word((-0.1, -0.2, -0.05)) == "lowers"
    assert verdicts.change_word((0.1, -0.01, 0.2)) == "makes no measurable change to"


def test_a_defence_left_at_29_percent_never_holds():
    # a paired gain well above 0, but the system keeps 29% where the clean model had 80%
    table = verdicts.defence_verdicts(_table((0.19, 0.15, 0.23), (0.3, 0.2, 0.4)))
    row = table.iloc[0]
    assert row["adaptive"] == pytest.approx(0.29)
    assert row["verdict"] == verdicts.PARTIAL
    assert "does not hold" in verdicts.verdict_sentence(row, 2)


# ---------------------------------------------------------------- research questions


def test_change_direction_paired_and_unpaired():
    paired_zero = verdicts.Change((0.7, 0.68, 0.72), (0.69, 0.67, 0.71), (-0.01, -0.03, 0.01), True)
    assert paired_zero.direction == 0
    assert verdicts.change_clause(paired_zero, "accuracy").startswith("makes no measurable change to accuracy")
    # the same values, a paired interval below 0: named
    paired_down = verdicts.Change((0.7, 0.68, 0.72), (0.69, 0.67, 0.71), (-0.01, -0.02, -0.005), True)
    assert verdicts.change_clause(paired_down, "accuracy").startswith("lowers accuracy from 70.0% to 69.0%")
    # without a paired row: overlapping intervals are no change, disjoint ones are
    overlap = verdicts.Change((0.7, 0.65, 0.75), (0.6, 0.55, 0.66), (-0.1, np.nan, np.nan), False)
    assert overlap.direction == 0 and "unpaired" in verdicts.change_clause(overlap, "accuracy")
    apart = verdicts.Change((0.7, 0.65, 0.75), (0.6, 0.55, 0.64), (-0.1, np.nan, np.nan), False)
    assert verdicts.change_clause(apart, "accuracy").startswith("lowers accuracy from 70.0% to 60.0% (-10.0 points")
    missing = verdicts.Change((0.7, 0.65, 0.75), (np.nan,) * 3, (np.nan,) * 3, False)
    assert missing.direction == 0 and "unmeasured" in verdicts.change_clause(missing, "accuracy")


def _r(experiment, attack, setting, metric, value, lo=np.nan, hi=np.nan, *, model="m", defence="none", param="",
       grouping=""):
    return {"profile": "p", "experiment": experiment, "model": model, "attack": attack, "defence": defence,
            "setting": setting, "param": param, "grouping": grouping, "metric": metric, "value": value,
            "ci_low": lo, "ci_high": hi}


EPS = repr(2 / 255)


def _run_frame(llt_gain=(0.30, 0.25, 0.35), llt_paired=True):
    """A run with known numbers: clean 70%, FGSM -> 30%, the UAP -> 20% with bcc taking over."""
    rows = [
        _r("exp0_classifier", "none", "clean", "accuracy", 0.70, 0.67, 0.73),
        _r("exp0_classifier", "none", "clean", "fnr", 0.30, 0.25, 0.35, grouping="clinical"),
        _r("exp0_classifier", "none", "clean", "health_specificity", 0.85, 0.82, 0.88, grouping="clinical"),
        # poisoning: 60% flips accuracy down (disjoint intervals), 5% does not
        _r("exp1_poisoning", "poisoning", "clean", "accuracy", 0.72, 0.70, 0.74, param="0"),
        _r("exp1_poisoning", "poisoning", "clean", "accuracy", 0.71, 0.69, 0.73, param="0.05"),
        _r("exp1_poisoning", "poisoning", "clean", "accuracy", 0.30, 0.27, 0.33, param="0.6"),
    ]
    for param, (acc, fnr_d, spec_d) in {EPS: ((0.30, -0.40, -0.44, -0.36), (0.20, 0.15, 0.25), (-0.2, -0.25, -0.15)),
                                        repr(8 / 255): ((0.10, -0.6, -0.55, -0.65), (0.0, -0.02, 0.02),
                                                        (-0.1, -0.12, -0.08))}.items():
        rows += [_r("exp2_1_fgsm", "fgsm", "greybox", "accuracy", acc[0], acc[0] - 0.03, acc[0] + 0.03, param=param),
                 _r("exp2_1_fgsm", "fgsm", "greybox", "accuracy_vs_clean", *acc[1:], param=param),
                 _r("exp2_1_fgsm", "fgsm", "greybox", "fnr_vs_clean", *fnr_d, param=param, grouping="clinical"),
                 _r("exp2_1_fgsm", "fgsm", "greybox", "fnr", 0.30 + fnr_d[0], param=param, grouping="clinical"),
                 _r("exp2_1_fgsm", "fgsm", "greybox", "health_specificity", 0.85 + spec_d[0], param=param,
                    grouping="clinical"),
                 _r("exp2_1_fgsm", "fgsm", "greybox", "health_specificity_vs_clean", *spec_d, param=param,
                    grouping="clinical")]
    u = dict(param=repr(8 / 255))
    rows += [
        _r("exp2_2_uap", "uap_art", "greybox", "accuracy", 0.20, 0.17, 0.23, **u),
        _r("exp2_2_uap", "uap_art", "greybox", "accuracy_vs_clean", -0.50, -0.55, -0.45, **u),
        _r("exp2_2_uap", "uap_art", "greybox", "fnr", 0.05, 0.02, 0.08, grouping="clinical", **u),
        _r("exp2_2_uap", "uap_art", "greybox", "fnr_vs_clean", -0.25, -0.31, -0.19, grouping="clinical", **u),
        _r("exp2_2_uap", "uap_art", "greybox", "health_specificity", 0.25, grouping="clinical", **u),
        _r("exp2_2_uap", "uap_art", "greybox", "health_specificity_vs_clean", -0.60, -0.65, -0.55,
           grouping="clinical", **u),
        _r("exp0_classifier", "none", "clean", "recall_bcc", 0.60),
        _r("exp2_2_uap", "uap_art", "greybox", "recall_bcc", 0.95, **u),
        _r("exp2_2_uap", "uap_art", "greybox", "recall_bcc_vs_clean", 0.35, 0.25, 0.45, **u),
        _r("exp2_2_uap", "uap_art", "greybox", "recall_nv_vs_clean", -0.6, -0.65, -0.55, **u),
    ]
    # defences against FGSM: the LLT gains (paired), retraining's paired interval contains 0
    for exp, d, gain in (("exp3_1_retraining", "retraining", (0.02, -0.01, 0.05)), ("exp3_2_llt", "llt", llt_gain)):
        for setting in ("greybox", "whitebox"):
            rows.append(_r(exp, "fgsm", setting, "accuracy", 0.30 + gain[0], defence=d))
            if d != "llt" or llt_paired:
                rows.append(_r(exp, "fgsm", setting, "accuracy_vs_undefended", *gain, defence=d))
    return pd.DataFrame(rows)


def test_rq1_names_each_attack_effect_by_its_interval():
    text = verdicts.rq1_answer(_run_frame(), "m", 2 / 255, "L-inf 8/255")
    assert text.startswith("**RQ1 — m:** Accuracy falls measurably under poisoning (60% of nevi relabelled), "
                           "FGSM at 2/255 and ART's UAP at L-inf 8/255.")
    assert "FGSM at 2/255 (crafted on the undefended model, as in the thesis) lowers accuracy from 70.0% to 30.0% " \
           "(-40.0 points, paired 95% interval -44.0 to -36.0)" in text
    assert "raises the missed-malignancy rate (clinical FNR) from 30.0% to 50.0%" in text
    assert "lowers the specificity for benign lesions (clinical) from 85.0% to 65.0%" in text
    # FGSM read at the thesis's eps, not at the other swept value
    fgsm_sentence = text[text.index("FGSM at 2/255 (crafted"):text.index("ART's UAP at L-inf 8/255 (crafted")]
    assert "30.0%" in fgsm_sentence and "10.0%" not in fgsm_sentence
    # the UAP's fall in missed malignancies is said to be no gain, and why
    assert "lowers the missed-malignancy rate (clinical FNR) from 30.0% to 5.0%" in text
    assert "no protection: the perturbation drives predictions into bcc, a malignant class" in text
    assert "the thesis does not state its UAP budget; FGSM's is 2/255" in text
    # poisoning: unpaired, disjoint at 60%; 5% is not a measurable drop
    assert "smallest fraction of the sweep that measurably lowers accuracy is 60%" in text


def test_rq2_defence_words_follow_the_paired_interval_and_give_the_adaptive_verdict():
    verdict = pd.DataFrame([{"model": "m", "defence": "llt", "verdict": verdicts.PARTIAL, "adaptive": 0.29,
                             "adaptive_undefended": 0.10, "adaptive_gain": 0.19, "adaptive_gain_low": 0.15,
                             "adaptive_gain_high": 0.23, "won_back": 0.27}])
    text = verdicts.rq_defence_answer(_run_frame(), "m", "fgsm", 2 / 255, verdict)
    assert text.startswith("**RQ2 — m:** Against FGSM at 2/255, in the grey box (the thesis's setting), the LLT "
                           "measurably raises accuracy; retraining makes no measurable change to it;")
    assert "against the adaptive attacker of experiment 4, the LLT helps but does not hold" in text
    assert "retraining makes no measurable change to accuracy (30.0% to 32.0%; +2.0 points, paired 95% interval " \
           "-1.0 to +5.0)" in text
    assert "the LLT raises accuracy from 30.0% to 60.0% (+30.0 points, paired 95% interval +25.0 to +35.0), " \
           "winning back 75% of what the attack took" in text
    assert " holds" not in text and "masking" not in text
    # grey box before white box before the adaptive verdict
    assert text.index("grey box") < text.index("white box") < text.index("adaptive attacker")
    # a label capped by a masking flag says so beside its numbers
    capped = verdict.assign(won_back=0.69, masking="Square ...", capped_by_masking=True)
    text = verdicts.rq_defence_answer(_run_frame(), "m", "fgsm", 2 / 255, capped)
    assert "69% of the loss won back, flagged for gradient masking, which caps its label at 'helps'" in text


def test_rq_defence_without_paired_rows_compares_intervals():
    frame = _run_frame(llt_paired=False)
    llt = (frame["defence"] == "llt") & (frame["metric"] == "accuracy")
    frame.loc[llt, ["ci_low", "ci_high"]] = [0.57, 0.63]
    text = verdicts.rq_defence_answer(frame, "m", "fgsm", 2 / 255)
    assert "the LLT raises accuracy from 30.0% to 60.0% (+30.0 points, unpaired: 95% intervals" in text


def test_research_answers_one_item_per_question_and_model():
    frame = pd.concat([_run_frame(), _run_frame().assign(model="n")], ignore_index=True)
    items = verdicts.research_answers(frame, ["m", "n"], 2 / 255, uap_budget="L-inf 8/255")
    heads = [i.split(":**")[0] for i in items]
    assert heads == ["**RQ1 — m", "**RQ1 — n", "**RQ2 — m", "**RQ2 — n", "**RQ3 — m", "**RQ3 — n"]
    md = verdicts.research_answers_markdown(frame, ["m", "n"], 2 / 255, uap_budget="L-inf 8/255")
    assert md.count("\n- **RQ") == 6 and "*Concerning adversarial attacks, more precisely for FGSM" in md
    # no exp3 rows for the UAP in this frame: said, not invented
    assert "Experiments 3.1-3.3 have no results for this model and ART's UAP at L-inf 8/255" in items[4]


# ---------------------------------------------------------------- the chapters' readings (skinlib.pages)


def test_defence_reading_names_the_white_box_drop_and_never_says_holds():
    from skinlib.pages import defence_reading

    rows = [_r("exp3_2_llt", "fgsm", "greybox", "accuracy", 0.60, 0.57, 0.63, defence="llt"),
            _r("exp3_2_llt", "fgsm", "whitebox", "accuracy", 0.40, 0.37, 0.43, defence="llt"),
            _r("exp3_2_llt", "fgsm", "whitebox", "accuracy_vs_greybox", -0.20, -0.24, -0.16, defence="llt"),
            _r("exp3_2_llt", "fgsm", "greybox", "accuracy_vs_undefended", 0.30, 0.25, 0.35, defence="llt"),
            _r("exp3_2_llt", "uap_art", "greybox", "accuracy", 0.29, 0.26, 0.32, defence="llt"),
            _r("exp3_2_llt", "uap_art", "whitebox", "accuracy", 0.28, 0.25, 0.31, defence="llt")]
    text = defence_reading(pd.DataFrame(rows), ["m"]).data
    assert ("FGSM: crafting the attack through the defence (white box) instead of on the undefended model "
            "(grey box) lowers accuracy from 60.0% to 40.0% (-20.0 points, paired 95% interval -24.0 to -16.0); "
            "the grey-box number overstates") in text
    assert "in the grey box it raises accuracy from 30.0% to 60.0%" in text
    # at 29% and 28%, overlapping intervals: no change, and no "holds" anywhere
    assert "ART's UAP: crafting the attack through the defence (white box) instead of on the undefended model " \
           "(grey box) makes no measurable change to accuracy" in text
    assert " holds " not in text.split("\n\n", 1)[1]


def test_thesis_rows_reads_the_clean_baseline_of_experiment_0(tmp_path):
    from types import SimpleNamespace

    from skinlib import report
    from skinlib.pages import thesis_rows
    from skinlib.profiles import load_profile
    from skinlib.results import write_results

    if report.load_thesis_tables().empty:
        pytest.skip("thesis tables absent")
    prof = load_profile("smoke")
    model = prof.models[0]
    write_results(tmp_path / "exp0_classifier.csv",
                  [_r("exp0_classifier", "none", "clean", "accuracy", 0.80, 0.78, 0.82, model=model)
                   | {"profile": "smoke"}])
    eps = repr(prof.fgsm.eps)
    chapter = pd.DataFrame([_r("exp2_1_fgsm", "fgsm", "greybox", "accuracy", 0.30, 0.27, 0.33, model=model,
                               param=eps)])
    html = thesis_rows(SimpleNamespace(profile=prof, results_dir=tmp_path), chapter, ["4.3"]).data
    assert "Thesis table 4.3" in html and f"FGSM at {prof.fgsm.eps * 255:.3g}/255" in html
    # ours 30.0 against our clean 80.0 (no paired row: the bare difference)
    assert "| 30.0 [27.0, 33.0]" in html and "| -50.0</td>" in html


def _webp_frame(bpda, worst):
    return pd.DataFrame([_row("llt", "pgd", "whitebox", "accuracy", *bpda),
                         _row("llt", "worst_case", "whitebox", "accuracy", *worst)])


@pytest.mark.parametrize("energy, removes", [(2.9, False), (0.2, True)])
def test_webp_answer_says_whether_the_codec_removes_the_perturbation(energy, removes):
    codec = {"sign_energy_kept": energy, "sign_r2_identity": -0.3, "sign_r2_standin": 0.02}
    [line] = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.6, 0.55, 0.65)), codec)
    assert ("does not remove" in line) is not removes
    assert "No attack does better than plain BPDA" in line
    assert line.startswith("**m:**")
    [named] = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.6, 0.55, 0.65)), codec, seed=3)
    assert named.startswith("**m, seed 3:**")


def test_webp_answer_calls_plain_bpda_masked_only_when_the_intervals_part():
    apart = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.3, 0.25, 0.35)), None)[0]
    close = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.52, 0.47, 0.57)), None)[0]
    assert "part of what plain BPDA shows is gradient masking" in apart
    assert "suggested but not established" in close
    curves = pd.DataFrame([{"model": "m", "defence": "llt", "curve": "eps", "x": x, "accuracy": a}
                           for x, a in ((0, 0.75), (8, 0.18), (16, 0.0))])
    with_curve = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.3, 0.25, 0.35)), None, curves)[0]
    assert "18% at 8/255, 0% at 16/255" in with_curve and "does not stop larger ones" in with_curve


def test_webp_answer_names_the_attack_of_the_eps_curve():
    curves = pd.DataFrame([{"model": "m", "defence": "llt", "curve": "eps", "x": x, "accuracy": a, "attack": "pgd_codec"}
                           for x, a in ((0, 0.75), (8, 0.18), (16, 0.0))])
    line = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.3, 0.25, 0.35)), None, curves)[0]
    assert "Along its eps curve (codec-gradient PGD)" in line
    line = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.3, 0.25, 0.35)), None,
                                curves.assign(attack="pgd"))[0]
    assert "Along its eps curve (plain BPDA)" in line


def _eps_curves(**by_defence: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "m", "defence": d.replace("_plus_", "+"), "curve": "eps", "x": x, "accuracy": a}
                         for d, accs in by_defence.items() for x, a in zip((0, 1, 2, 4, 8), accs)])


def test_budget_multiple_reads_the_extra_eps_a_defence_costs_the_attacker():
    undefended = [0.8, 0.5, 0.2, 0.0, 0.0]
    curves = _eps_curves(none=undefended, same=undefended, llt=[0.8, 0.65, 0.5, 0.2, 0.0],
                         above=[0.9, 0.85, 0.82, 0.81, 0.8])
    assert verdicts.budget_multiple(curves, "m", "same") == pytest.approx(1.0)
    assert verdicts.budget_multiple(curves, "m", "llt") == pytest.approx(2.0)
    # a curve that never comes down to the undefended model's clean accuracy has no multiple
    assert np.isnan(verdicts.budget_multiple(curves, "m", "above"))
    assert np.isnan(verdicts.budget_multiple(curves, "m", "missing"))


def test_webp_answer_gives_the_budget_multiple_beside_pgd_at():
    curves = _eps_curves(none=[0.8, 0.5, 0.2, 0.0, 0.0], llt=[0.8, 0.65, 0.5, 0.2, 0.0],
                         pgd_at=[0.8, 0.72, 0.65, 0.5, 0.2])
    line = verdicts.webp_answer(_webp_frame((0.6, 0.55, 0.65), (0.3, 0.25, 0.35)), None, curves)[0]
    assert "the LLT is worth about 2.0 times the attacker's budget" in line
    assert "PGD adversarial training, 4.0 times" in line


@pytest.mark.parametrize("rob, stopped, expected", [
    ([0.2, 0.4, 0.5], "budget", "still rising"),
    ([0.2, 0.5, 0.45], "budget", "had peaked"),
    ([0.2, 0.5, 0.45, 0.44], "plateau", "stopped rising"),
])
def test_pgd_at_summary_says_what_ended_training(rob, stopped, expected):
    history = {"epoch": list(range(len(rob))), "val_pgd_accuracy": rob, "stopped": [stopped]}
    line = verdicts.pgd_at_summary("m", history, 3)
    assert expected in line
    best = int(np.argmax(rob))
    assert f"epoch {best}'s ({rob[best]:.1%})" in line and f"ran {len(rob) - 1} of at most 3 epochs" in line


def _parts(flip_gain, flip_low, both_gain=0.5, both_low=0.4):
    rows = []
    for transform, acc, gain, low in (("none", 0.2, 0.0, 0.0), ("flip", 0.2 + flip_gain, flip_gain, flip_low),
                                      ("webp", 0.65, 0.45, 0.4), ("both", 0.2 + both_gain, both_gain, both_low)):
        rows.append({"model": "m", "attack": "pgd", "transform": transform, "test_images": 100, "accuracy": acc,
                     "ci_low": acc - 0.05, "ci_high": acc + 0.05, "gain": gain, "gain_low": low,
                     "gain_high": gain + 0.05})
    return pd.DataFrame(rows)


def test_llt_parts_answer_says_when_the_flip_alone_undoes_the_grey_box():
    flip_does_it = verdicts.llt_parts_answer(_parts(0.45, 0.4))[0]
    assert "flip alone wins back 90%" in flip_does_it and "cannot tell whether WebP removes" in flip_does_it
    webp_does_it = verdicts.llt_parts_answer(_parts(0.05, -0.01))[0]
    assert "flip alone wins back 10%" in webp_does_it and "mostly WebP's" in webp_does_it
    nothing = verdicts.llt_parts_answer(_parts(0.0, -0.05, both_gain=0.01, both_low=-0.03))[0]
    assert "wins back nothing measurable" in nothing
    table = verdicts.llt_parts_table(_parts(0.45, 0.4))
    assert list(table.columns) == ["as crafted", "flip alone", "WebP alone", "WebP + flip (LLT)"]
    assert table.loc["m · pgd", "flip alone"] == "65.0 [60, 70]"


def test_convergence_sentence_calls_a_still_falling_attack_an_upper_bound():
    def curves(at, end):
        return pd.DataFrame({"model": "m", "defence": "llt", "attack": "pgd", "n_images": 100,
                             "curve": ["steps", "steps", "restarts", "restarts"], "x": [10, 20, 1, 2],
                             "accuracy": [0.6, at, at, end], "headline": [False, True, True, False]})
    assert "upper bound" in verdicts.convergence_sentence(curves(0.55, 0.50), "m", "llt")
    assert "on its plateau" in verdicts.convergence_sentence(curves(0.55, 0.545), "m", "llt")
    assert verdicts.convergence_sentence(curves(0.55, 0.5), "m", "none") == ""


def test_a_verdict_whose_attack_had_not_converged_carries_the_caveat():
    results = _table((0.3, 0.2, 0.4), (0.3, 0.2, 0.4), square=(0.0, -0.05, 0.05))
    defence = results.loc[results["defence"] != "none", "defence"].iloc[0]
    curves = pd.DataFrame({"model": "m", "defence": defence, "attack": "pgd", "n_images": 100,
                           "curve": ["steps", "steps", "restarts", "restarts"], "x": [10, 20, 1, 2],
                           "accuracy": [0.6, 0.55, 0.55, 0.50], "headline": [False, True, True, False]})
    caveat = verdicts.defence_verdicts(results, curves)["caveat"].iloc[0]
    assert "had not reached its plateau" in caveat and "55.0% to 50.0%" in caveat
    flat = verdicts.defence_verdicts(results, curves.assign(accuracy=[0.6, 0.55, 0.55, 0.548]))["caveat"].iloc[0]
    assert "plateau" not in flat


def test_a_defence_at_the_hold_threshold_whose_attack_still_falls_does_not_hold():
    # wins back 40/70 = 57% at the reported setting; a longer run that takes a further 8 points
    # off leaves 32/70 = 46%, under the half a defence must win back to hold
    results = _table((0.40, 0.30, 0.50), (0.3, 0.2, 0.4))
    flat = pd.DataFrame({"model": "m", "defence": "d", "attack": "pgd", "n_images": 100,
                         "curve": ["steps", "steps", "restarts", "restarts"], "x": [20, 40, 1, 2],
                         "accuracy": [0.50, 0.50, 0.50, 0.50], "headline": [True, False, True, False]})
    assert verdicts.defence_verdicts(results, flat)["verdict"].iloc[0] == verdicts.HOLDS
    falling = flat.assign(accuracy=[0.50, 0.46, 0.46, 0.42])
    row = verdicts.defence_verdicts(results, falling).iloc[0]
    assert row["convergence_drop"] == pytest.approx(0.08)
    assert row["won_back"] == pytest.approx(0.40 / 0.70)
    assert row["verdict"] == verdicts.PARTIAL
    assert "8.0-point fall" in row["caveat"] and "46%" in row["caveat"]


def test_verdicts_over_seeds_name_the_labels_that_move_and_the_flags():
    holds = (_table((0.40, 0.30, 0.50), (0.3, 0.2, 0.4)), None)
    flagged = (_with_square((0.01, -0.04, 0.06)), None)  # would hold, but Square sees no gain: capped
    table = verdicts.verdicts_over_seeds({0: flagged, 1: holds, 2: holds})
    row = table.iloc[0]
    assert [row["seed 0"], row["seed 1"], row["seed 2"]] == ["helps but does not hold", "holds", "holds"]
    assert row["masking flagged on"] == "seed 0" and not row["agree"]
    sentence = verdicts.seed_agreement(table)
    assert "changes with the seed for d (m: seed 0 helps but does not hold, seed 1 holds, seed 2 holds; " \
           "masking flagged on seed 0 only), so there the label is not a finding yet" in sentence
    same = verdicts.verdicts_over_seeds({0: holds, 1: holds})
    assert bool(same["agree"].iloc[0]) and "the label is the same on every seed for d (m: holds)" in \
        verdicts.seed_agreement(same)
    # a known system is named in words, not by its id
    assert "for the LLT (m: holds)" in verdicts.seed_agreement(same.assign(defence="llt"))
    assert "one training seed" in verdicts.seed_agreement(verdicts.verdicts_over_seeds({0: holds}))
    # the page's table: seeds grouped by label, one column however many seeds ran
    shown = verdicts.seed_verdict_table(table)
    assert list(shown.columns) == ["verdict by seed", "masking flagged on", "Square's gain, pooled (points)",
                                   "over the seeds"]
    assert shown.iloc[0]["verdict by seed"] == "helps but does not hold (seed 0); holds (seeds 1, 2)"
    # Square ran on one seed only: nothing to pool, and the moving label stays unsettled
    assert shown.iloc[0]["over the seeds"] == "not settled" and shown.iloc[0]["Square's gain, pooled (points)"] == ""


def test_a_square_flag_of_one_seed_is_read_again_on_the_gain_pooled_over_seeds():
    # seed 0's Square gain reaches 0 (capped), seeds 1 and 2 see a clear one: pooled it is above 0
    small, clear = (0.04, -0.014, 0.099), (0.113, 0.058, 0.174)
    seeds = {0: (_with_square(small), None), 1: (_with_square(clear), None), 2: (_with_square((0.10, 0.04, 0.16)), None)}
    row = verdicts.verdicts_over_seeds(seeds).iloc[0]
    assert [row["seed 0"], row["seed 1"], row["seed 2"]] == ["helps but does not hold", "holds", "holds"]
    assert not row["agree"] and row["over seeds"] == "holds"
    value, lo, hi, p = metrics.pool_over_seeds([small, clear, (0.10, 0.04, 0.16)])
    assert (row["square_pooled"], row["square_pooled_low"]) == pytest.approx((value, lo)) and lo > 0 and p >= 0.05
    sentence = verdicts.seed_agreement(verdicts.verdicts_over_seeds(seeds))
    assert "only through the flag" in sentence and 'the label over them is "holds"' in sentence
    assert "not a finding yet" not in sentence
    # the same seeds with Square's gains pooling to an interval that reaches 0: not settled
    none = {k: (_with_square((0.01, -0.04, 0.06)), None) for k in (0, 1)} | {2: (_with_square(clear), None)}
    assert verdicts.verdicts_over_seeds(none).iloc[0]["over seeds"] == "not settled"
    # seeds that measure different effects (Cochran's Q p < 0.05) settle nothing either
    apart = {0: (_with_square((-0.02, -0.06, 0.02)), None), 1: (_with_square((0.20, 0.15, 0.25)), None)}
    assert verdicts.verdicts_over_seeds(apart).iloc[0]["over seeds"] == "not settled"
    # another check fired on the capped seed (the eps curve stays high): the pooled Square cannot clear it
    high = pd.DataFrame([{"model": "m", "defence": "d", "curve": "eps", "x": x, "accuracy": a}
                         for x, a in ((0, 0.75), (16, 0.4))])
    curved = {**seeds, 0: (_with_square(small), high)}
    assert verdicts.verdicts_over_seeds(curved).iloc[0]["over seeds"] == "not settled"


@pytest.mark.parametrize("gains, word", [
    ([(0.01, -0.04, 0.06), (0.12, 0.06, 0.18)], "on 1 of 2 seeds, but the seeds measure different effects"),
    ([(0.04, -0.014, 0.099), (0.113, 0.058, 0.174)], "on 1 of 2 seeds and pooled over them (+7.6 points, +3.5 to "
                                                     "+11.6; the seeds differ by no more than test sampling explains"),
    ([(0.01, -0.04, 0.06), (0.02, -0.03, 0.07)], "not measurably blunted by the LLT pooled over the 2 seeds"),
    ([(0.15, 0.08, 0.22), (0.12, 0.06, 0.18)], "on 2 of 2 seeds and pooled over them"),
])
def test_square_over_seeds_says_whether_the_seeds_agree(gains, word):
    by_seed = {seed: _with_square(g).replace({"defence": {"d": "llt"}}) for seed, g in enumerate(gains)}
    text = verdicts.square_over_seeds(by_seed, "llt")
    assert word in text
    assert f"seed 0: the LLT {100 * gains[0][0]:+.1f} ({100 * gains[0][1]:+.1f} to {100 * gains[0][2]:+.1f})" in text
    assert verdicts.square_over_seeds({0: by_seed[0]}, "llt") == ""  # one seed cannot disagree with itself
    numbers_only = verdicts.square_over_seeds(by_seed, "llt", reading=False)
    assert word not in numbers_only and "Square is" not in numbers_only
    value, lo, hi, _ = metrics.pool_over_seeds(gains)
    assert f"Pooled over the seeds, the LLT: {100 * value:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})" in numbers_only


def _adaptive_seed(square_gain: tuple[float, float, float], llt_curve: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [("none", "none", "clean", "accuracy", (0.8, 0.7, 0.9)),
            ("none", "worst_case", "whitebox", "accuracy", (0.2, 0.1, 0.3)),
            ("none", "square", "whitebox", "accuracy_vs_clean", (-0.2, -0.26, -0.14)),
            ("none", "square", "whitebox", "accuracy_vs_gradient", (0.23, 0.16, 0.30)),
            ("llt", "worst_case", "whitebox", "accuracy_vs_undefended", (0.2, 0.15, 0.25)),
            ("llt", "square", "whitebox", "accuracy_vs_undefended", square_gain)]
    results = pd.DataFrame([{"experiment": "exp4_adaptive", "model": "m", "defence": d, "attack": a, "setting": st,
                             "grouping": "", "metric": k, "value": v[0], "ci_low": v[1], "ci_high": v[2]}
                            for d, a, st, k, v in rows])
    return results, _eps_curves(none=[0.8, 0.5, 0.2, 0.0, 0.0], llt=llt_curve)


@pytest.mark.parametrize("gains, words", [
    ([(0.1, 0.05, 0.15), (0.1, 0.05, 0.15)], "part of the gain is perturbation the codec removes"),
    ([(0.02, -0.03, 0.07), (0.01, -0.04, 0.06)], "best read as a gradient they cannot follow"),
    ([(0.2, 0.15, 0.25), (0.0, -0.03, 0.03)], "does not settle whether the gain is removed perturbation or a hidden "
                                              "gradient"),
])
def test_webp_bottom_line_reads_square_over_seeds_and_the_budget_multiple(gains, words):
    by_seed = {0: _adaptive_seed(gains[0], [0.8, 0.65, 0.5, 0.2, 0.0]),
               1: _adaptive_seed(gains[1], [0.8, 0.72, 0.65, 0.5, 0.2])}
    [line] = verdicts.webp_bottom_line(by_seed)
    assert "2 training seeds" in line and "the LLT helps but does not hold on every seed" in line
    assert "pgd_at" not in line and " llt " not in line  # systems named in words, not by their ids
    assert "worth about 2.0 to 4.0 times the attacker's budget" in line
    assert words in line
    [one] = verdicts.webp_bottom_line({0: by_seed[0]})
    assert "1 training seed)" in one and "one seed is not yet a finding" in one
    assert "stays +23.0 points above the gradient attacks" in one


def _stress(after: float) -> pd.DataFrame:
    base = {"profile": "p", "seed": 0, "model": "m", "defence": "retraining+llt", "n_images": 500}
    rows = [{**base, "stage": "headline", "attack": "pgd", "attacked": 400, "newly_broken": 100, "accuracy": 0.6},
            {**base, "stage": "harder", "attack": "pgd (x5)", "attacked": 300, "newly_broken": 10, "accuracy": after},
            {**base, "stage": "summary", "attack": "drop", "attacked": 500, "newly_broken": 10,
             "accuracy": after - 0.6, "ci_low": after - 0.62, "ci_high": after - 0.58}]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("after, words", [(0.58, "still at least the 50%"), (0.45, "does not survive")])
def test_stress_reading_rereads_the_won_back_share_with_the_harder_worst_case(after, words):
    rows = [("none", "none", "clean", 0.8), ("none", "worst_case", "whitebox", 0.2),
            ("retraining+llt", "worst_case", "whitebox", 0.6)]
    results = pd.DataFrame([{"experiment": "exp4_adaptive", "model": "m", "defence": d, "attack": a, "setting": st,
                             "grouping": "", "metric": "accuracy", "value": v, "ci_low": v - 0.05,
                             "ci_high": v + 0.05} for d, a, st, v in rows])
    [line] = verdicts.stress_reading(_stress(after), {0: results})
    assert verdicts.stress_reading(_stress(after), {1: results}) == []  # another seed's results do not count
    assert line.startswith("**retraining with the LLT (m, seed 0), attacked harder:**")
    assert "still break images" in line  # one harder attack, and it broke 10: not flattened out
    flat = pd.concat([_stress(after).iloc[:2]] + [_stress(after).iloc[[1]].assign(newly_broken=k) for k in (0, 1, 0)]
                     + [_stress(after).iloc[[2]]], ignore_index=True)
    assert "The last 3 of them broke 1 between them: the cascade has flattened out." in \
        verdicts.stress_reading(flat, {0: results})[0]
    assert f"take it to {after:.1%}" in line and words in line
    share = (after - 0.2) / 0.6
    assert f"wins back {share:.0%}" in line
    table = verdicts.stress_table(_stress(after))
    assert list(table["attack"]) == ["pgd", "pgd (x5)"] and table["seed 0"].iloc[-1] == f"10/300 → {after:.1%}"
    two = verdicts.stress_table(pd.concat([_stress(after), _stress(0.5).assign(seed=2).iloc[:2]]))
    assert list(two.columns) == ["system", "attack", "stage", "seed 0", "seed 2"] and len(two) == 2
    assert two.loc[1, "seed 2"] == "10/300 → 50.0%"  # the seeds of one system side by side, not stacked
