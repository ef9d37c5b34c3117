"""The seven experiments of the thesis, as functions the notebooks call.

Each function computes one experiment for every model of the profile, appends its
tidy rows to ``run.rows`` and returns what the notebook displays. Expensive steps
(training, UAPs, retraining) go through the run's step cache, so later experiments
reuse exp0's models and an interrupted run resumes.

Settings of the tidy results (DESIGN.md): ``clean``; ``greybox`` (crafted on the
undefended model, as in the thesis; in experiment 2 the undefended model is the
target, so grey and white box coincide and the rows say ``greybox``); ``whitebox``
(crafted on the defended system itself: retrained model, or through the LLT with BPDA).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from skinlib import attacks, defences, models, tf_backend
from skinlib.context import Run
from skinlib.labels import CLASS_INDEX, CLASSES
from skinlib.split import poison_labels
from skinlib.tf_backend import art_classifier, flip_transform


def _step_code() -> list:
    """Modules whose source is part of the UAP and retraining step keys (this one included)."""
    return [attacks, defences, models, tf_backend, sys.modules[__name__]]


def fmt_param(value: float) -> str:
    """The ``param`` column's spelling of a swept value (6 significant digits)."""
    return f"{value:.6g}"


@dataclass
class ModelOutcome:
    """What one model produced in one experiment (for the notebook's figures)."""

    history: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # case -> test predictions
    extras: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- experiment 0

def exp0_classifier(run: Run) -> dict[str, ModelOutcome]:
    """Train every model of the profile and evaluate it on the clean test set."""
    out = {}
    for name in run.profile.models:
        model, history = run.classifier(name)
        pred = models.predict_labels(model, run.x("test"))
        run.evaluate(run.y("test"), pred, experiment="exp0_classifier", model=name)
        out[name] = ModelOutcome(history=history, predictions={"clean": pred})
    return out


# ---------------------------------------------------------------- experiment 1

def poisoned_labels(run: Run, fraction: float) -> np.ndarray:
    cfg = run.profile.poisoning
    return poison_labels(run.y("train"), fraction, CLASS_INDEX[cfg.source_class], CLASS_INDEX[cfg.target_class],
                         seed=run.profile.seed)


def exp1_poisoning(run: Run) -> dict[str, ModelOutcome]:
    """Label-flip poisoning: retrain on training sets with a share of nv relabelled bkl.

    The clean point (fraction 0) is trained with the same schedule as the poisoned ones
    (``poisoning.epochs``), so the curve compares like with like.
    """
    cfg = run.profile.poisoning
    fractions = [0.0] + sorted(f for f in cfg.fractions if f > 0)
    tag = "clean" if cfg.epochs is None else "poisoning"
    out = {}
    for name in run.profile.models:
        outcome = ModelOutcome()
        for fraction in fractions:
            labels = poisoned_labels(run, fraction)
            model, history = run.classifier(name, train_labels=labels, tag=tag, epochs=cfg.epochs)
            pred = models.predict_labels(model, run.x("test"))
            run.evaluate(run.y("test"), pred, experiment="exp1_poisoning", model=name, attack="poisoning",
                         param=fmt_param(fraction))
            outcome.predictions[fmt_param(fraction)] = pred
        out[name] = outcome
    return out


# ---------------------------------------------------------------- experiment 2.1

def exp2_1_fgsm(run: Run) -> dict[str, ModelOutcome]:
    """FGSM at the profile's eps, and a robustness curve: FGSM, PGD and random noise."""
    cfg = run.profile.fgsm
    eps_list = sorted(set(cfg.eps_sweep) | {cfg.eps})
    x, y = run.x01("test"), run.y("test")
    out = {}
    for name in run.profile.models:
        model, _ = run.classifier(name)
        clf = art_classifier(model)
        clean = models.predict_labels(model, x)
        outcome = ModelOutcome(predictions={"clean": clean})
        sweeps = {
            "fgsm": attacks.fgsm(clf, x, y, eps_list),
            "pgd": attacks.pgd(clf, x, y, eps_list, steps=cfg.pgd_steps, seed=run.profile.seed),
            "random": attacks.random_noise(x, eps_list, seed=run.profile.seed),
        }
        for attack, by_eps in sweeps.items():
            for eps, x_adv in by_eps.items():
                pred = models.predict_labels(model, x_adv)
                run.evaluate(y, pred, experiment="exp2_1_fgsm", model=name, attack=attack, setting="greybox",
                             param=fmt_param(eps), y_pred_clean=clean)
                outcome.predictions[f"{attack}@{fmt_param(eps)}"] = pred
        k = min(cfg.n_examples, len(x))
        outcome.extras["examples"] = {"clean": x[:k], "adversarial": sweeps["fgsm"][cfg.eps][:k]}
        out[name] = outcome
    return out


