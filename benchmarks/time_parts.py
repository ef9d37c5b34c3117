"""Where an experiment's time goes: each attack, prediction, evaluation and step it calls, timed.

Runs one experiment function of :mod:`skinlib.experiments` as its notebook does (the
profile, a training seed, the data folder; a temporary results folder, and the step cache
of ``SKINLIB_CACHE_DIR``, so that cached models are loaded rather than trained again)
and times every call of these parts:

- every attack of the registry (:data:`skinlib.attacks.ATTACKS`) and ``uap_budget``;
- predictions (``tf_backend.predict_labels``, ``models.predict_labels``) and the LLT
  (``defences.apply_llt``, ``defences.apply_llt_part``);
- the lesion bootstrap (``Run.evaluate``, ``Run.compare``);
- cached steps (``StepCache.run``: a model trained, a UAP computed, or a folder found)
  and model loads (``Run.classifier``).

A call's seconds exclude the timed calls inside it, so an attack that predicts is counted
once and the rows add up to the experiment's time less the untimed glue (reported as
``untimed``). One row per call, in call order: ``profile, seed, experiment, call, part,
through_llt`` (the system attacked or predicted carries the LLT; ``apply_llt`` rows are the
WebP round trips themselves, wherever they run, inside a prediction or an attack too),
``n_images, detail``
(steps, restarts, queries, loss as passed) and ``seconds``; the experiment's wall time is
the row ``part=wall``. Rows go to ``--out`` (default ``results/benchmarks/parts.csv``,
one set per profile, experiment and seed); a summary by part is printed. ``--results-dir``
keeps the experiment's results (its CSV, as its page writes it), for instance to check that
a faster version of the code reproduces a published table.

These are seconds of one run on one machine: run it on a quiet one, and compare parts
within a run, not across machines.

Usage::

    SKINLIB_CACHE_DIR=<a run's cache> python benchmarks/time_parts.py --profile ham10000 \\
        --data-dir ../shared/data/ham10000 --seed 2 --experiment exp4_adaptive
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from results_csv import write_rows

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks" / "parts.csv"
DETAIL_KEYS = ("steps", "restarts", "queries", "loss", "factor", "epochs", "max_iter")


def _n_images(values: tuple) -> int | str:
    """The length of the first image batch or label vector among ``values`` ("" if none)."""
    for value in values:
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) in (1, 4):
            return int(shape[0])
    return ""


def _through_llt(args: tuple, kwargs: dict) -> bool:
    """Whether the system attacked or predicted carries the LLT (an ART preprocessor or a BPDA op)."""
    from skinlib.defences import LowLevelTransformation

    defences = getattr(args[0], "preprocessing_defences", None) if args else None
    return any(isinstance(d, LowLevelTransformation) for d in defences or []) or \
        kwargs.get("input_transform") is not None or kwargs.get("through") is not None


class PartTimer:
    """Exclusive seconds of wrapped calls, one record per call, in call order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._stack: list[list[float]] = []  # [start, seconds of timed calls inside]

    def wrap(self, part: str, fn: Callable, images_from: int | None = 1) -> Callable:
        """``fn`` timed as ``part``; its image count read from the positional arguments from
        ``images_from`` on (``None``: a call without images)."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, inner = self._stack.pop()
                total = time.perf_counter() - start
                if self._stack:
                    self._stack[-1][1] += total
                detail = " ".join(f"{k}={kwargs[k]}" for k in DETAIL_KEYS if k in kwargs)
                self.rows.append({"call": len(self.rows), "part": part, "through_llt": _through_llt(args, kwargs),
                                  "n_images": "" if images_from is None else _n_images(args[images_from:]),
                                  "detail": detail,
                                  "seconds": round(total - inner, 3)})
        return timed


def instrument(run: Any, timer: PartTimer) -> None:
    """Wrap the parts listed in the module docstring (module attributes, so the experiments see them)."""
    from skinlib import attacks, defences, models, tf_backend
    from skinlib.steps import StepCache

    names = {info.function.__name__ for info in attacks.ATTACKS.values()} | {"apgd", "uap_budget"}
    for name in sorted(names):
        if hasattr(attacks, name):
            setattr(attacks, name, timer.wrap(name, getattr(attacks, name)))
    tf_backend.predict_labels = timer.wrap("predict_labels", tf_backend.predict_labels)
    models.predict_labels = timer.wrap("predict_labels", models.predict_labels)
    defences.apply_llt = timer.wrap("apply_llt", defences.apply_llt, images_from=0)
    defences.apply_llt_part = timer.wrap("apply_llt", defences.apply_llt_part, images_from=0)
    run.evaluate = timer.wrap("bootstrap", run.evaluate, images_from=0)
    run.compare = timer.wrap("bootstrap", run.compare, images_from=0)
    run.classifier = timer.wrap("load_model", run.classifier)
    original = StepCache.run

    def step(cache: StepCache, kind: str, *args: Any, **kwargs: Any) -> Path:
        return timer.wrap(f"step:{kind}", original, images_from=None)(cache, kind, *args, **kwargs)

    StepCache.run = step  # type: ignore[method-assign]


def summary(rows: list[dict[str, Any]]) -> str:
    """Seconds and calls by part and LLT, largest first."""
    seconds: dict[tuple[str, bool], float] = collections.defaultdict(float)
    calls: dict[tuple[str, bool], int] = collections.defaultdict(int)
    for r in rows:
        seconds[(r["part"], r["through_llt"])] += r["seconds"]
        calls[(r["part"], r["through_llt"])] += 1
    lines = [f"{'part':24s} {'LLT':5s} {'calls':>6s} {'seconds':>9s}"]
    for (part, llt), s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        lines.append(f"{part:24s} {'yes' if llt else '':5s} {calls[(part, llt)]:6d} {s:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--data-dir", default=None, help="the dataset folder (else the profile's or SKINLIB_DATA_DIR)")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the profile's)")
    ap.add_argument("--experiment", required=True, help="an experiment id, e.g. exp4_adaptive")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--results-dir", type=Path, default=None,
                    help="also write the experiment's results here, as its page would (default: discarded)")
    args = ap.parse_args(argv)

    from skinlib import experiments
    from skinlib.context import open_run
    from skinlib.errors import SkinlibError
    from skinlib.results import EXPERIMENTS

    if args.experiment not in EXPERIMENTS or not hasattr(experiments, args.experiment):
        print(f"error: --experiment: {args.experiment!r} is not one of {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    try:
        results_dir = str(args.results_dir) if args.results_dir else tempfile.mkdtemp(prefix="parts-")
        run = open_run(args.profile, data_dir=args.data_dir, results_dir=results_dir, overrides={"seed": args.seed})
    except SkinlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    timer = PartTimer()
    instrument(run, timer)
    start = time.perf_counter()
    getattr(experiments, args.experiment)(run)
    wall = time.perf_counter() - start
    if args.results_dir:
        run.save_results(args.experiment)
    timed = sum(r["seconds"] for r in timer.rows)
    rows = timer.rows + [{"call": len(timer.rows), "part": "untimed", "through_llt": False, "n_images": "",
                          "detail": "", "seconds": round(wall - timed, 3)},
                         {"call": len(timer.rows) + 1, "part": "wall", "through_llt": False, "n_images": "",
                          "detail": "", "seconds": round(wall, 3)}]
    key = f"{run.profile.name}/{args.experiment}/seed-{run.profile.seed}"
    write_rows(args.out, [{"run": key, "profile": run.profile.name, "seed": run.profile.seed,
                           "experiment": args.experiment, **r} for r in rows], "run")
    print(summary(rows[:-1]))
    print(f"{args.experiment}: {wall:.1f} s wall, {timed:.1f} s in the timed parts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
