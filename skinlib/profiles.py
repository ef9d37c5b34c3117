"""Profiles: named YAML parameter sets (``profiles/<name>.yml``), validated on load.

An unknown key, a value of the wrong type or out of its range is a
:class:`~skinlib.errors.SkinlibError` naming the file, the key and what is allowed. An
empty file is an error; a profile without ``name`` is named after its file. Papermill
parameters override single values with dotted keys (``train.epochs=3``) through
:func:`apply_overrides`.

Seeds: ``seeds`` lists the training seeds of a run (default ``[seed]``); ``seed`` is
its first one, the *primary* seed, whose results live in ``results/<profile>/`` and
are the ones the book shows; every other seed ``K`` writes ``results/<profile>/seed-K/``
(see :func:`skinlib.pipeline.seed_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from skinlib.errors import SkinlibError
from skinlib.paths import PROFILES_DIR  # noqa: F401  (the project folder's profiles/, see skinlib.paths)


@dataclass
class DataConfig:
    source: str = "synthetic"
    data_dir: Optional[str] = None
    image_size: int = 64
    n_images: Optional[int] = 3000  # synthetic only
    split: str = "by_lesion"  # or by_image
    leakage_check: bool = False  # exp0 also trains its first model on the other split (the leakage figure)
    fractions: list[float] = field(default_factory=lambda: [0.70, 0.175, 0.125])


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    class_weights: bool = True
    class_weight_power: float = 1.0  # 1: inverse frequency (the thesis); 0.5: its square root
    augment: bool = True
    fine_tune_epochs: int = 0  # imagenet transfer learning: epochs with the base unfrozen
    fine_tune_learning_rate: float = 1e-5
    weights: Optional[str] = None  # "imagenet" or None
    jit_compile: bool = True
    distribute: Optional[str] = None  # "mirrored": tf.distribute.MirroredStrategy over the node's GPUs; None: one device


@dataclass
class PoisoningConfig:
    source_class: str = "nv"
    target_class: str = "bkl"
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.15, 0.20, 0.30, 0.45, 0.60])
    epochs: Optional[int] = None  # None: the same schedule as exp0


@dataclass
class FGSMConfig:
    eps: float = 2 / 255
    eps_sweep: list[float] = field(default_factory=lambda: [0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255])
    pgd_steps: int = 10
    n_examples: int = 6


@dataclass
class UAPConfig:
    norm: str = "inf"  # "inf" or "2"
    eps: float = 8 / 255  # L-inf budget
    zeta: float = 0.04  # L2 budget as a share of the mean image norm (Hirano et al.)
    max_iter: int = 5  # ART passes over the training images
    n_train_images: int = 1000
    fast_batch_size: int = 64
    fast_epochs: int = 5
    fast_learning_rate: float = 0.005
    fast_warmup_steps: int = 2  # the first steps take the whole budget as their size, then fast_learning_rate
    fast_loss: str = "clipped"  # "ce", or "clipped": each image's loss capped at fast_beta (Shafahi et al.)
    fast_beta: float = 4.0
    fast_labels: str = "predicted"  # climb the loss of the "true" labels or of the clean "predicted" ones


@dataclass
class RetrainingConfig:
    rounds: int = 5
    epochs_per_round: int = 5
    fraction: float = 0.5


@dataclass
class LLTConfig:
    quality: int = 75
    quality_sweep: list[int] = field(default_factory=lambda: [20, 50, 75, 90])
    flip: str = "horizontal"


@dataclass
class AdaptiveConfig:
    """Experiment 4: the adaptive evaluation of every defence (attacks at ``eps``, L-inf)."""

    eps: float = 2 / 255
    models: Optional[list[str]] = None  # the profile's models it evaluates (None: all of them)
    eps_curve: list[float] = field(default_factory=lambda: [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255])
    n_images: Optional[int] = None  # the seeded test subset every adaptive attack runs on (None: the whole test set)
    steps: int = 20  # PGD and APGD iterations of the headline rows
    restarts: int = 1
    step_size: float = 0.25  # PGD step, as a share of eps
    convergence_images: int = 200  # subset of the convergence curves (steps and restarts x the headline's)
    convergence_factor: int = 2
    curve_images: int = 200  # subset of the eps curves
    curve_steps: int = 10
    lowfreq_factor: int = 4  # the low-frequency attack's grid: image size / factor
    codec_fit_images: int = 200  # training images the codec stand-in is fitted on
    square_queries: int = 500  # per image
    square_images: Optional[int] = None  # Square's seeded subset of the adaptive subset (None: all of it)
    square_p_init: float = 0.3  # Square's initial share of the image a square update covers
    surrogate_seed: int = 1000  # added to the profile's seed: the independently trained surrogate
    at_epochs: int = 4  # PGD adversarial training: at most this many epochs (fewer if it plateaus)
    at_steps: int = 5
    at_learning_rate: float = 0.0005
    at_val_images: int = 512


@dataclass
class Profile:
    name: str = "default"
    description: str = ""
    seed: int = 0
    seeds: Optional[list[int]] = None  # None: [seed]; seeds[0] is the primary seed
    models: list[str] = field(default_factory=lambda: ["resnet_small", "inception_small"])
    bootstrap: int = 1000
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    poisoning: PoisoningConfig = field(default_factory=PoisoningConfig)
    fgsm: FGSMConfig = field(default_factory=FGSMConfig)
    uap: UAPConfig = field(default_factory=UAPConfig)
    retraining: RetrainingConfig = field(default_factory=RetrainingConfig)
    llt: LLTConfig = field(default_factory=LLTConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)

    #: The file this profile was read from (not a parameter: not in :meth:`to_dict`).
    origin: Optional[str] = field(default=None, repr=False, compare=False, metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("origin", None)
        return d

    @property
    def primary_seed(self) -> int:
        """The first of ``seeds``: its results are ``results/<profile>/`` itself."""
        return (self.seeds or [self.seed])[0]


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """Check (and lightly coerce) one value against its type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_value(key, value, args[0])
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise SkinlibError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SkinlibError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SkinlibError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SkinlibError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SkinlibError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise SkinlibError(f"{prefix or 'profile'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in valid:
            raise SkinlibError(f"{full}: unknown key; valid keys: {', '.join(valid)}")
        kwargs[key] = _check_value(full, value, hints[key])
    return cls(**kwargs)


def _validate(profile: Profile, origin: str) -> Profile:
    from skinlib.labels import CLASSES

    checks = [
        (profile.data.split in ("by_lesion", "by_image"), "data.split", "must be by_lesion or by_image"),
        (profile.data.image_size >= 16, "data.image_size", "must be at least 16"),
        (len(profile.data.fractions) == 3 and abs(sum(profile.data.fractions) - 1) < 1e-6
         and all(0 < f <= 1 for f in profile.data.fractions), "data.fractions",
         "must be three shares in (0, 1] summing to 1"),
        (profile.data.n_images is None or profile.data.n_images >= 1, "data.n_images", "must be at least 1"),
        (profile.train.epochs >= 1, "train.epochs", "must be at least 1"),
        (profile.train.batch_size >= 1, "train.batch_size", "must be at least 1"),
        (profile.train.weights in (None, "imagenet"), "train.weights", "must be imagenet or null"),
        (profile.train.distribute in (None, "mirrored"), "train.distribute",
         f"must be mirrored or null (one device), got {profile.train.distribute!r}"),
        (profile.poisoning.source_class in CLASSES, "poisoning.source_class", f"must be one of {CLASSES}"),
        (profile.poisoning.target_class in CLASSES, "poisoning.target_class", f"must be one of {CLASSES}"),
        (all(0 <= f <= 1 for f in profile.poisoning.fractions), "poisoning.fractions", "must lie in [0, 1]"),
        (0 < profile.fgsm.eps <= 1, "fgsm.eps", "must lie in (0, 1]"),
        (len(profile.fgsm.eps_sweep) >= 1 and all(0 < e <= 1 for e in profile.fgsm.eps_sweep), "fgsm.eps_sweep",
         "must list values in (0, 1]"),
        (profile.fgsm.pgd_steps >= 1, "fgsm.pgd_steps", "must be at least 1"),
        (0 < profile.uap.eps <= 1, "uap.eps", "must lie in (0, 1]"),
        (0 < profile.uap.zeta <= 1, "uap.zeta", "must lie in (0, 1]"),
        (profile.uap.max_iter >= 1, "uap.max_iter", "must be at least 1"),
        (profile.uap.n_train_images >= 1, "uap.n_train_images", "must be at least 1"),
        (profile.retraining.rounds >= 1, "retraining.rounds", "must be at least 1"),
        (profile.retraining.epochs_per_round >= 1, "retraining.epochs_per_round", "must be at least 1"),
        (profile.train.learning_rate > 0, "train.learning_rate", "must be positive"),
        (profile.seed >= 0, "seed", "must be 0 or more"),
        (bool(profile.seeds) and all(s >= 0 for s in profile.seeds)
         and len(set(profile.seeds)) == len(profile.seeds), "seeds",
         "must list distinct integers 0 or more"),
        (profile.uap.norm in ("inf", "2"), "uap.norm", "must be inf or 2"),
        (profile.uap.fast_loss in ("ce", "clipped"), "uap.fast_loss", "must be ce or clipped"),
        (profile.uap.fast_beta > 0, "uap.fast_beta", "must be positive"),
        (profile.uap.fast_warmup_steps >= 0, "uap.fast_warmup_steps", "must be 0 or more"),
        (profile.uap.fast_labels in ("true", "predicted"), "uap.fast_labels", "must be true or predicted"),
        (0 < profile.retraining.fraction <= 1, "retraining.fraction", "must lie in (0, 1]"),
        (all(1 <= q <= 100 for q in [profile.llt.quality, *profile.llt.quality_sweep]), "llt.quality",
         "must lie in 1..100"),
        (profile.llt.flip in ("horizontal", "vertical", "none"), "llt.flip", "must be horizontal, vertical or none"),
        (0 < profile.adaptive.eps <= 1, "adaptive.eps", "must lie in (0, 1]"),
        (all(0 <= e <= 1 for e in profile.adaptive.eps_curve), "adaptive.eps_curve", "must lie in [0, 1]"),
        (profile.adaptive.n_images is None or profile.adaptive.n_images >= 1, "adaptive.n_images",
         "must be at least 1 or null"),
        (min(profile.adaptive.steps, profile.adaptive.restarts, profile.adaptive.convergence_factor,
             profile.adaptive.curve_steps, profile.adaptive.square_queries, profile.adaptive.at_epochs,
             profile.adaptive.at_steps, profile.adaptive.lowfreq_factor) >= 1, "adaptive",
         "steps, restarts, convergence_factor, curve_steps, square_queries, at_epochs, at_steps and "
         "lowfreq_factor must be at least 1"),
        (0 < profile.adaptive.step_size <= 1, "adaptive.step_size", "must lie in (0, 1] (a share of eps)"),
        (profile.adaptive.square_images is None or profile.adaptive.square_images >= 1, "adaptive.square_images",
         "must be at least 1 or null"),
        (0 < profile.adaptive.square_p_init <= 1, "adaptive.square_p_init", "must lie in (0, 1]"),
        (profile.bootstrap >= 0, "bootstrap", "must be 0 or more"),
        (len(profile.models) >= 1, "models", "must name at least one model"),
    ]
    for ok, key, what in checks:
        if not ok:
            raise SkinlibError(f"{origin}: {key} {what}")
    from skinlib.paths import safe_name

    safe_name(profile.name, f"{origin}: name")
    from skinlib.data import get_source
    from skinlib.models import MODELS

    get_source(profile.data.source)
    for m in profile.models:
        if m not in MODELS:
            raise SkinlibError(f"{origin}: models: unknown model {m!r}; valid: {', '.join(MODELS)}")
    for m in profile.adaptive.models or []:
        if m not in profile.models:
            raise SkinlibError(f"{origin}: adaptive.models: {m!r} is not one of the profile's models "
                               f"({', '.join(profile.models)})")
    return profile


def profile_path(name_or_path: str | Path) -> Path:
    """``profiles/<name>.yml`` for a bare name, else the path given."""
    p = Path(name_or_path)
    if p.suffix in (".yml", ".yaml"):
        return p
    if not p.name or p.name != str(name_or_path) or p.name.startswith("."):
        raise SkinlibError(f"--profile: {name_or_path!r} is not a profile name (use a name from profiles/ or a .yml path)")
    return PROFILES_DIR / f"{p.name}.yml"


def existing_profile_path(name_or_path: str | Path) -> Path:
    """:func:`profile_path`, checked to exist (a one-line error listing the profiles when not).

    Cheap (no Keras), so that the command line rejects a mistyped profile at once.
    """
    path = profile_path(name_or_path)
    if not path.is_file():
        names = sorted(q.stem for q in PROFILES_DIR.glob("*.yml"))
        raise SkinlibError(f"{path}: no such profile; available: {', '.join(names)}")
    return path


def load_profile(name_or_path: str | Path, overrides: Optional[dict[str, Any]] = None,
                 data_dir: Optional[str] = None) -> Profile:
    """Load and validate a profile; ``data_dir`` (or ``SKINLIB_DATA_DIR``) fills ``data.data_dir``."""
    path = existing_profile_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise SkinlibError(f"{path}: not valid YAML ({first})") from None
    if raw is None or raw == {}:
        raise SkinlibError(f"{path}: empty profile (give at least its name and models; see profiles/default.yml)")
    if isinstance(raw, dict):
        raw = dict(raw)
        raw.setdefault("name", path.stem)  # never silently "default"
        if raw.get("seeds") is not None and "seed" not in raw and isinstance(raw["seeds"], list) and raw["seeds"]:
            raw["seed"] = raw["seeds"][0]
    try:
        profile = _build(Profile, raw, "")
        if profile.seeds is None:
            profile.seeds = [profile.seed]
        elif profile.seeds and profile.seeds[0] != profile.seed:
            raise SkinlibError(f"seed: {profile.seed} is not the first of seeds {profile.seeds} "
                               "(the first seed is the one the book shows)")
        if overrides:
            profile = apply_overrides(profile, overrides)
    except SkinlibError as exc:
        raise SkinlibError(f"{path}: {exc}") from None
    profile.origin = str(path)
    env_dir = os.environ.get("SKINLIB_DATA_DIR")
    if data_dir is not None:
        profile.data.data_dir = str(data_dir)
    elif profile.data.data_dir is None and env_dir:
        profile.data.data_dir = env_dir
    return _validate(profile, str(path))


def apply_overrides(profile: Profile, overrides: dict[str, Any]) -> Profile:
    """A copy of ``profile`` with dotted keys (``train.epochs``) replaced, type-checked."""
    raw = profile.to_dict()
    for dotted, value in overrides.items():
        node = raw
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise SkinlibError(f"{dotted}: unknown key")
            node = node[part]
        if parts[-1] not in node:
            raise SkinlibError(f"{dotted}: unknown key; valid keys: {', '.join(node)}")
        node[parts[-1]] = value
    built = _build(Profile, raw, "")
    built.origin = profile.origin
    return built