# ---------------------------------------------------------------- experiment 2.2

def uap_training_images(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The training images a UAP is computed on (a seeded subset of ``uap.n_train_images``)."""
    n = min(run.profile.uap.n_train_images, len(run.splits["train"]))
    idx = np.random.default_rng(run.profile.seed).permutation(len(run.splits["train"]))[:n]
    return run.x01("train")[idx], run.y("train")[idx]


def uap_budget(run: Run) -> float:
    cfg = run.profile.uap
    x, _ = uap_training_images(run)
    return attacks.uap_budget(x, cfg.norm, eps=cfg.eps, zeta=cfg.zeta)


def fast_uap(run: Run, model: Any, x: np.ndarray, y: np.ndarray, budget: float,
             input_transform: Optional[Callable] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`skinlib.attacks.uap_fast` with the profile's ``uap.fast_*`` settings.

    ``uap.fast_labels: predicted`` climbs the loss of the model's clean predictions instead
    of ``y`` (the flip rate's reference), ``uap.fast_loss: clipped`` caps each image's loss
    at ``uap.fast_beta`` (Shafahi et al. 2020, https://arxiv.org/abs/1811.11304).
    """
    cfg = run.profile.uap
    return attacks.uap_fast(model, x, y if cfg.fast_labels == "true" else None, norm=cfg.norm, eps=budget,
                            batch_size=cfg.fast_batch_size, epochs=cfg.fast_epochs,
                            learning_rate=cfg.fast_learning_rate, loss=cfg.fast_loss, beta=cfg.fast_beta,
                            seed=run.profile.seed, input_transform=input_transform)


def compute_uap(run: Run, model_name: str, method: str, *, target=None, target_key: str = "undefended",
                through_llt: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """A universal perturbation (``uap_art`` or ``uap_fast``) for ``target`` (a cached step).

    ``target`` defaults to the undefended exp0 model; ``target_key`` names the target in
    the cache key (for a retrained model or a model behind the LLT). ``through_llt``: the
    perturbation is crafted through the profile's LLT with BPDA (ART: the preprocessor's
    ``estimate_gradient``; fast UAP: the flip differentiated, WebP as the identity).
    """
    import json

    cfg = run.profile.uap
    model = target if target is not None else run.classifier(model_name)[0]
    params = {"step": "uap", "method": method, "model": model_name, "target": target_key, "data": run.data_key,
              "train": vars(run.profile.train), "uap": vars(cfg),
              "through_llt": vars(run.profile.llt) if through_llt else None}

    def compute(folder: Path) -> None:
        x, y = uap_training_images(run)
        budget = attacks.uap_budget(x, cfg.norm, eps=cfg.eps, zeta=cfg.zeta)
        t0 = time.perf_counter()
        if method == "uap_art":
            clf = art_classifier(model, preprocessing_defences=[_llt(run)] if through_llt else None)
            delta, info = attacks.uap_art(clf, x, y, norm=cfg.norm, eps=budget, max_iter=cfg.max_iter,
                                          seed=run.profile.seed)
        else:
            transform = flip_transform(run.profile.llt.flip) if through_llt else None
            delta, info = fast_uap(run, model, x, y, budget, input_transform=transform)
        info = {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
        info.update(wall_s=time.perf_counter() - t0, budget=budget, norm=cfg.norm, train_images=len(x))
        np.save(folder / "delta.npy", np.asarray(delta, np.float32).reshape(x.shape[1:]))
        (folder / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True))

    folder = run.cache.run("uap", params, compute, modules=_step_code())
    return np.load(folder / "delta.npy", allow_pickle=False), json.loads((folder / "info.json").read_text())


def exp2_2_uap(run: Run) -> dict[str, ModelOutcome]:
    """Universal perturbations (ART's faithful one and the fast one) and a noise control."""
    x, y = run.x01("test"), run.y("test")
    out = {}
    for name in run.profile.models:
        model, _ = run.classifier(name)
        clean = models.predict_labels(model, x)
        outcome = ModelOutcome(predictions={"clean": clean})
        budget = None
        for method in ("uap_art", "uap_fast"):
            delta, info = compute_uap(run, name, method)
            budget = info["budget"]
            pred = models.predict_labels(model, attacks.apply_perturbation(x, delta))
            run.evaluate(y, pred, experiment="exp2_2_uap", model=name, attack=method, setting="greybox",
                         param=fmt_param(budget), y_pred_clean=clean)
            outcome.predictions[method] = pred
            outcome.extras[method] = {"delta": delta, "info": info}
        noise = attacks.random_noise(x, [budget], seed=run.profile.seed, norm=run.profile.uap.norm,
                                     universal=True)[budget]
        pred = models.predict_labels(model, noise)
        run.evaluate(y, pred, experiment="exp2_2_uap", model=name, attack="random", setting="greybox",
                     param=fmt_param(budget), y_pred_clean=clean)
        outcome.predictions["random"] = pred
        out[name] = outcome
    return out


# ---------------------------------------------------------------- experiment 3 (defences)

#: The attacks each defence is evaluated against, and which retrained model faces them.
DEFENDED_ATTACKS: dict[str, str] = {"fgsm": "fgsm", "uap_art": "uap", "uap_fast": "uap"}


def retrained_model(run: Run, model_name: str, attack: str):
    """The exp0 model adversarially retrained against ``attack`` (``fgsm`` or ``uap``), cached."""
    cfg = run.profile.retraining
    params = {"step": "retrain", "model": model_name, "attack": attack, "data": run.data_key,
              "train": vars(run.profile.train), "retraining": vars(cfg), "fgsm_eps": run.profile.fgsm.eps,
              "uap": vars(run.profile.uap) if attack == "uap" else None}
    x_pool = np.concatenate([run.x("train"), run.x("val")])
    y_pool = np.concatenate([run.y("train"), run.y("val")])

    def compute(folder: Path) -> None:
        model, _ = run.classifier(model_name)
        budget = uap_budget(run)

        def make_perturb_fn(current):
            def perturb(x_sel: np.ndarray, y_sel: np.ndarray) -> np.ndarray:
                x01 = x_sel.astype(np.float32) / 255.0
                if attack == "fgsm":
                    adv = attacks.fgsm(art_classifier(current), x01, y_sel, [run.profile.fgsm.eps])
                    adv = adv[run.profile.fgsm.eps]
                else:
                    delta, _ = fast_uap(run, current, x01, y_sel, budget)
                    adv = attacks.apply_perturbation(x01, delta)
                return np.round(adv * 255.0).astype(np.uint8)
            return perturb

        def train_fn(current, x_aug, y_aug, epochs: int, round_idx: int) -> None:
            models.train_model(current, (x_aug, y_aug), (run.x("val"), run.y("val")), run.profile.train,
                               folder / f"round{round_idx}", seed=run.profile.seed + round_idx, epochs=epochs)

        defences.adversarial_retraining(model, x_pool, y_pool, rounds=cfg.rounds,
                                        epochs_per_round=cfg.epochs_per_round, fraction=cfg.fraction,
                                        make_perturb_fn=make_perturb_fn, train_fn=train_fn, seed=run.profile.seed)
        models.save_model(model, folder / "model.keras")

    folder = run.cache.run("retrain", params, compute, modules=_step_code())
    return models.load_model(folder / "model.keras")


def _llt(run: Run):
    cfg = run.profile.llt
    return defences.LowLevelTransformation(quality=cfg.quality, flip=cfg.flip)


def _greybox_inputs(run: Run, name: str, attack: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Adversarial test images crafted on the undefended exp0 model (the thesis's setting)."""
    if attack == "fgsm":
        model, _ = run.classifier(name)
        return attacks.fgsm(art_classifier(model), x, y, [run.profile.fgsm.eps])[run.profile.fgsm.eps]
    delta, _ = compute_uap(run, name, attack)
    return attacks.apply_perturbation(x, delta)


def _whitebox_inputs(run: Run, name: str, attack: str, target, target_key: str, x: np.ndarray, y: np.ndarray,
                     llt: bool) -> np.ndarray:
    """Adversarial test images crafted on the defended system itself (adaptive attacker).

    Through the LLT the attacks use BPDA: ART's FGSM and ART's UAP call the
    preprocessor's ``estimate_gradient``; the fast UAP differentiates the flip and treats
    WebP as the identity. Each attack is the same algorithm as in the grey box.
    """
    if attack == "fgsm":
        clf = art_classifier(target, preprocessing_defences=[_llt(run)] if llt else None)
        return attacks.fgsm(clf, x, y, [run.profile.fgsm.eps])[run.profile.fgsm.eps]
    delta, _ = compute_uap(run, name, attack, target=target, target_key=target_key, through_llt=llt)
    return attacks.apply_perturbation(x, delta)


def evaluate_defence(run: Run, experiment: str, defence: str) -> dict[str, ModelOutcome]:
    """Clean, grey-box and white-box evaluation of ``defence`` for every model and attack."""
    x, y = run.x01("test"), run.y("test")
    use_llt = "llt" in defence
    use_retraining = "retraining" in defence
    llt = _llt(run) if use_llt else None

    def defended_predict(target, inputs):
        return models.predict_labels(target, llt(inputs)[0] if use_llt else inputs)

    out = {}
    for name in run.profile.models:
        base, _ = run.classifier(name)
        clean_undefended = models.predict_labels(base, x)
        outcome = ModelOutcome(predictions={"undefended": clean_undefended})
        targets = {a: retrained_model(run, name, a) for a in sorted(set(DEFENDED_ATTACKS.values()))} \
            if use_retraining else {a: base for a in set(DEFENDED_ATTACKS.values())}
        clean_defended = {}  # per target: the defended system's clean test predictions
        for retrained_for, target in sorted(targets.items()):
            case = f"clean ({retrained_for})" if use_retraining else "clean"
            if case not in outcome.predictions:
                clean = defended_predict(target, x)
                run.evaluate(y, clean, experiment=experiment, model=name, defence=defence,
                             param=f"retrained against {retrained_for}" if use_retraining else "")
                outcome.predictions[case] = clean
            clean_defended[retrained_for] = outcome.predictions[case]
        for attack, retrained_for in DEFENDED_ATTACKS.items():
            target = targets[retrained_for]
            clean = clean_defended[retrained_for]
            key = f"{defence}:{name}:{retrained_for}"
            for setting, inputs in (
                ("greybox", _greybox_inputs(run, name, attack, x, y)),
                ("whitebox", _whitebox_inputs(run, name, attack, target, key, x, y, use_llt)),
            ):
                pred = defended_predict(target, inputs)
                run.evaluate(y, pred, experiment=experiment, model=name, attack=attack, defence=defence,
                             setting=setting, y_pred_clean=clean)
                outcome.predictions[f"{attack}/{setting}"] = pred
        out[name] = outcome
    return out


def exp3_1_retraining(run: Run) -> dict[str, ModelOutcome]:
    """Adversarial retraining (5 rounds x 5 epochs in the thesis), grey and white box."""
    return evaluate_defence(run, "exp3_1_retraining", "retraining")


def exp3_2_llt(run: Run) -> dict[str, ModelOutcome]:
    """Low-level transformation in front of the undefended model, grey and white box,
    plus clean accuracy across the WebP quality sweep."""
    out = evaluate_defence(run, "exp3_2_llt", "llt")
    x, y = run.x01("test"), run.y("test")
    for name in run.profile.models:
        model, _ = run.classifier(name)
        for quality in run.profile.llt.quality_sweep:
            transformed = defences.apply_llt(x, quality=quality, flip=run.profile.llt.flip)
            pred = models.predict_labels(model, transformed)
            run.evaluate(y, pred, experiment="exp3_2_llt", model=name, defence="llt",
                         param=f"quality {quality}")
    return out


def exp3_3_combined(run: Run) -> dict[str, ModelOutcome]:
    """The retrained models of 3.1 behind the LLT of 3.2, grey and white box."""
    return evaluate_defence(run, "exp3_3_combined", "retraining+llt")


def class_names(labels: np.ndarray) -> list[str]:
    return [CLASSES[int(i)] for i in labels]
