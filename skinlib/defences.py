"""Defences: adversarial retraining, low-level transformation (WebP + flip), both, and PGD adversarial training.

One registry, :data:`DEFENCES`, describes every defence (the names of DESIGN.md's
``defence`` column): ``retraining``, ``llt``, ``retraining+llt`` (the retrained model
behind the LLT preprocessor) and ``pgd_at`` (the reference: Madry et al.'s PGD training).

:class:`LowLevelTransformation` is an ART ``Preprocessor``: give it to
:func:`skinlib.tf_backend.art_classifier` (``preprocessing_defences=``) and the
classifier's predictions go through it, while attacks given that classifier get BPDA
gradients through :meth:`LowLevelTransformation.estimate_gradient` (white-box setting).
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from art.defences.preprocessor import Preprocessor
from PIL import Image

from skinlib.errors import SkinlibError

FLIPS = ("horizontal", "vertical", "none")


# ---------------------------------------------------------------------------- low-level transformation


def _to_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def webp_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """One uint8 RGB image ``(H, W, 3)`` encoded to lossy WebP at ``quality`` and decoded, in memory."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="WEBP", quality=int(quality))
    buf.seek(0)
    with Image.open(buf, formats=("WEBP",)) as im:
        im.load()
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def _flip(x: np.ndarray, flip: str) -> np.ndarray:
    """Flip a batch ``(N, H, W, C)`` (an involution: its own inverse and its own transpose)."""
    if flip == "horizontal":
        return x[:, :, ::-1]
    if flip == "vertical":
        return x[:, ::-1]
    return x


#: The parts of the LLT :func:`apply_llt_part` applies alone (for the ablation of experiment 3.2).
LLT_PARTS = ("flip", "webp", "both")


def apply_llt_part(x: np.ndarray, part: str, quality: int = 75, flip: str = "horizontal") -> np.ndarray:
    """One part of the LLT alone: ``"flip"`` (the 8-bit image flipped, no codec), ``"webp"``
    (the WebP round trip, no flip) or ``"both"`` (:func:`apply_llt`).

    Shape:
        - x: ``(N, S, S, 3)`` float32 in ``[0, 1]``; output: same shape, float32.

    Examples:
        >>> x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
        >>> bool(np.array_equal(apply_llt_part(x, "flip"), np.rint(x * 255)[:, :, ::-1] / 255))
        True
    """
    if part not in LLT_PARTS:
        raise SkinlibError(f"part: {part!r} is not one of {', '.join(LLT_PARTS)}")
    x = np.asarray(x, np.float32)
    if part == "flip":
        _check_llt(quality, flip, 1)
        return np.ascontiguousarray(_flip(_to_uint8(x), flip)).astype(np.float32) / 255.0
    return apply_llt(x, quality=quality, flip="none" if part == "webp" else flip)


def _webp_chunk(chunk: np.ndarray, quality: int) -> np.ndarray:
    return np.stack([webp_roundtrip(im, quality) for im in chunk]) if len(chunk) else chunk


def _n_workers(n_jobs: Optional[int]) -> int:
    if n_jobs is None or n_jobs == -1:
        return max(1, os.cpu_count() or 1)
    return int(n_jobs)


def apply_llt(x: np.ndarray, quality: int = 75, flip: str = "horizontal", n_jobs: Optional[int] = -1) -> np.ndarray:
    """Low-level transformation of a batch: WebP round trip at ``quality``, then ``flip``.

    Float input in ``[0, 1]`` is rounded to uint8 first (``rint(x * 255)``) and the output
    is float32 in ``[0, 1]`` (``/ 255``); uint8 input gives uint8 output. Images are
    encoded in parallel threads (``n_jobs``: -1 or ``None`` = every core, 1 = a plain loop):
    Pillow's WebP codec releases the GIL while it works (measured in
    ``benchmarks/bench_llt.py``).

    Shape:
        - x: ``(N, S, S, 3)``; output: same shape.

    Examples:
        >>> x_def = apply_llt(x_adv, quality=75, flip="horizontal")   # doctest: +SKIP
    """
    _check_llt(quality, flip, n_jobs)
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise SkinlibError(f"x: expected images of shape (N, S, S, 3), got {arr.shape}")
    as_uint8 = arr.dtype == np.uint8
    if not as_uint8 and arr.size and (float(arr.min()) < 0 or float(arr.max()) > 1):
        raise SkinlibError("x: float pixels must lie in [0, 1]")
    u8 = _to_uint8(arr)
    workers = min(_n_workers(n_jobs), max(1, len(u8)))
    if workers <= 1:
        out = _webp_chunk(u8, quality)
    else:
        chunks = np.array_split(u8, workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            out = np.concatenate(list(pool.map(_webp_chunk, chunks, [quality] * len(chunks))))
    out = np.ascontiguousarray(_flip(out, flip))
    return out if as_uint8 else (out.astype(np.float32) / 255.0)


def _check_llt(quality: Any, flip: Any, n_jobs: Any) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise SkinlibError(f"quality: expected an integer WebP quality in 1..100, got {quality!r}")
    if flip not in FLIPS:
        raise SkinlibError(f"flip: {flip!r} is not one of {', '.join(FLIPS)}")
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer))
                               or (n_jobs < 1 and n_jobs != -1)):
        raise SkinlibError(f"n_jobs: expected a positive integer, -1 or None, got {n_jobs!r}")


