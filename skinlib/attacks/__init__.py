"""Evasion attacks: one registry, :data:`ATTACKS`, and one module per family (ART's layout).

- :mod:`skinlib.attacks.gradient`: FGSM and PGD through ART (the thesis's attacks).
- :mod:`skinlib.attacks.adaptive`: compiled PGD through the defence (BPDA), its
  low-frequency, codec-gradient and targeted variants, APGD (CE, DLR) and the
  gradient-free Square Attack, and the per-image worst case over attacks.
- :mod:`skinlib.attacks.universal`: universal perturbations (ART's and the fast one).
- :mod:`skinlib.attacks.noise`: the random-noise control.

The registry's names are those of DESIGN.md's ``attack`` column. Following foolbox 3,
the per-image attacks take a list of epsilons and return one adversarial batch per
epsilon, so a robustness curve is one call.

Images are float32 pixels in ``[0, 1]`` with shape ``(N, S, S, 3)`` (uint8 images are
accepted and divided by 255); labels are integer class indices ``(N,)`` (one-hot accepted).
"""

from __future__ import annotations

from skinlib.attacks._common import (NORMS, AttackInfo, amplify_for_display, apply_perturbation, as_float_images,
                                     flip_rate)
from skinlib.attacks.adaptive import (accuracy_by_step, apgd, malignant_to_benign, pgd, pgd_codec, pgd_lowfreq,
                                      pgd_targeted, square, worst_case)
from skinlib.attacks.gradient import fgsm, pgd_art
from skinlib.attacks.noise import random_noise
from skinlib.attacks.universal import uap_art, uap_budget, uap_fast
from skinlib.errors import SkinlibError

__all__ = ["ATTACKS", "AttackInfo", "NORMS", "accuracy_by_step", "amplify_for_display", "apgd", "apply_perturbation",
           "as_float_images", "fgsm", "flip_rate", "get_attack", "malignant_to_benign", "pgd", "pgd_art", "pgd_codec",
           "pgd_lowfreq", "pgd_targeted", "random_noise", "square", "uap_art", "uap_budget", "uap_fast",
           "worst_case"]


def _apgd_dlr(*args, **kwargs):
    """APGD with the DLR loss (see :func:`skinlib.attacks.adaptive.apgd`)."""
    return apgd(*args, loss="dlr", **kwargs)


def _apgd_ce(*args, **kwargs):
    """APGD with the cross-entropy loss (see :func:`skinlib.attacks.adaptive.apgd`)."""
    return apgd(*args, loss="ce", **kwargs)

ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo("fgsm", "Fast Gradient Sign Method: one L-inf signed-gradient step per image (ART); "
                       "all epsilons from one gradient.", "https://arxiv.org/abs/1412.6572", fgsm),
    "pgd": AttackInfo("pgd", "Projected Gradient Descent: iterated signed-gradient steps from random starts, "
                      "projected onto the eps ball; compiled, through the defence with BPDA.",
                      "https://arxiv.org/abs/1706.06083", pgd),
    "apgd_ce": AttackInfo("apgd_ce", "Auto-PGD with the cross-entropy loss: step size chosen by the attack (ART).",
                          "https://arxiv.org/abs/2003.01690", _apgd_ce),
    "apgd_dlr": AttackInfo("apgd_dlr", "Auto-PGD with the difference-of-logits-ratio loss, blind to logit scale (ART).",
                           "https://arxiv.org/abs/2003.01690", _apgd_dlr),
    "pgd_lowfreq": AttackInfo("pgd_lowfreq", "PGD on a coarse grid, upsampled: a low-frequency perturbation that "
                              "survives compression.", "https://arxiv.org/abs/1809.08758", pgd_lowfreq),
    "pgd_codec": AttackInfo("pgd_codec", "BPDA with a differentiable codec stand-in fitted to WebP as the backward "
                            "pass.", "https://arxiv.org/abs/1802.00420", pgd_codec),
    "square": AttackInfo("square", "Square Attack: gradient-free random search on the defended system's "
                         "predictions (ART).", "https://arxiv.org/abs/1912.00049", square),
    "pgd_targeted": AttackInfo("pgd_targeted", "Targeted PGD: malignant lesions pushed to a benign class (nv), the "
                               "missed-cancer threat.", "https://arxiv.org/abs/1706.06083", pgd_targeted),
    "worst_case": AttackInfo("worst_case", "Per image, wrong under any of the attacks of its setting and budget.",
                             "", worst_case),
    "random": AttackInfo("random", "Control: random +-eps sign noise (L-inf) or a random L2 direction of the "
                         "same size.", "", random_noise),
    "uap_art": AttackInfo("uap_art", "Universal adversarial perturbation, Moosavi-Dezfooli et al.'s image-by-image "
                          "algorithm with an FGSM inner attacker (ART, as in the thesis).",
                          "https://arxiv.org/abs/1610.08401", uap_art, universal=True),
    "uap_fast": AttackInfo("uap_fast", "Universal perturbation by batched stochastic gradient ascent, projected "
                           "onto the budget (Shafahi et al.), compiled with tf.function.",
                           "https://arxiv.org/abs/1811.11304", uap_fast, universal=True),
}


def get_attack(name: str) -> AttackInfo:
    """The :data:`ATTACKS` entry of ``name``; an unknown name is a :class:`SkinlibError`."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise SkinlibError(f"attack: unknown attack {name!r}; valid: {', '.join(ATTACKS)}") from None
