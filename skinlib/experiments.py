"""The seven experiments of the thesis and the adaptive evaluation, as functions the notebooks call.

Each function computes one experiment for every model of the profile, appends its
tidy rows to ``run.rows`` and returns what the notebook displays. Expensive steps
(training, UAPs, retraining) go through the run's step cache, so later experiments
reuse exp0's models and an interrupted run resumes.

Settings of the tidy results (DESIGN.md): ``clean``; ``greybox`` (crafted on the
undefended model, as in the thesis; in experiment 2 the undefended model is the
target, so grey and white box coincide and the rows say ``greybox``); ``whitebox``
(crafted on the defended system itself: retrained model, or through the LLT with BPDA);
``transfer`` (crafted on an independently trained surrogate, experiment 4).
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
from skinlib.results import atomic_write_bytes
from skinlib.split import poison_labels
from skinlib.tf_backend import art_classifier


def _step_code() -> list:
    """Modules whose source is part of the UAP and retraining step keys (this one and every attack module included)."""
    from skinlib.attacks import _common, adaptive, gradient, noise, universal

    return [attacks, _common, adaptive, gradient, noise, universal, defences, models, tf_backend, sys.modules[__name__]]


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


#: The other split mode, for the leakage check of experiment 0.
OTHER_SPLIT = {"by_lesion": "by_image", "by_image": "by_lesion"}


def split_leakage(run: Run, model_name: Optional[str] = None) -> "pd.DataFrame":
    """How much an image-level split inflates test accuracy: ``model_name`` (default: the
    profile's first model) trained and tested once on each split, same data, schedule and seed.

    HAM10000 holds several images of many lesions; a split by image puts images of one
    lesion on both sides (what the thesis and DermaMNIST did), a split by lesion does
    not. Returns one row per split: ``model, split, test_images, seen_lesion_share``
    (share of test images whose lesion has an image in the training split),
    ``accuracy, ci_low, ci_high`` (lesion-bootstrap interval), ``fnr`` (clinical).
    The two models are cached steps (the run's own split reuses experiment 0's model);
    the table is also written to ``<results_dir>/exp0_split_leakage.csv``.

    Examples:
        >>> # table = split_leakage(open_run("smoke"))   # two rows: by_lesion, by_image
    """
    import dataclasses

    import pandas as pd

    from skinlib import split as split_module
    from skinlib.metrics import evaluate

    name = model_name or run.profile.models[0]
    own = run.profile.data.split
    other = OTHER_SPLIT[own]
    other_profile = dataclasses.replace(run.profile, data=dataclasses.replace(run.profile.data, split=other))
    other_splits = split_module.split_dataset(run.dataset.labels, run.dataset.lesion_ids,
                                              fractions=tuple(other_profile.data.fractions), by=other,
                                              seed=other_profile.seed, predefined=run.dataset.predefined_split)
    other_run = dataclasses.replace(run, profile=other_profile, splits=other_splits, rows=[])
    rows = []
    for split_run in sorted((run, other_run), key=lambda r: r.profile.data.split):
        model, _ = split_run.classifier(name)
        x_test, y_test = split_run.x("test"), split_run.y("test")
        pred = models.predict_labels(model, x_test)
        groups = split_run.test_groups()
        train_lesions = set(split_run.dataset.lesion_ids[split_run.splits["train"]].tolist())
        metrics = {(m["grouping"], m["metric"]): m for m in evaluate(
            y_test, pred, n_boot=run.profile.bootstrap, seed=run.profile.seed, groups=groups)}
        acc = metrics[("", "accuracy")]
        rows.append({"model": name, "split": split_run.profile.data.split, "test_images": int(y_test.size),
                     "seen_lesion_share": float(np.mean([g in train_lesions for g in groups])),
                     "accuracy": acc["value"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
                     "fnr": metrics[("clinical", "fnr")]["value"]})
    table = pd.DataFrame(rows)
    atomic_write_bytes(run.results_dir / "exp0_split_leakage.csv", table.to_csv(index=False).encode())
    return table


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
                kw = dict(experiment="exp2_1_fgsm", model=name, attack=attack, setting="greybox", param=fmt_param(eps))
                run.evaluate(y, pred, y_pred_clean=clean, **kw)
                if eps == cfg.eps:  # the attack's effect at the thesis's budget, paired
                    run.compare(y, pred, clean, reference="clean", **kw)
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
             input_transform: Optional[Callable] = None, *, seed: Optional[int] = None,
             warmup_steps: Optional[int] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`skinlib.attacks.uap_fast` with the profile's ``uap.fast_*`` settings.

    ``uap.fast_labels: predicted`` climbs the loss of the model's clean predictions instead
    of ``y`` (the flip rate's reference), ``uap.fast_loss: clipped`` caps each image's loss
    at ``uap.fast_beta`` (Shafahi et al. 2020, https://arxiv.org/abs/1811.11304).
    ``seed`` and ``warmup_steps`` replace the profile's ``seed`` and
    ``uap.fast_warmup_steps`` (``benchmarks/uap_warmup.py`` varies both).
    """
    cfg = run.profile.uap
    return attacks.uap_fast(model, x, y if cfg.fast_labels == "true" else None, norm=cfg.norm, eps=budget,
                            batch_size=cfg.fast_batch_size, epochs=cfg.fast_epochs,
                            learning_rate=cfg.fast_learning_rate,
                            warmup_steps=cfg.fast_warmup_steps if warmup_steps is None else warmup_steps,
                            loss=cfg.fast_loss, beta=cfg.fast_beta,
                            seed=run.profile.seed if seed is None else seed, input_transform=input_transform)


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
            transform = _llt(run).tf_transform() if through_llt else None  # BPDA: real WebP forward
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
        for method in ("uap_art", "uap_fast", "random"):  # paired: each against clean, each UAP against noise
            kw = dict(experiment="exp2_2_uap", model=name, attack=method, setting="greybox", param=fmt_param(budget))
            run.compare(y, outcome.predictions[method], clean, reference="clean", **kw)
            if method != "random":
                run.compare(y, outcome.predictions[method], pred, reference="noise", **kw)
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

        def round_dir(round_idx: int) -> Path:  # one round's checkpoints (for a resume)
            return folder / f"round{round_idx}"

        def train_fn(current, x_aug, y_aug, epochs: int, round_idx: int) -> None:
            models.train_model(current, (x_aug, y_aug), (run.x("val"), run.y("val")), run.profile.train,
                               round_dir(round_idx), seed=run.profile.seed + round_idx, epochs=epochs,
                               verbose=0)

        defences.adversarial_retraining(model, x_pool, y_pool, rounds=cfg.rounds,
                                        epochs_per_round=cfg.epochs_per_round, fraction=cfg.fraction,
                                        make_perturb_fn=make_perturb_fn, train_fn=train_fn, seed=run.profile.seed)
        models.save_model(model, folder / "model.keras")
        for round_idx in range(cfg.rounds):
            models.discard_checkpoints(round_dir(round_idx))

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

    Through the LLT the attacks use BPDA (real WebP forward, identity backward, the flip
    exact): ART's FGSM and ART's UAP call the preprocessor's ``estimate_gradient``; the fast
    UAP runs :meth:`LowLevelTransformation.tf_transform`. Each attack is the same algorithm
    as in the grey box.
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
        for retrained_for, clean in clean_defended.items():
            run.compare(y, clean, clean_undefended, reference="undefended", experiment=experiment, model=name,
                        defence=defence, param=f"retrained against {retrained_for}" if use_retraining else "")
        for attack, retrained_for in DEFENDED_ATTACKS.items():
            target = targets[retrained_for]
            clean = clean_defended[retrained_for]
            key = f"{defence}:{name}:{retrained_for}"
            grey_inputs = _greybox_inputs(run, name, attack, x, y)
            undefended = models.predict_labels(base, grey_inputs)  # for the undefended model grey = white box
            for setting, inputs in (
                ("greybox", grey_inputs),
                ("whitebox", _whitebox_inputs(run, name, attack, target, key, x, y, use_llt)),
            ):
                pred = defended_predict(target, inputs)
                kw = dict(experiment=experiment, model=name, attack=attack, defence=defence, setting=setting)
                run.evaluate(y, pred, y_pred_clean=clean, **kw)
                run.compare(y, pred, undefended, reference="undefended", **kw)
                if setting == "whitebox":
                    run.compare(y, pred, outcome.predictions[f"{attack}/greybox"], reference="greybox", **kw)
                outcome.predictions[f"{attack}/{setting}"] = pred
        out[name] = outcome
    return out


def exp3_1_retraining(run: Run) -> dict[str, ModelOutcome]:
    """Adversarial retraining (5 rounds x 5 epochs in the thesis), grey and white box."""
    return evaluate_defence(run, "exp3_1_retraining", "retraining")


def exp3_2_llt(run: Run) -> dict[str, ModelOutcome]:
    """Low-level transformation in front of the undefended model, grey and white box,
    plus clean accuracy across the WebP quality sweep and the ablation of :func:`llt_parts`
    (each outcome's ``extras["llt_parts"]``)."""
    out = evaluate_defence(run, "exp3_2_llt", "llt")
    x, y = run.x01("test"), run.y("test")
    for name in run.profile.models:
        model, _ = run.classifier(name)
        for quality in run.profile.llt.quality_sweep:
            transformed = defences.apply_llt(x, quality=quality, flip=run.profile.llt.flip)
            pred = models.predict_labels(model, transformed)
            run.evaluate(y, pred, experiment="exp3_2_llt", model=name, defence="llt",
                         param=f"quality {quality}")
    parts = llt_parts(run)
    for outcome in out.values():
        outcome.extras["llt_parts"] = parts
    return out


def llt_parts(run: Run) -> "pd.DataFrame":
    """Which part of the LLT undoes a grey-box perturbation: the flip alone, WebP alone, both.

    For every model, on the whole test split: the grey-box inputs of experiment 3.2 (FGSM,
    ART's and the fast UAP, crafted on the undefended model) and a grey-box PGD at the same
    budget (``adaptive.steps`` steps, crafted on the undefended model), each fed to the
    undefended model as they are (``none``) and through each part of
    :func:`skinlib.defences.apply_llt_part`. Columns: ``model, attack, transform,
    test_images, accuracy, ci_low, ci_high`` (lesion bootstrap), ``gain, gain_low,
    gain_high`` (paired difference from ``none``, same resamples). Written to
    ``<results_dir>/exp3_2_llt_parts.csv``.
    """
    import pandas as pd

    from skinlib.metrics import evaluate, paired_difference

    x, y = run.x01("test"), run.y("test")
    groups = run.test_groups()
    eps, cfg = run.profile.fgsm.eps, run.profile.adaptive
    quality, flip = run.profile.llt.quality, run.profile.llt.flip
    rows = []
    for name in run.profile.models:
        model, _ = run.classifier(name)
        inputs = {attack: _greybox_inputs(run, name, attack, x, y) for attack in ("fgsm", "uap_art", "uap_fast")}
        inputs["pgd"] = attacks.pgd(model, x, y, [eps], steps=cfg.steps, restarts=cfg.restarts,
                                    step_size=cfg.step_size * eps, seed=run.profile.seed)[eps]
        for attack, x_adv in inputs.items():
            plain = models.predict_labels(model, x_adv)
            for transform in ("none", *defences.LLT_PARTS):
                pred = plain if transform == "none" else models.predict_labels(
                    model, defences.apply_llt_part(x_adv, transform, quality=quality, flip=flip))
                acc = next(m for m in evaluate(y, pred, n_boot=run.profile.bootstrap, seed=run.profile.seed,
                                               groups=groups) if m["grouping"] == "" and m["metric"] == "accuracy")
                gain = paired_difference(y, pred, plain, groups=groups, n_boot=run.profile.bootstrap,
                                         seed=run.profile.seed, metrics=["accuracy"])["accuracy"]
                rows.append({"model": name, "attack": attack, "transform": transform, "test_images": int(y.size),
                             "accuracy": acc["value"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
                             "gain": gain[0], "gain_low": gain[1], "gain_high": gain[2]})
    table = pd.DataFrame(rows)
    atomic_write_bytes(run.results_dir / "exp3_2_llt_parts.csv", table.to_csv(index=False).encode())
    return table


def exp3_3_combined(run: Run) -> dict[str, ModelOutcome]:
    """The retrained models of 3.1 behind the LLT of 3.2, grey and white box."""
    return evaluate_defence(run, "exp3_3_combined", "retraining+llt")


def class_names(labels: np.ndarray) -> list[str]:
    return [CLASSES[int(i)] for i in labels]


# ---------------------------------------------------------------- experiment 4 (adaptive evaluation)

#: The systems experiment 4 attacks: (defence column, the model it uses, whether the LLT is in front).
#: The retrained model is the one retrained against FGSM (the per-image attack of experiment 4).
ADAPTIVE_SYSTEMS: tuple[tuple[str, str, bool], ...] = (
    ("none", "undefended", False), ("retraining", "retrained", False), ("llt", "undefended", True),
    ("retraining+llt", "retrained", True), ("pgd_at", "pgd_at", False),
)


def adaptive_models(run: Run) -> list[str]:
    """The models experiment 4 evaluates: ``adaptive.models``, or every model of the profile."""
    return list(run.profile.adaptive.models or run.profile.models)


def adaptive_subset(run: Run) -> np.ndarray:
    """Indices (into the test split) of the seeded subset the adaptive attacks run on; sorted."""
    n_test = len(run.splits["test"])
    n = run.profile.adaptive.n_images
    if n is None or n >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(run.profile.seed + 4).permutation(n_test)[:n])


def square_subset(run: Run, n: int) -> np.ndarray:
    """Positions (into :func:`adaptive_subset`'s ``n`` images) of the smaller seeded subset Square runs on
    (``adaptive.square_images``; all ``n`` when unset); sorted."""
    m = run.profile.adaptive.square_images
    if m is None or m >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(run.profile.seed + 6).permutation(n)[:m])