class LowLevelTransformation(Preprocessor):
    """Low-level transformation (LLT) defence: lossy WebP compression, then a flip.

    Before the classifier sees an image it is rounded to 8 bits, compressed to lossy WebP
    at ``quality`` and decoded (which smooths away small, high-frequency perturbations),
    then flipped (``horizontal``, ``vertical`` or ``none``), which moves the remaining
    perturbation away from the spatial positions it was crafted for. Applied at
    prediction only (``apply_fit=False, apply_predict=True``); images are processed in
    ``n_jobs`` parallel threads.

    Gradient (BPDA, Athalye et al. 2018): ``estimate_gradient`` treats the WebP round
    trip as the identity and differentiates the flip exactly (it flips the gradient
    back). So an attack given a classifier that wraps this defence is a white-box attack
    on the defended model.

    What it does NOT protect against: it is a gradient-obfuscation (input-transformation)
    defence, not a robust model. An adaptive white-box attacker who knows it is there
    attacks through it with BPDA (as above) or with expectation over transformations;
    the flip is known and exactly differentiable, and WebP is close to the identity on
    smooth images. Nor does it help against perturbations too large or too smooth for
    WebP to remove (e.g. low-frequency colour shifts), and it costs some clean accuracy.
    Use it for the grey-box setting of the thesis (attacker ignores the defence), and
    report white-box numbers beside it.

    | Paper link: https://doi.org/10.1002/int.22258 (Yin et al. 2020, "Defense against
      adversarial attacks by low-level image transformations", Int. J. Intell. Syst.
      35(10):1453-1466; no arXiv version could be confirmed)
    | BPDA: https://arxiv.org/abs/1802.00420

    Args:
        quality: WebP quality, 1..100 (lossy).
        flip: ``"horizontal"`` (the paper's and the thesis's), ``"vertical"`` or ``"none"``.
        n_jobs: threads (-1 or ``None``: every core; 1: a plain loop).

    Shape:
        - x: ``(N, S, S, 3)`` float in ``[0, 1]``; output: same shape, float32.

    Examples:
        >>> llt = LowLevelTransformation(quality=75, flip="horizontal")               # doctest: +SKIP
        >>> clf = art_classifier(model, preprocessing_defences=llt)                   # doctest: +SKIP
        >>> x_def, _ = llt(x)                                                         # doctest: +SKIP
    """

    params = ["quality", "flip", "n_jobs"]

    def __init__(self, quality: int = 75, flip: str = "horizontal", n_jobs: Optional[int] = -1,
                 apply_fit: bool = False, apply_predict: bool = True) -> None:
        super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.quality = quality
        self.flip = flip
        self.n_jobs = n_jobs
        self._check_params()

    def __call__(self, x: np.ndarray, y: Optional[Any] = None) -> tuple[np.ndarray, Optional[Any]]:
        """WebP round trip then flip of a batch; labels pass through unchanged.

        Float pixels are clipped to ``[0, 1]`` first, as encoding an image does: attacks
        hand the estimator ``x + perturbation`` before they clip it (ART's UAP does), so
        its inputs can step slightly out of range.
        """
        arr = np.asarray(x)
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0.0, 1.0)
        return apply_llt(arr, self.quality, self.flip, self.n_jobs), y

    def estimate_gradient(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """BPDA: identity for WebP, the exact (flip) transpose for the flip."""
        return np.ascontiguousarray(_flip(np.asarray(grad), self.flip))

    def tf_transform(self, gradient: str = "identity", gains: Optional[np.ndarray] = None) -> Callable[[Any], Any]:
        """This LLT as a TensorFlow BPDA op for compiled attacks (real WebP forward).

        ``gradient="identity"``: WebP's gradient is the identity (as in
        :meth:`estimate_gradient`); ``"codec"``: the codec stand-in with ``gains``
        (:func:`skinlib.tf_backend.fit_codec_gains`). See :func:`skinlib.tf_backend.llt_transform`.
        """
        from skinlib import tf_backend

        return tf_backend.llt_transform(self.quality, self.flip, gradient=gradient, gains=gains)

    def codec(self, x: np.ndarray) -> np.ndarray:
        """The WebP round trip alone (no flip), float32 in ``[0, 1]``: what the codec stand-in imitates."""
        return apply_llt(np.clip(np.asarray(x, np.float32), 0.0, 1.0), self.quality, "none", self.n_jobs)

    def fit(self, x: np.ndarray, y: Optional[np.ndarray] = None, **kwargs: Any) -> None:
        """No parameters to fit."""

    def _check_params(self) -> None:
        _check_llt(self.quality, self.flip, self.n_jobs)

    def __repr__(self) -> str:
        return f"LowLevelTransformation(quality={self.quality}, flip={self.flip!r}, n_jobs={self.n_jobs})"


# ---------------------------------------------------------------------------- adversarial retraining

#: ``perturb_fn(x_sel, y_sel) -> x_adv`` (float32 in [0, 1], same shape)
PerturbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def retraining_round_set(x_pool: np.ndarray, y_pool: np.ndarray, fraction: float, perturb_fn: PerturbFn,
                         seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One round's training set of adversarial retraining (the thesis's recipe).

    Draws ``round(fraction * n)`` images of the pool (training + validation images) at
    random without replacement, perturbs them with ``perturb_fn(x_sel, y_sel)`` and returns
    the whole clean pool followed by the adversarial copies, which keep their TRUE labels.

    The adversarial copies take the pool's dtype: with a uint8 pool they are rounded to
    uint8 (like adversarial images saved to disk, as the thesis did; exact for FGSM with
    eps a multiple of 1/255); with a float pool they stay float32 in ``[0, 1]``.

    Shape:
        - x_pool: ``(n, S, S, 3)``; y_pool: ``(n,)``.
        - outputs: x_aug ``(n + k, S, S, 3)``, y_aug ``(n + k,)``, chosen_idx ``(k,)`` sorted,
          with ``k = round(fraction * n)``.

    Examples:
        >>> x_aug, y_aug, idx = retraining_round_set(x, y, 0.5, perturb, seed=0)   # doctest: +SKIP
    """
    x_pool = np.asarray(x_pool)
    y_pool = np.asarray(y_pool)
    n = len(x_pool)
    if len(y_pool) != n:
        raise SkinlibError(f"y_pool: {len(y_pool)} labels for {n} images")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise SkinlibError(f"fraction: expected a share in (0, 1], got {fraction!r}")
    k = int(round(fraction * n))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, np.int64)
    if k == 0:
        return x_pool.copy(), y_pool.copy(), idx
    x_sel = x_pool[idx]
    x_in = x_sel.astype(np.float32) / 255.0 if x_sel.dtype == np.uint8 else x_sel.astype(np.float32)
    x_adv = np.asarray(perturb_fn(x_in, y_pool[idx]))
    if x_adv.shape != x_sel.shape:
        raise SkinlibError(f"perturb_fn: returned shape {x_adv.shape}, expected {x_sel.shape}")
    if x_pool.dtype == np.uint8:
        x_adv = _to_uint8(np.clip(x_adv, 0.0, 1.0))
    else:
        x_adv = np.clip(x_adv, 0.0, 1.0).astype(x_pool.dtype)
    return np.concatenate([x_pool, x_adv]), np.concatenate([y_pool, y_pool[idx]]), idx


def adversarial_retraining(model: Any, x_pool: np.ndarray, y_pool: np.ndarray, *, rounds: int,
                           epochs_per_round: int, fraction: float,
                           make_perturb_fn: Callable[[Any], PerturbFn],
                           train_fn: Callable[[Any, np.ndarray, np.ndarray, int, int], None], seed: int,
                           on_round: Optional[Callable[[int, np.ndarray], None]] = None) -> Any:
    """Adversarial retraining after the thesis: ``rounds`` rounds of perturb-and-retrain.

    Each round ``r``: ``perturb_fn = make_perturb_fn(model)`` (perturbations are recomputed
    with the CURRENT, already retrained, model), the round's set is built with
    :func:`retraining_round_set` (seed ``seed + r``), and ``train_fn(model, x_aug, y_aug,
    epochs_per_round, r)`` continues training the same model in place. The thesis ran 5
    rounds x 5 epochs with ``fraction=0.5`` (25 epochs). ``on_round(r, chosen_idx)`` is an
    optional progress hook.

    | Paper link: https://arxiv.org/abs/1412.6572 (adversarial training, Goodfellow et al.)

    Returns:
        the retrained model (the same object).

    Examples:
        >>> model = adversarial_retraining(model, x, y, rounds=5, epochs_per_round=5, fraction=0.5,
        ...     make_perturb_fn=fgsm_perturber(2/255), train_fn=my_train, seed=0)   # doctest: +SKIP
    """
    for name, value in (("rounds", rounds), ("epochs_per_round", epochs_per_round)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SkinlibError(f"{name}: expected a positive integer, got {value!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise SkinlibError(f"fraction: expected a share in (0, 1], got {fraction!r}")
    for r in range(int(rounds)):
        perturb_fn = make_perturb_fn(model)
        x_aug, y_aug, idx = retraining_round_set(x_pool, y_pool, fraction, perturb_fn, seed + r)
        train_fn(model, x_aug, y_aug, int(epochs_per_round), r)
        if on_round is not None:
            on_round(r, idx)
    return model


def fgsm_perturber(eps: float, batch_size: int = 64) -> Callable[[Any], PerturbFn]:
    """``make_perturb_fn`` for FGSM at ``eps`` on the current model (for :func:`adversarial_retraining`)."""
    from skinlib import attacks, tf_backend

    def make(model: Any) -> PerturbFn:
        clf = tf_backend.art_classifier(model)
        return lambda x, y: attacks.fgsm(clf, x, y, [eps], batch_size=batch_size)[float(eps)]

    return make


def uap_perturber(norm: str, eps: float, method: str = "uap_fast", seed: int = 0,
                  **kwargs: Any) -> Callable[[Any], PerturbFn]:
    """``make_perturb_fn`` adding one universal perturbation, fitted on the round's images with
    the current model (``method``: ``uap_fast`` or ``uap_art``; ``kwargs`` go to it)."""
    from skinlib import attacks, tf_backend

    if method not in ("uap_fast", "uap_art"):
        raise SkinlibError(f"method: {method!r} is not uap_fast or uap_art")

    def make(model: Any) -> PerturbFn:
        def perturb(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            if method == "uap_fast":
                v, _ = attacks.uap_fast(model, x, y, norm=norm, eps=eps, seed=seed, **kwargs)
            else:
                v, _ = attacks.uap_art(tf_backend.art_classifier(model), x, y, norm=norm, eps=eps, seed=seed,
                                       **kwargs)
            return attacks.apply_perturbation(x, v)

        return perturb

    return make


# ---------------------------------------------------------------------------- PGD adversarial training


def pgd_adversarial_training(model: Any, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
                             eps: float, steps: int, step_size: float, max_epochs: int, batch_size: int,
                             learning_rate: float, seed: int, class_weight: Optional[dict[int, float]] = None,
                             val_images: int = 512, val_steps: int = 10, patience: int = 2) -> dict[str, list[float]]:
    """PGD adversarial training (Madry et al. 2018), fine-tuning ``model`` in place.

    Every minibatch is replaced by its PGD adversarial examples (``steps`` signed steps of
    ``step_size`` from a uniform random start in the L-inf ball of radius ``eps``, last
    iterate) before the gradient step (Adam, ``learning_rate``, class weights as sample
    weights). After each epoch the accuracy under PGD-``val_steps`` on the first
    ``val_images`` validation images is measured; the weights kept are the best epoch's,
    and training stops when it has not risen for ``patience`` epochs or after
    ``max_epochs``. The history says which (``stopped``: ``plateau`` or ``budget``).

    Unlike the thesis's retraining (a fixed set of FGSM/UAP copies, Goodfellow et al.), the
    examples are recomputed against the current weights at every step: the recipe known to
    give robustness that survives adaptive attacks, at a cost in clean accuracy.

    | Paper link: https://arxiv.org/abs/1706.06083

    Shape:
        - train, val: ``(x, y)`` with x ``(N, S, S, 3)`` uint8 and y ``(N,)`` int.

    Examples:
        >>> hist = pgd_adversarial_training(model, (x, y), (xv, yv), eps=2/255, steps=5, step_size=0.5/255,
        ...                                 max_epochs=5, batch_size=64, learning_rate=3e-4, seed=0)  # doctest: +SKIP
    """
    import keras

    from skinlib import tf_backend

    for name, value in (("steps", steps), ("max_epochs", max_epochs), ("batch_size", batch_size),
                        ("patience", patience), ("val_steps", val_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SkinlibError(f"{name}: expected a positive integer, got {value!r}")
    if not 0 < float(eps) <= 1 or not float(step_size) > 0:
        raise SkinlibError(f"eps/step_size: expected 0 < eps <= 1 and a positive step, got {eps!r}, {step_size!r}")
    xt, yt = np.asarray(train[0]), np.asarray(train[1], np.int64)
    xv = np.asarray(val[0][:val_images], np.float32) / 255.0
    yv = np.asarray(val[1][:val_images], np.int64)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    weights = np.ones(7, np.float32)
    if class_weight:
        for k, v in class_weight.items():
            weights[int(k)] = float(v)

    def robust_accuracy() -> tuple[float, float]:
        x_adv, first = tf_backend.iterated_attack(model, xv, yv, eps=eps, steps=val_steps, step_size=eps / 4,
                                                  seed=seed)
        clean = tf_backend.predict_labels(model, xv)
        return float(np.mean(first < 0)), float(np.mean(clean == yv))

    history: dict[str, list[float]] = {"epoch": [0], "loss": [float("nan")]}
    rob, cln = robust_accuracy()
    history["val_pgd_accuracy"], history["val_accuracy"] = [rob], [cln]
    best, best_weights, since = rob, model.get_weights(), 0
    stopped = "budget"
    for epoch in range(1, max_epochs + 1):
        perm = rng.permutation(len(xt))
        losses = []
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            xb = xt[idx].astype(np.float32) / 255.0
            x_adv = tf_backend.pgd_last_iterate(model, xb, yt[idx], eps=eps, steps=steps, step_size=step_size,
                                                rng=rng)
            losses.append(float(np.ravel(model.train_on_batch(x_adv, yt[idx], sample_weight=weights[yt[idx]]))[0]))
        rob, cln = robust_accuracy()
        for key, value in (("epoch", epoch), ("loss", float(np.mean(losses))), ("val_pgd_accuracy", rob),
                           ("val_accuracy", cln)):
            history[key].append(value)
        if rob > best:
            best, best_weights, since = rob, model.get_weights(), 0
        else:
            since += 1
            if since >= patience:
                stopped = "plateau"
                break
    model.set_weights(best_weights)
    history["stopped"] = [stopped]  # type: ignore[list-item]
    history["best_val_pgd_accuracy"] = [best]
    return history


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DefenceInfo:
    """One entry of :data:`DEFENCES`."""

    name: str
    description: str
    paper: str
    retrains: bool
    preprocessor: bool


DEFENCES: dict[str, DefenceInfo] = {
    "retraining": DefenceInfo(
        "retraining", "Adversarial retraining: rounds of retraining on the clean pool plus adversarial copies "
        "(FGSM or UAP, with true labels) of a random share of it, recomputed with the current model.",
        "https://arxiv.org/abs/1412.6572", retrains=True, preprocessor=False),
    "llt": DefenceInfo(
        "llt", "Low-level transformation: WebP compression then a flip before the classifier (a preprocessor; "
        "BPDA gradients for white-box attacks).", "https://doi.org/10.1002/int.22258",
        retrains=False, preprocessor=True),
    "retraining+llt": DefenceInfo(
        "retraining+llt", "Both: the adversarially retrained model behind the low-level transformation.",
        "https://doi.org/10.1002/int.22258", retrains=True, preprocessor=True),
    "pgd_at": DefenceInfo(
        "pgd_at", "PGD adversarial training (Madry et al.): fine-tuning on PGD examples recomputed at every step; "
        "the reference defence known to hold against adaptive attacks.", "https://arxiv.org/abs/1706.06083",
        retrains=True, preprocessor=False),
}


def get_defence(name: str) -> DefenceInfo:
    """The :data:`DEFENCES` entry of ``name``; an unknown name is a :class:`SkinlibError`."""
    try:
        return DEFENCES[name]
    except KeyError:
        raise SkinlibError(f"defence: unknown defence {name!r}; valid: {', '.join(DEFENCES)}") from None
