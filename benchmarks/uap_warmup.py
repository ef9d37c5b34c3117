"""Does the fast UAP's warm-up weaken it? Paired over attack seeds on a run's experiment-0 models.

The fast UAP (:func:`skinlib.attacks.uap_fast`) takes ``uap.fast_warmup_steps`` first steps
of the whole budget, which is what brings it to ART's flip rate in two steps
(``bench_attacks.py``). Speed must not be bought with strength, so this script crafts the
full-schedule perturbation with and without the warm-up, for each of ``--seeds`` attack seeds
(the minibatch order), on the profile's experiment-0 models, exactly as experiments 2.2 and
3.2 do, and scores each on the test images in three settings:

- ``undefended``: the perturbation of the undefended model, on the undefended model;
- ``llt_greybox``: the same perturbation through the LLT (the thesis's grey box of 3.2);
- ``llt_whitebox``: a perturbation crafted through the LLT (BPDA), through the LLT.

Per model and setting it writes the mean accuracy of each variant, its standard deviation
over the seeds, and the paired difference (warm-up minus none) with a 95% t interval over
the seeds to ``results/benchmarks/uap_warmup.csv`` (one set of rows per profile).

Usage (the models come from the run's cache, as with ``time_parts.py``)::

    SKINLIB_CACHE_DIR=<the run's cache> python benchmarks/uap_warmup.py --profile ham10000 \\
        --data-dir ../shared/data/ham10000 --seeds 15
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from results_csv import write_rows

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks" / "uap_warmup.csv"
SETTINGS = ("undefended", "llt_greybox", "llt_whitebox")


def accuracies(run, model, warmup: int, seed: int) -> dict[str, float]:
    """Test accuracy in each of :data:`SETTINGS` for one warm-up and one attack seed.

    The perturbations come from :func:`skinlib.experiments.fast_uap`, the experiments' own call,
    with only the seed and the warm-up replaced."""
    from skinlib import attacks, experiments, models

    x, y = experiments.uap_training_images(run)
    x_te, y_te = run.x01("test"), run.y("test")
    llt = experiments._llt(run)
    budget = attacks.uap_budget(x, run.profile.uap.norm, eps=run.profile.uap.eps, zeta=run.profile.uap.zeta)
    grey, _ = experiments.fast_uap(run, model, x, y, budget, seed=seed, warmup_steps=warmup)
    white, _ = experiments.fast_uap(run, model, x, y, budget, input_transform=llt.tf_transform(), seed=seed,
                                    warmup_steps=warmup)

    def accuracy(images: np.ndarray) -> float:
        return float(np.mean(models.predict_labels(model, images) == y_te))
    return {"undefended": accuracy(attacks.apply_perturbation(x_te, grey)),
            "llt_greybox": accuracy(llt(attacks.apply_perturbation(x_te, grey))[0]),
            "llt_whitebox": accuracy(llt(attacks.apply_perturbation(x_te, white))[0])}


def summarise(per_seed: dict[tuple[str, str, int], list[float]], warmup: int, profile: str) -> list[dict]:
    """One row per model and setting: the two variants' mean accuracy and their paired difference.

    ``per_seed[(model, setting, warmup_steps)]`` lists the accuracies in seed order."""
    from scipy import stats

    rows = []
    for model, setting in sorted({(m, s) for m, s, _ in per_seed}):
        none, warm = np.array(per_seed[(model, setting, 0)]), np.array(per_seed[(model, setting, warmup)])
        diff = warm - none
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
        rows.append({"profile": profile, "model": model, "setting": setting, "seeds": len(diff),
                     "warmup_steps": warmup, "accuracy_no_warmup": round(none.mean(), 4),
                     "sd_no_warmup": round(none.std(ddof=1), 4), "accuracy_warmup": round(warm.mean(), 4),
                     "sd_warmup": round(warm.std(ddof=1), 4), "difference": round(diff.mean(), 4),
                     "ci_low": round(diff.mean() - half, 4), "ci_high": round(diff.mean() + half, 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--data-dir", default=None, help="the dataset folder (else the profile's or SKINLIB_DATA_DIR)")
    ap.add_argument("--seeds", type=int, default=15, help="attack seeds 0..N-1 (at least 2)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps compared with none "
                    "(the profile's uap.fast_warmup_steps)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.seeds < 2:
        print(f"--seeds: need at least 2 for an interval, got {args.seeds}", file=sys.stderr)
        return 2
    from skinlib.context import open_run

    with tempfile.TemporaryDirectory() as scratch:  # the run's own results stay untouched
        run = open_run(args.profile, data_dir=args.data_dir, results_dir=scratch)
        warmup = args.warmup if args.warmup is not None else run.profile.uap.fast_warmup_steps
        if warmup < 1:
            print(f"--warmup: need at least 1 step to compare with none, got {warmup}", file=sys.stderr)
            return 2
        per_seed: dict[tuple[str, str, int], list[float]] = {}
        for name in run.profile.models:
            model, _ = run.classifier(name)
            for seed in range(args.seeds):
                for steps in (0, warmup):
                    for setting, acc in accuracies(run, model, steps, seed).items():
                        per_seed.setdefault((name, setting, steps), []).append(acc)
                print(f"{name} seed {seed}: " + ", ".join(
                    f"{s} {per_seed[(name, s, 0)][-1]:.4f} -> {per_seed[(name, s, warmup)][-1]:.4f}"
                    for s in SETTINGS), file=sys.stderr, flush=True)
        rows = summarise(per_seed, warmup, run.profile.name)
    write_rows(args.out, rows, by="profile")
    for r in rows:
        print(f"{r['model']:16s} {r['setting']:13s} {r['accuracy_no_warmup']:.4f} -> {r['accuracy_warmup']:.4f}  "
              f"difference {r['difference']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
