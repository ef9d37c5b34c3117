"""Verdicts: the rule that turns experiment 4's numbers into words, on hand-built tidy tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skinlib import verdicts


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
    ((0.30, 0.20, 0.40), (0.3, 0.2, 0.4), verdicts.HOLDS),
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


def test_change_word_needs_the_interval_to_exclude_zero():
    assert verdicts.change_word((0.1, 0.05, 0.2)) == "raises"
    assert verdicts.change_word((-0.1, -0.2, -0.05)) == "lowers"
    assert verdicts.change_word((0.1, -0.01, 0.2)) == "makes no measurable change to"