def pgd_at_model(run: Run, model_name: str):
    """The exp0 model fine-tuned by PGD adversarial training at ``adaptive.eps`` (a cached step)."""
    import json

    cfg = run.profile.adaptive
    params = {"step": "pgd_at", "model": model_name, "data": run.data_key, "train": vars(run.profile.train),
              "eps": cfg.eps, "steps": cfg.at_steps, "epochs": cfg.at_epochs, "lr": cfg.at_learning_rate,
              "val_images": cfg.at_val_images}

    def compute(folder: Path) -> None:
        from skinlib.split import class_weights

        model, _ = run.classifier(model_name)
        tcfg = run.profile.train
        weights = class_weights(run.y("train"), power=tcfg.class_weight_power) if tcfg.class_weights else None
        history = defences.pgd_adversarial_training(
            model, (run.x("train"), run.y("train")), (run.x("val"), run.y("val")), eps=cfg.eps, steps=cfg.at_steps,
            step_size=2.5 * cfg.eps / cfg.at_steps, max_epochs=cfg.at_epochs, batch_size=tcfg.batch_size,
            learning_rate=cfg.at_learning_rate, seed=run.profile.seed, class_weight=weights,
            val_images=cfg.at_val_images)
        models.save_model(model, folder / "model.keras")
        (folder / "history.json").write_text(json.dumps(history, indent=1))

    folder = run.cache.run("pgd_at", params, compute, modules=_step_code())
    return models.load_model(folder / "model.keras"), json.loads((folder / "history.json").read_text())


