"""Attack cost: ART's FGSM loop vs the one-gradient multi-eps FGSM, ART's PGD vs the compiled one, ART's UAP vs the fast UAP.

Measured side by side in one run, on one trained model and the same images:

FGSM (``fgsm.csv``): ART ``FastGradientMethod`` called once per eps of the profile's
sweep, against :func:`skinlib.attacks.fgsm`, which computes the gradient sign once and
returns every eps (outputs checked identical). Repeats are interleaved; medians reported.

PGD (``pgd.csv``): ART ``ProjectedGradientDescent`` against :func:`skinlib.attacks.pgd`
(compiled step), same images, eps, steps, step size and start, on the undefended model
and through the LLT (BPDA); accuracy under each and the speed ratio (see ``bench_pgd``).

UAP (``uap.csv``): ART ``UniversalPerturbation`` as the thesis ran it (FGSM inner
attacker, ``uap.max_iter`` passes, ``uap.n_train_images`` training images, one image at a
time; ``--art-delta 0`` so that every pass runs: ART's own default 0.2 stops once 80% of
the training images are misclassified) against :func:`skinlib.attacks.uap_fast`
(minibatch sign-gradient ascent, compiled, with the profile's ``uap.fast_*`` loss and
labels; with ``fast_labels: predicted`` the clean predictions it climbs are part of its
time, each image's predicted when a minibatch first draws it). Time to ART's result: an
untimed probe run monitors the fast UAP's flip rate on the test images after every step
and finds the first step ``N`` at which it reaches ART's final test flip rate; then a fresh run of
exactly ``N`` steps (same seed, so the same perturbation) is timed without any
monitoring, ``cold`` (the compiled step traced again: its tracing is in the time) and
``warm`` (reused), each the median of ``--repeats`` runs. The fast UAP's first
``uap.fast_warmup_steps`` steps take the whole budget as their size (``--fast-warmup``). ART's baseline runs on ART's stock ``TensorFlowV2Classifier`` (its
loss gradient eager, as ART ships it); ``uap_art_compiled_gradient`` is the same attack on
:func:`skinlib.tf_backend.art_classifier`'s compiled gradient, which the experiments use.
FGSM's and PGD's ART baselines run on the stock classifier too. ``uap_fast`` is the
profile's full schedule (``uap.fast_epochs``); ``uap_fast_plain_loss`` the same schedule with the plain cross-entropy of the true labels
(the ablation of the clipped loss and the predicted labels).
All rows are scored on the same held-out test images: ``test_flip_rate`` (prediction
changed) and ``test_error_rate`` (1 - accuracy under attack); ``speedup_vs_art`` = ART
wall / wall; ``reaches_art``: test flip rate >= ART's.

The model is the profile's first model (``skinlib.models``) trained briefly on the profile's
data (``--data-dir`` for the real images), or the model of ``--load-model``. A profile
whose data cannot be read is a one-line error; ``--model toy`` asks for a toy CNN on
generated colour images (``skinlib.tf_backend.toy_model``) instead, and the ``model``
column says so.

Usage::

    python benchmarks/bench_attacks.py --profile default
    python benchmarks/bench_attacks.py --profile ham10000 --data-dir ../shared/data/ham10000 \\
        --load-model <the exp0 resnet_small model.keras of the run>
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_csv import write_rows

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "results" / "benchmarks"


def _profile(name: str, data_dir: str | None):
    from skinlib.errors import SkinlibError
    from skinlib.profiles import load_profile

    try:
        return load_profile(name, data_dir=data_dir)
    except SkinlibError as exc:
        raise SystemExit(f"error: {exc}")


def setup(prof, args) -> dict:
    """A trained model and train/val/test images (float32 in [0, 1])."""
    from skinlib.errors import SkinlibError

    size = args.size or prof.data.image_size
    if args.model != "toy":
        try:
            from skinlib import models as M
            from skinlib.data import load_dataset
            from skinlib.split import split_dataset

            name = prof.models[0] if args.model == "profile" else args.model
            ds = load_dataset(prof.data.source, prof.data.data_dir, size, seed=prof.seed, n_images=prof.data.n_images)
            idx = split_dataset(ds.labels, ds.lesion_ids, fractions=prof.data.fractions, by=prof.data.split,
                                seed=prof.seed, predefined=ds.predefined_split)
            tr, va, te = idx["train"], idx["val"], idx["test"]
            if args.load_model is not None:
                model = M.load_model(args.load_model)
                name = f"{name}(loaded)"
            else:
                model = M.build_model(name, size, seed=prof.seed)
                t = time.perf_counter()
                with tempfile.TemporaryDirectory() as work:
                    M.train_model(model, (ds.images[tr], ds.labels[tr]), (ds.images[va], ds.labels[va]), prof.train,
                                  work, seed=prof.seed, epochs=args.train_epochs, verbose=0)
                print(f"trained {name} for {args.train_epochs} epochs in {time.perf_counter() - t:.0f} s",
                      file=sys.stderr)
                if args.save_model is not None:
                    M.save_model(model, args.save_model)
            f = lambda i: ds.images[i].astype(np.float32) / 255  # noqa: E731
            return {"model": model, "name": f"{name}:{prof.data.source}:{size}px", "x_tr": f(tr), "y_tr": ds.labels[tr],
                    "x_va": f(va), "y_va": ds.labels[va], "x_te": f(te), "y_te": ds.labels[te]}
        except SkinlibError as exc:  # never a silent toy stand-in: its rows would carry the profile's name
            raise SystemExit(f"error: {exc} (or run with --model toy)")
    from skinlib.tf_backend import toy_data, toy_model

    x, y = toy_data(3000, size, seed=prof.seed)
    model = toy_model(size, seed=prof.seed)
    model.fit(x[:2000], y[:2000], epochs=max(args.train_epochs, 8), batch_size=32, verbose=0)
    return {"model": model, "name": f"toy_cnn:{size}px", "x_tr": x[:2000], "y_tr": y[:2000], "x_va": x[2000:2500],
            "y_va": y[2000:2500], "x_te": x[2500:], "y_te": y[2500:]}


def bench_fgsm(env: dict, eps_list: list[float], repeats: int, n: int) -> list[dict]:
    from art.attacks.evasion import FastGradientMethod

    from skinlib import attacks, tf_backend

    clf = tf_backend.art_classifier(env["model"])
    stock = tf_backend.art_classifier(env["model"], compiled_gradient=False)  # ART as it ships
    x, y = env["x_te"][:n], env["y_te"][:n]
    yh = tf_backend.one_hot(y)

    def art_loop():
        return {e: FastGradientMethod(stock, norm=np.inf, eps=e, batch_size=64).generate(x, yh) for e in eps_list}

    def ours():
        return attacks.fgsm(clf, x, y, eps_list, batch_size=64)

    a, o = art_loop(), ours()  # warm-up, and the equality check
    identical = all(np.array_equal(a[e], o[e]) for e in eps_list)
    times = {"art_fgsm_per_eps": [], "skinlib_fgsm_multi_eps": []}
    for _ in range(repeats):
        for name, fn in (("art_fgsm_per_eps", art_loop), ("skinlib_fgsm_multi_eps", ours)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["art_fgsm_per_eps"])
    return [{"method": name, "wall_s": round(statistics.median(ts), 4), "images": len(x), "n_eps": len(eps_list),
             "eps_list": " ".join(f"{e:.6f}" for e in eps_list), "identical": identical,
             "speedup_vs_art": round(base / statistics.median(ts), 2), "model": env["name"], "repeats": repeats}
            for name, ts in times.items()]


def bench_pgd(env: dict, prof, args) -> list[dict]:
    """ART's ProjectedGradientDescent vs the compiled :func:`skinlib.attacks.pgd`, undefended and through the LLT.

    Same images, eps (``adaptive.eps``), steps (``adaptive.steps``), step size and start
    (the clean image: no random start, so both runs are deterministic and start alike).
    Through the LLT both use BPDA (ART: the preprocessor's ``estimate_gradient``; ours:
    the straight-through op with the real WebP forward). Accuracy of the defended system
    on each result, and wall time (median of ``--repeats``, interleaved).
    """
    from art.attacks.evasion import ProjectedGradientDescent

    from skinlib import attacks, defences, tf_backend

    a = prof.adaptive
    eps, steps, step = a.eps, args.pgd_steps or a.steps, a.step_size * a.eps
    x, y = env["x_te"][:args.pgd_images], env["y_te"][:args.pgd_images]
    llt = defences.LowLevelTransformation(quality=prof.llt.quality, flip=prof.llt.flip)
    rows = []
    for system in ("undefended", "llt"):
        defended_by = [llt] if system == "llt" else None
        clf = tf_backend.art_classifier(env["model"], preprocessing_defences=defended_by)
        stock = tf_backend.art_classifier(env["model"], preprocessing_defences=defended_by,
                                          compiled_gradient=False)  # ART as it ships

        def art_run():
            attack = ProjectedGradientDescent(stock, norm=np.inf, eps=eps, eps_step=step, max_iter=steps,
                                              num_random_init=0, batch_size=256, verbose=False)
            return attack.generate(x, tf_backend.one_hot(y))

        def ours():
            return attacks.pgd(clf, x, y, [eps], steps=steps, step_size=step, random_start=False)[eps]

        results = {"art_pgd": art_run(), "skinlib_pgd": ours()}  # warm-up (traces ours), and the accuracies
        # ART returns the last iterate; ours keeps each image's first successful iterate (through
        # the noisy WebP forward an image can break and then recover). The same PGD, ending like ART's:
        op = llt.tf_transform() if system == "llt" else None
        last = tf_backend.pgd_last_iterate(env["model"], x, y, eps=eps, steps=steps, step_size=step, rng=None,
                                           transform=op)
        last_accuracy = round(float(np.mean(tf_backend.predict_labels(clf, last) == y)), 4)
        times: dict[str, list[float]] = {k: [] for k in results}
        for _ in range(args.repeats):
            for name, fn in (("art_pgd", art_run), ("skinlib_pgd", ours)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        base = statistics.median(times["art_pgd"])
        for name, x_adv in results.items():
            rows.append({"method": name, "system": system, "wall_s": round(statistics.median(times[name]), 3),
                         "images": len(x), "eps": round(eps, 6), "steps": steps, "step_size": round(step, 6),
                         "accuracy": round(float(np.mean(tf_backend.predict_labels(clf, x_adv) == y)), 4),
                         "last_iterate_accuracy": last_accuracy if name == "skinlib_pgd" else None,
                         "max_perturbation": round(float(np.abs(x_adv - x).max()), 6),
                         "speedup_vs_art": round(base / statistics.median(times[name]), 2),
                         "model": env["name"], "repeats": args.repeats})
    return rows


def bench_uap(env: dict, prof, args) -> list[dict]:
    from skinlib import attacks, tf_backend

    model = env["model"]
    clf = tf_backend.art_classifier(model, compiled_gradient=False)  # ART as it ships: the baseline
    u = prof.uap
    n_train = min(args.uap_train or u.n_train_images, len(env["x_tr"]))
    x_tr, y_tr = env["x_tr"][:n_train], env["y_tr"][:n_train]
    x_te, y_te = env["x_te"], env["y_te"]
    budget = attacks.uap_budget(x_tr, u.norm, eps=u.eps, zeta=u.zeta if u.norm == "2" else None)
    clean_te = tf_backend.predict_labels(model, x_te)

    def scores(v):
        adv = tf_backend.predict_labels(model, attacks.apply_perturbation(x_te, v))
        return attacks.flip_rate(clean_te, adv), float(np.mean(adv != y_te))

    rows = []

    def add_row(method: str, v, wall: float, schedule: str, stopped_early: bool, compiled: str) -> None:
        fr, er = scores(v)
        rows.append({"method": method, "wall_s": wall, "train_images": n_train, "test_flip_rate": fr,
                     "test_error_rate": er, "test_images": len(x_te), "eps": budget, "norm": u.norm,
                     "schedule": schedule, "stopped_early": stopped_early, "compiled": compiled})

    def compiled(info) -> str:
        return "cold" if info["traced"] else "warm"

    max_iter = args.art_passes or u.max_iter
    print(f"ART UAP: {n_train} images x {max_iter} passes (this is the slow one) ...", file=sys.stderr)
    v_art, info_art = attacks.uap_art(clf, x_tr, y_tr, norm=u.norm, eps=budget, max_iter=max_iter,
                                      delta=args.art_delta, seed=prof.seed)
    wall_art = info_art["wall_s"]
    add_row("uap_art", v_art, wall_art,
            f"{max_iter} passes max, delta={args.art_delta}, converged={info_art['converged']}",
            info_art["converged"], "cold")
    fr_art = rows[0]["test_flip_rate"]
    print(f"  {wall_art:.1f} s, test flip rate {fr_art:.3f}", file=sys.stderr)
    # The same ART attack on skinlib's classifier, whose loss gradient is compiled (what the
    # experiments run): the same perturbation is expected, in less time.
    v_c, info_c = attacks.uap_art(tf_backend.art_classifier(model), x_tr, y_tr, norm=u.norm, eps=budget,
                                  max_iter=max_iter, delta=args.art_delta, seed=prof.seed)
    add_row("uap_art_compiled_gradient", v_c, info_c["wall_s"],
            f"{max_iter} passes max, delta={args.art_delta}, converged={info_c['converged']}, "
            f"same perturbation as ART's stock run: {bool(np.array_equal(v_c, v_art))}", info_c["converged"], "cold")

    lr = args.fast_lr if args.fast_lr is not None else u.fast_learning_rate
    warmup = args.fast_warmup if args.fast_warmup is not None else u.fast_warmup_steps
    common = dict(norm=u.norm, eps=budget, batch_size=u.fast_batch_size, learning_rate=lr, loss=u.fast_loss,
                  beta=u.fast_beta, seed=prof.seed, warmup_steps=warmup)
    # The labels whose loss the fast UAP climbs; `predicted` (the profiles' setting) passes
    # None, and uap_fast predicts each image's label inside its timed run when first drawn.
    y_fit = y_tr if u.fast_labels == "true" else None
    how = f"{u.fast_loss} loss" + (f" (beta {u.fast_beta})" if u.fast_loss == "clipped" else "") + \
        f" of the {u.fast_labels} labels, batch {u.fast_batch_size}, lr {lr}, {warmup} warm-up steps"

    # Probe (not timed): the first step at which the fast UAP's TEST flip rate reaches ART's.
    _, probe = attacks.uap_fast(model, x_tr, y_fit, epochs=args.max_fast_epochs, x_monitor=x_te,
                                stop_at=max(fr_art, 1e-6), check_every=1, **common)
    n_steps = probe["steps"] if probe["stopped_early"] else None
    print(f"  fast UAP reaches ART's test flip rate after {n_steps} steps (probe)", file=sys.stderr)
    if n_steps is not None:
        # Timed: fresh runs of exactly that many steps (same seed, same trajectory), without
        # any monitoring; "cold" traces the compiled step again first, "warm" reuses it. The
        # median of --repeats runs of each (a cold run is a fraction of a second).
        for label in ("cold", "warm"):
            walls = []
            for _ in range(args.repeats):
                if label == "cold":
                    tf_backend.forget_compiled(model)
                v, info = attacks.uap_fast(model, x_tr, y_fit, epochs=args.max_fast_epochs, max_steps=n_steps,
                                           **common)
                walls.append(info["wall_s"])
            add_row(f"uap_fast_to_art_rate_{label}", v, float(np.median(walls)),
                    f"{n_steps} steps (first step whose test flip rate >= ART's), median of {args.repeats} runs "
                    f"({min(walls):.3f}-{max(walls):.3f} s), {how}", True, compiled(info))

    v, info = attacks.uap_fast(model, x_tr, y_fit, epochs=u.fast_epochs, **common)
    per_epoch = f"{u.fast_epochs} epochs x {info['steps'] // u.fast_epochs} steps"
    add_row("uap_fast", v, info["wall_s"], f"{per_epoch}, {how}", False, compiled(info))
    # Ablation: the same schedule with the plain cross-entropy of the true labels.
    v, info = attacks.uap_fast(model, x_tr, y_tr, epochs=u.fast_epochs, **{**common, "loss": "ce"})
    add_row("uap_fast_plain_loss", v, info["wall_s"],
            f"{per_epoch}, ce loss of the true labels, batch {u.fast_batch_size}, lr {lr}, {warmup} warm-up steps",
            False, compiled(info))
    for r in rows:
        r["speedup_vs_art"] = round(wall_art / r["wall_s"], 1)
        r["reaches_art"] = r["test_flip_rate"] >= fr_art - 1e-9
        r["model"] = env["name"]
        r["wall_s"] = round(r["wall_s"], 3)
        r["test_flip_rate"] = round(r["test_flip_rate"], 4)
        r["test_error_rate"] = round(r["test_error_rate"], 4)
        r["eps"] = round(r["eps"], 6)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--data-dir", default=None, help="the dataset folder (else the profile's or SKINLIB_DATA_DIR)")
    ap.add_argument("--model", default="profile", help="'profile' (its first model), a registry name, or 'toy'")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--train-epochs", type=int, default=12, help="training epochs (the default profile's 12)")
    ap.add_argument("--fgsm-images", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--uap-train", type=int, default=None, help="ART/fast UAP training images (profile's)")
    ap.add_argument("--art-passes", type=int, default=None, help="ART max_iter (profile's uap.max_iter)")
    ap.add_argument("--art-delta", type=float, nargs="+", default=[0.2, 0.0],
                    help="ART stop criteria, one ART run each (default: ART's own 0.2, what exp2.2 runs, and 0, "
                         "every pass); the fast UAP's ratio is given against each")
    ap.add_argument("--max-fast-epochs", type=int, default=50)
    ap.add_argument("--fast-lr", type=float, default=None, help="fast UAP step size (profile's uap.fast_learning_rate)")
    ap.add_argument("--fast-warmup", type=int, default=None,
                    help="fast UAP steps of the whole budget first (profile's uap.fast_warmup_steps)")
    ap.add_argument("--save-model", type=Path, default=None, help="save the trained model here (.keras)")
    ap.add_argument("--load-model", type=Path, default=None, help="reuse a model saved by --save-model")
    ap.add_argument("--pgd-images", type=int, default=512)
    ap.add_argument("--pgd-steps", type=int, default=None, help="PGD steps (profile's adaptive.steps)")
    ap.add_argument("--skip", choices=["fgsm", "pgd", "uap"], action="append", default=[])
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)

    prof = _profile(args.profile, args.data_dir)
    env = setup(prof, args)
    from skinlib import tf_backend

    acc = float(np.mean(tf_backend.predict_labels(env["model"], env["x_te"]) == env["y_te"]))
    print(f"model {env['name']}: clean test accuracy {acc:.3f}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    if "fgsm" not in args.skip:
        rows = bench_fgsm(env, list(prof.fgsm.eps_sweep), args.repeats, args.fgsm_images)
        write_rows(args.out_dir / "fgsm.csv", [{"profile": prof.name, **r} for r in rows], "profile")
        for r in rows:
            print(f"{r['method']:24s} {r['wall_s']:8.3f} s  x{r['speedup_vs_art']:.2f}  identical {r['identical']}")
    if "pgd" not in args.skip:
        rows = bench_pgd(env, prof, args)
        write_rows(args.out_dir / "pgd.csv", [{"profile": prof.name, **r} for r in rows], "profile")
        for r in rows:
            print(f"{r['method']:12s} {r['system']:10s} {r['wall_s']:8.3f} s  accuracy {r['accuracy']:.3f}  "
                  f"x{r['speedup_vs_art']:.2f}")
    if "uap" not in args.skip:
        rows = []
        for delta in args.art_delta:
            one = bench_uap(env, prof, argparse.Namespace(**{**vars(args), "art_delta": delta}))
            rows += [{"art_delta": delta, **r} for r in one]
        write_rows(args.out_dir / "uap.csv", [{"profile": prof.name, **r} for r in rows], "profile")
        for r in rows:
            print(f"{r['method']:26s} {r['wall_s']:9.2f} s  flip {r['test_flip_rate']:.3f}  err "
                  f"{r['test_error_rate']:.3f}  x{r['speedup_vs_art']:.1f}  reaches ART: {r['reaches_art']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
