"""A harder attack battery against the defences experiment 4 says hold (not a speed benchmark).

Carlini et al. 2019: a defence that holds up is the one to attack harder. This script loads
a finished experiment 4's models from the step cache (``SKINLIB_CACHE_DIR``), repeats its
headline white-box gradient attacks on the same seeded subset, then runs a cascade of
stronger attacks, each only on the images every earlier attack left correctly classified
(a per-image worst case, as AutoAttack computes it): PGD with 5x the steps and 5x the
restarts, the DLR loss, a small step from the clean image, low-frequency grids of other
sizes, APGD with 5x the iterations, and Square with more queries. Each row says how many
images the attack broke that no earlier attack had broken, and the accuracy after it.

The last row per system gives the harder worst case beside the headline's reproduction,
with a paired lesion-bootstrap interval of the drop (:func:`skinlib.metrics.paired_difference`).

Usage::

    SKINLIB_CACHE_DIR=<the run's cache> python benchmarks/stress_defences.py --profile ham10000 \\
        --seed 0 --data-dir ../shared/data/ham10000 --out results/ham10000/stress_defences.csv \\
        [--systems retraining+llt pgd_at]

The summary page reads ``results/<profile>/stress_defences.csv`` (:func:`skinlib.verdicts.stress_reading`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import numpy as np


class Stage(NamedTuple):
    """One attack of the cascade: ``run(x, y)`` returns adversarial images; ``positions``, when
    given, restricts it to those images (Square's subset)."""

    stage: str  # "headline" or "harder"
    attack: str
    run: Callable
    positions: Optional[np.ndarray] = None


def _cascade(system: Any, x: np.ndarray, y: np.ndarray, stages: list[Stage],
             log: Callable[[str], None]) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Run ``stages`` in order, each on the images still correctly classified (and, where the
    stage names positions, only on those); return rows and the headline and final per-image
    predictions (``stage == "headline"`` marks the headline attacks).

    Shape: ``x`` is ``(n, h, w, 3)`` in [0, 1]; ``y`` and both returned predictions are ``(n,)``.
    """
    from skinlib import tf_backend

    pred = tf_backend.predict_labels(system, x)
    headline = None
    rows = []
    for stage, attack, fn, positions in stages:
        if stage != "headline" and headline is None:
            headline = pred.copy()
        candidates = np.arange(len(y)) if positions is None else np.asarray(positions)
        alive = candidates[pred[candidates] == y[candidates]]
        start = time.perf_counter()
        broken = 0
        if len(alive):
            adv = fn(x[alive], y[alive])
            new = tf_backend.predict_labels(system, adv)
            hit = new != y[alive]
            pred[alive[hit]] = new[hit]
            broken = int(hit.sum())
        seconds = time.perf_counter() - start
        rows.append({"stage": stage, "attack": attack, "attacked": len(alive), "newly_broken": broken,
                     "accuracy": float(np.mean(pred == y)), "seconds": round(seconds, 1)})
        log(f"  {stage:9s} {attack:38s} on {len(alive):4d}: broke {broken:3d} -> {rows[-1]['accuracy']:.3f} "
            f"({seconds:.0f} s)")
    return rows, (pred.copy() if headline is None else headline), pred


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ham10000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--systems", nargs="+", default=["retraining+llt", "pgd_at"])
    parser.add_argument("--factor", type=int, default=5, help="steps and restarts of the harder PGD: x the headline's")
    parser.add_argument("--square-queries", type=int, default=5000)
    args = parser.parse_args(argv)

    import pandas as pd

    from skinlib import attacks, experiments, metrics
    from skinlib.context import open_run
    from skinlib.errors import SkinlibError
    from skinlib.results import atomic_write_bytes
    from skinlib.tf_backend import art_classifier

    systems = {d: (which, llt) for d, which, llt in experiments.ADAPTIVE_SYSTEMS}
    unknown = [s for s in args.systems if s not in systems]
    if unknown:
        print(f"stress_defences: --systems: unknown {', '.join(unknown)}; expected some of {', '.join(systems)}",
              file=sys.stderr)
        return 2
    if not Path(args.out).parent.is_dir():
        print(f"stress_defences: --out: folder {Path(args.out).parent} does not exist", file=sys.stderr)
        return 2
    try:
        run = open_run(args.profile, data_dir=args.data_dir, results_dir=tempfile.mkdtemp(prefix="stress-"),
                       overrides={"seed": args.seed})
    except SkinlibError as err:
        print(f"stress_defences: {err}", file=sys.stderr)
        return 2
    cfg = run.profile.adaptive
    idx = experiments.adaptive_subset(run)
    x, y = run.x01("test")[idx], run.y("test")[idx]
    groups = run.test_groups(idx)
    on_square = experiments.square_subset(run, len(idx))
    eps, seed, f = cfg.eps, run.profile.seed, args.factor
    gains, _ = experiments.codec_stand_in(run)
    llt = experiments._llt(run)
    rows = []
    for name in experiments.adaptive_models(run):
        for defence in args.systems:
            which, with_llt = systems[defence]
            model = experiments._defended_model(run, name, which)
            system = art_classifier(model, preprocessing_defences=[llt] if with_llt else None)
            head = dict(steps=cfg.steps, restarts=cfg.restarts, step_size=cfg.step_size * eps, seed=seed)
            hard = dict(steps=cfg.steps * f, restarts=cfg.restarts * f, step_size=cfg.step_size * eps, seed=seed + 1)
            codec = dict(gradient="codec", gains=gains) if with_llt else {}

            def pgd(**kw: Any) -> Callable:
                return lambda xs, ys: attacks.pgd(system, xs, ys, [eps], **kw)[eps]

            def apgd(loss: str, steps: int) -> Callable:
                return lambda xs, ys: attacks.apgd(system, xs, ys, [eps], loss=loss, steps=steps, seed=seed)[eps]

            low = {k: max(1, round(x.shape[1] / k)) for k in (2, cfg.lowfreq_factor, 8)}
            stages = [Stage("headline", "pgd", pgd(**head)), Stage("headline", "apgd_ce", apgd("ce", cfg.steps)),
                      Stage("headline", "apgd_dlr", apgd("dlr", cfg.steps))]
            if with_llt:
                stages += [Stage("headline", "pgd_lowfreq", pgd(low_resolution=low[cfg.lowfreq_factor], **head)),
                           Stage("headline", "pgd_codec", pgd(**codec, **head))]
            tag = f"x{f} steps, x{f} restarts"
            pgd_name = "pgd_codec" if with_llt else "pgd"
            stages += [Stage("harder", f"{pgd_name} ({tag})", pgd(**codec, **hard)),
                       Stage("harder", f"{pgd_name} dlr ({tag})", pgd(loss="dlr", **codec, **hard)),
                       Stage("harder", f"pgd from clean, step eps/10, {cfg.steps * 10} steps",
                             pgd(steps=cfg.steps * 10, step_size=eps / 10, random_start=False, seed=seed, **codec))]
            if with_llt:
                stages += [Stage("harder", f"pgd identity ({tag})", pgd(**hard))]
                stages += [Stage("harder", f"pgd_lowfreq codec 1/{k} ({tag})",
                                 pgd(low_resolution=low[k], **codec, **hard)) for k in (2, cfg.lowfreq_factor, 8)]
            stages += [Stage("harder", f"apgd_ce ({cfg.steps * f} steps)", apgd("ce", cfg.steps * f)),
                       Stage("harder", f"apgd_dlr ({cfg.steps * f} steps)", apgd("dlr", cfg.steps * f))]
            # Square, with more queries, on its own subset of the images every gradient attack left correct
            stages += [Stage("harder", f"square ({args.square_queries} queries, its subset)",
                             lambda xs, ys: attacks.square(system, xs, ys, [eps], queries=args.square_queries,
                                                           p_init=cfg.square_p_init, seed=seed + 1)[eps], on_square)]
            print(f"[stress] {name} / {defence}: {len(x)} images, eps {eps * 255:.3g}/255", flush=True)
            system_rows, headline, final = _cascade(system, x, y, stages, lambda s: print(s, flush=True))
            diff = metrics.paired_difference(y, final, headline, groups=groups, n_boot=1000, seed=seed,
                                             metrics=["accuracy"])["accuracy"]
            system_rows.append({"stage": "summary", "attack": "harder worst case minus headline gradient worst case",
                                "attacked": len(x), "newly_broken": int(np.sum((headline == y) & (final != y))),
                                "accuracy": diff[0], "ci_low": diff[1], "ci_high": diff[2], "seconds": 0.0})
            print(f"  drop {diff[0]:+.3f} ({diff[1]:+.3f} to {diff[2]:+.3f})", flush=True)
            rows += [{"profile": run.profile.name, "seed": seed, "model": name, "defence": defence,
                      "n_images": len(x), **r} for r in system_rows]
            atomic_write_bytes(Path(args.out), pd.DataFrame(rows).to_csv(index=False).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