def codec_stand_in(run: Run) -> tuple[np.ndarray, dict[str, float]]:
    """The WebP stand-in's gains, fitted on training images at ``adaptive.eps``, and how well it tracks WebP.

    Fidelity is measured on other training images, for random sign perturbations and for
    low-frequency ones (the two kinds of perturbation the attacks make).
    """
    cfg = run.profile.adaptive
    llt = _llt(run)
    n = min(cfg.codec_fit_images, len(run.splits["train"]) // 2)
    order = np.random.default_rng(run.profile.seed + 5).permutation(len(run.splits["train"]))
    x = run.x01("train")
    fit, check = x[order[:n]], x[order[n:2 * n]]
    gains = tf_backend.fit_codec_gains(llt.codec, fit, cfg.eps, seed=run.profile.seed)
    rng = np.random.default_rng(run.profile.seed + 6)
    sign = attacks.random_noise(check, [cfg.eps], seed=run.profile.seed + 6)[cfg.eps] - check
    size = check.shape[1]
    low = max(1, round(size / cfg.lowfreq_factor))
    coarse = rng.choice(np.array([-1.0, 1.0], np.float32), size=(len(check), low, low, 3)) * np.float32(cfg.eps)
    smooth = np.clip(check + tf_backend.resize_images(coarse, size), 0, 1) - check
    fidelity = {f"{kind}_{k}": v for kind, d in (("sign", sign), ("lowfreq", smooth))
                for k, v in tf_backend.codec_fidelity(llt.codec, check, d.astype(np.float32), gains).items()}
    fidelity["n_fit"], fidelity["n_check"] = float(n), float(len(check))
    return gains, fidelity


def _defended_model(run: Run, name: str, which: str):
    if which == "undefended":
        return run.classifier(name)[0]
    if which == "retrained":
        return retrained_model(run, name, "fgsm")
    return pgd_at_model(run, name)[0]


def exp4_adaptive(run: Run) -> dict[str, ModelOutcome]:
    """Every defence under adaptive attacks at ``adaptive.eps``: grey box, transfer, white box, curves.

    Per model and system (:data:`ADAPTIVE_SYSTEMS`), on the seeded subset of
    :func:`adaptive_subset`: clean predictions; the thesis's grey box (FGSM and PGD crafted
    on the undefended model); transfer (PGD on an independently trained surrogate, through
    the same LLT when the system has one); white box through the defence (FGSM, PGD with
    BPDA, APGD-CE, APGD-DLR, and against the LLT the low-frequency and the codec-gradient
    PGD; Square, gradient-free, on the smaller subset of :func:`square_subset`) and their
    per-image worst case (Square counted on its images); the targeted malignant-to-benign
    attack. Paired differences against the undefended model (same attack and setting)
    and against the system's clean predictions go to the results too. Convergence (steps,
    restarts) and eps curves go to ``exp4_adaptive_curves.csv``, the codec stand-in's
    fidelity to ``exp4_codec.json``.
    """
    import pandas as pd

    cfg = run.profile.adaptive
    idx = adaptive_subset(run)
    x, y = run.x01("test")[idx], run.y("test")[idx]
    groups = run.test_groups(idx)
    on_square = square_subset(run, len(idx))
    eps, key = cfg.eps, fmt_param(cfg.eps)
    step = cfg.step_size * eps
    llt = _llt(run)
    gains, fidelity = codec_stand_in(run)
    run.write_json("exp4_codec.json", fidelity)
    seed = run.profile.seed
    curves: list[dict[str, Any]] = []
    out = {}
    for name in adaptive_models(run):
        base, _ = run.classifier(name)
        surrogate, _ = run.classifier(name, seed=seed + cfg.surrogate_seed)
        outcome = ModelOutcome(extras={"subset": len(idx)})
        common = dict(steps=cfg.steps, restarts=cfg.restarts, step_size=step, seed=seed)
        grey = {"fgsm": attacks.fgsm(art_classifier(base), x, y, [eps])[eps],
                "pgd": attacks.pgd(base, x, y, [eps], **common)[eps]}
        transfer = {with_llt: attacks.pgd(art_classifier(surrogate, preprocessing_defences=[llt] if with_llt else None),
                                          x, y, [eps], **common)[eps] for with_llt in (False, True)}
        reference: dict[tuple[str, str], np.ndarray] = {}  # (attack, setting) -> the undefended predictions
        for defence, which, with_llt in ADAPTIVE_SYSTEMS:
            model = _defended_model(run, name, which)
            system = art_classifier(model, preprocessing_defences=[llt] if with_llt else None)
            clean = tf_backend.predict_labels(system, x)
            preds: dict[tuple[str, str], np.ndarray] = {("none", "clean"): clean}
            for attack, x_adv in grey.items():
                preds[(attack, "greybox")] = tf_backend.predict_labels(system, x_adv)
            preds[("pgd", "transfer")] = tf_backend.predict_labels(system, transfer[with_llt])
            white = {"fgsm": attacks.fgsm(system, x, y, [eps])[eps], "pgd": attacks.pgd(system, x, y, [eps], **common)[eps],
                     "apgd_ce": attacks.apgd(system, x, y, [eps], loss="ce", steps=cfg.steps, seed=seed)[eps],
                     "apgd_dlr": attacks.apgd(system, x, y, [eps], loss="dlr", steps=cfg.steps, seed=seed)[eps]}
            if with_llt:
                white["pgd_lowfreq"] = attacks.pgd_lowfreq(system, x, y, [eps], factor=cfg.lowfreq_factor, **common)[eps]
                white["pgd_codec"] = attacks.pgd_codec(system, x, y, [eps], gains=gains, **common)[eps]
            for attack, x_adv in white.items():
                preds[(attack, "whitebox")] = tf_backend.predict_labels(system, x_adv)
            gradient_worst = attacks.worst_case(y, {a: preds[(a, "whitebox")] for a in white})[0]
            # Square, on its own smaller subset: the worst case counts it on those images
            square = tf_backend.predict_labels(system, attacks.square(
                system, x[on_square], y[on_square], [eps], queries=cfg.square_queries, p_init=cfg.square_p_init,
                seed=seed)[eps])
            preds[("square", "whitebox")] = square
            worst = gradient_worst.copy()
            worst[on_square] = attacks.worst_case(y[on_square], {"gradient": worst[on_square], "square": square})[0]
            preds[("worst_case", "whitebox")] = worst
            targeted = attacks.pgd_targeted(system, x, y, [eps], **common)[eps]
            preds[("pgd_targeted", "whitebox")] = tf_backend.predict_labels(system, targeted)
            for (attack, setting), pred in preds.items():
                param = "" if setting == "clean" else key
                kw = dict(experiment="exp4_adaptive", model=name, attack=attack, defence=defence, setting=setting,
                          param=param)
                on = on_square if attack == "square" else slice(None)
                run.evaluate(y[on], pred, y_pred_clean=None if setting == "clean" else clean[on], groups=groups[on],
                             **kw)
                if setting != "clean":
                    run.compare(y[on], pred, clean[on], reference="clean", groups=groups[on], **kw)
                if defence == "none":
                    reference[(attack, setting)] = pred
                elif (attack, setting) in reference:
                    run.compare(y[on], pred, reference[(attack, setting)], reference="undefended", groups=groups[on],
                                **kw)
            run.compare(y[on_square], square, gradient_worst[on_square], reference="gradient",
                        groups=groups[on_square], experiment="exp4_adaptive", model=name, attack="square",
                        defence=defence, setting="whitebox", param=key)
            outcome.predictions.update({f"{defence}/{a}/{s}": p for (a, s), p in preds.items()})
            curves.extend(_convergence_rows(run, name, defence, system, x, y, clean, gains if with_llt else None))
        out[name] = outcome
    table = pd.DataFrame(curves)
    atomic_write_bytes(run.results_dir / "exp4_adaptive_curves.csv", table.to_csv(index=False).encode())
    for outcome in out.values():
        outcome.extras["curves"] = table
    return out


def _convergence_rows(run: Run, name: str, defence: str, system: Any, x: np.ndarray, y: np.ndarray,
                      clean: np.ndarray, gains: Optional[np.ndarray] = None) -> list[dict[str, Any]]:
    """Accuracy of PGD against steps and restarts (``convergence_factor`` x the headline's) and against eps.

    Through the LLT (``gains`` given) the curves follow the codec-gradient PGD (``pgd_codec``,
    the attack that models WebP; the strongest on the published run), elsewhere plain PGD.
    """
    cfg = run.profile.adaptive
    f = cfg.convergence_factor
    n = min(cfg.convergence_images, len(x))
    steps, restarts = cfg.steps * f, cfg.restarts * f
    attack, extra = ("pgd", {}) if gains is None else ("pgd_codec", {"gradient": "codec", "gains": gains})
    trace: dict = {}
    attacks.pgd(system, x[:n], y[:n], [cfg.eps], steps=steps, restarts=restarts, step_size=cfg.step_size * cfg.eps,
                seed=run.profile.seed, trace=trace, **extra)
    grid = attacks.accuracy_by_step(trace[cfg.eps]["first"], steps, restarts, clean[:n] == y[:n])
    base = {"profile": run.profile.name, "experiment": "exp4_adaptive", "model": name, "defence": defence,
            "attack": attack, "n_images": n}
    rows = [{**base, "curve": "steps", "x": t, "accuracy": float(grid[0, t]),
             "headline": t == cfg.steps} for t in range(steps + 1)]
    rows += [{**base, "curve": "restarts", "x": r + 1, "accuracy": float(grid[r, -1]),
              "headline": r + 1 == cfg.restarts} for r in range(restarts)]
    m = min(cfg.curve_images, len(x))
    by_eps = attacks.pgd(system, x[:m], y[:m], sorted(set(cfg.eps_curve)), steps=cfg.curve_steps,
                         step_size=None, seed=run.profile.seed, **extra)
    for e, x_adv in by_eps.items():
        acc = float(np.mean(tf_backend.predict_labels(system, x_adv) == y[:m]))
        rows.append({**base, "n_images": m, "curve": "eps", "x": round(e * 255, 4), "accuracy": acc,
                     "headline": bool(np.isclose(e, cfg.eps))})
    return rows
