"""The run context a notebook opens: profile, data, split, cached models, results.

A notebook's first code cell is ``run = open_run(profile, data_dir=..., results_dir=...,
overrides={...})``; everything else it shows comes from calls on ``run`` and on the
experiment functions of :mod:`skinlib.experiments`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from skinlib import data as data_module
from skinlib import split as split_module
from skinlib.data import Dataset, load_dataset
from skinlib.errors import SkinlibError
from skinlib.paths import cache_root, results_dir as default_results_dir
from skinlib.profiles import Profile, load_profile
from skinlib.steps import StepCache


@dataclass
class Run:
    """One profile's data, split, step cache and the results rows being collected."""

    profile: Profile
    results_dir: Path
    dataset: Dataset
    splits: dict[str, np.ndarray]
    cache: StepCache
    rows: list[dict[str, Any]] = field(default_factory=list)

    # -- data ---------------------------------------------------------------------------
    def x(self, part: str) -> np.ndarray:
        """uint8 images of split ``part`` (train, val, test)."""
        return self.dataset.images[self.splits[part]]

    def y(self, part: str) -> np.ndarray:
        return self.dataset.labels[self.splits[part]]

    def x01(self, part: str) -> np.ndarray:
        """float32 images in [0, 1] of split ``part`` (the attacks' pixel space)."""
        return self.x(part).astype(np.float32) / 255.0

    @property
    def data_key(self) -> dict[str, Any]:
        """What identifies the data and split in step keys."""
        d = self.profile.data
        key = {"source": d.source, "image_size": d.image_size, "split": d.split,
               "fractions": d.fractions, "seed": self.profile.seed}
        if d.source == "synthetic":
            key["n_images"] = d.n_images
        else:
            key["data_dir"] = str(Path(d.data_dir).resolve()) if d.data_dir else None
            key["n_images_found"] = len(self.dataset)
        return key

    @property
    def is_synthetic(self) -> bool:
        return self.profile.data.source == "synthetic"

    # -- models ---------------------------------------------------------------------------
    def classifier(self, model_name: str, *, train_labels: Optional[np.ndarray] = None, tag: str = "clean",
                   epochs: Optional[int] = None, seed: Optional[int] = None):
        """The model ``model_name`` trained on this run's training split (cached step).

        ``train_labels`` replaces the training labels (label-flip poisoning); ``tag`` and
        ``epochs`` name and size the schedule; ``seed`` (default: the profile's) seeds the
        weights and the data order, e.g. for an independently trained surrogate.
        Returns ``(model, history)``.
        """
        from skinlib import models

        labels = self.y("train") if train_labels is None else np.asarray(train_labels)
        params = {"step": "train", "model": model_name, "data": self.data_key, "train": vars(self.profile.train),
                  "tag": tag, "epochs": epochs or self.profile.train.epochs,
                  "labels_sha": hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest()[:16]}
        model_seed = self.profile.seed if seed is None else int(seed)
        if seed is not None and model_seed != self.profile.seed:
            params["model_seed"] = model_seed  # absent for the profile's own seed: its keys stay as they were

        def compute(folder: Path) -> None:
            model = models.build_model(model_name, self.profile.data.image_size, weights=self.profile.train.weights,
                                       seed=model_seed)
            cfg = self.profile.train
            weights = split_module.class_weights(labels, power=cfg.class_weight_power) if cfg.class_weights else None
            models.train_model(model, (self.x("train"), labels), (self.x("val"), self.y("val")),
                               self.profile.train, folder / "work", class_weight=weights,
                               seed=model_seed, epochs=epochs, verbose=0)
            models.save_model(model, folder / "model.keras")
            history = folder / "work" / "history.json"
            if history.is_file():
                os.replace(history, folder / "history.json")
            models.discard_checkpoints(folder / "work")

        folder = self.cache.run("model", params, compute, modules=self._code_modules())
        return self.load_step_model(folder)

    def load_step_model(self, folder: Path):
        from skinlib import models

        history_path = folder / "history.json"
        history = json.loads(history_path.read_text()) if history_path.is_file() else {}
        return models.load_model(folder / "model.keras"), history

    def _code_modules(self) -> list:
        from skinlib import metrics, models

        mods = [models, metrics, split_module, data_module]
        if self.is_synthetic:
            from skinlib.data import synthetic

            mods.append(synthetic)
        return mods

    # -- results ---------------------------------------------------------------------------
    def test_groups(self, index: Optional[np.ndarray] = None) -> np.ndarray:
        """Lesion id of each test image, in the order of ``x("test")`` and ``y("test")``;
        ``index`` (into the test split) selects a subset."""
        groups = self.dataset.lesion_ids[self.splits["test"]]
        return groups if index is None else groups[np.asarray(index)]

    def _test_groups_for(self, y_true: np.ndarray, groups: Optional[np.ndarray]) -> np.ndarray:
        """The lesion ids the bootstrap resamples for test labels ``y_true``.

        Without ``groups``, ``y_true`` must be the test split's labels (evaluation is on the
        test split); a caller scoring a subset passes ``groups=run.test_groups(subset)``.
        """
        y = np.asarray(y_true)
        if groups is not None:
            g = np.asarray(groups)
            if g.shape != y.shape:
                raise SkinlibError(f"groups: {g.size} lesion ids for {y.size} labels")
            return g
        test = self.y("test")
        if y.shape != test.shape or not np.array_equal(y, test):
            raise SkinlibError(f"y_true: {y.size} labels that are not the test split's {test.size}; predictions "
                               "are scored on the test split (for a subset pass groups=run.test_groups(subset))")
        return self.test_groups()

    def evaluate(self, y_true: np.ndarray, y_pred: np.ndarray, *, experiment: str, model: str,
                 attack: str = "none", defence: str = "none", setting: str = "clean", param: str = "",
                 y_pred_clean: Optional[np.ndarray] = None, groups: Optional[np.ndarray] = None,
                 ) -> list[dict[str, Any]]:
        """Every metric of DESIGN.md for one case, as tidy rows (also kept in ``self.rows``).

        Intervals resample the test split's lesions (:meth:`test_groups`); ``groups``
        replaces them when ``y_true`` is a subset of the test split.
        """
        from skinlib.metrics import evaluate
        from skinlib.results import metric_rows

        rows = metric_rows(
            evaluate(y_true, y_pred, y_pred_clean=y_pred_clean, n_boot=self.profile.bootstrap,
                     seed=self.profile.seed, groups=self._test_groups_for(y_true, groups)),
            profile=self.profile.name, experiment=experiment, model=model, attack=attack, defence=defence,
            setting=setting, param=param)
        self.rows.extend(rows)
        return rows

    def compare(self, y_true: np.ndarray, pred: np.ndarray, reference_pred: np.ndarray, *, experiment: str,
                model: str, attack: str = "none", defence: str = "none", setting: str = "clean", param: str = "",
                reference: str, y_pred_clean: Optional[np.ndarray] = None,
                y_pred_clean_reference: Optional[np.ndarray] = None, groups: Optional[np.ndarray] = None,
                ) -> list[dict[str, Any]]:
        """This system minus a reference on the same test images, as tidy rows (kept in ``self.rows``).

        One row per metric of :meth:`evaluate`, named ``<metric>_vs_<reference>``
        (``accuracy_vs_undefended``, ``fnr_vs_clean`` with its grouping); ``value`` is
        this system's value minus the reference's, ``ci_low``/``ci_high`` the paired
        interval from the same lesion resamples applied to both (and the same resamples
        as their own :meth:`evaluate` rows). ``error_rate_vs_<reference>`` and
        ``flip_rate_vs_<reference>`` come when both clean prediction sets are given. The
        context columns describe this system (``pred``).
        """
        from skinlib.metrics import paired_difference
        from skinlib.results import difference_metric, metric_rows

        difference_metric("accuracy", reference)  # a bad reference fails before any work
        diffs = paired_difference(y_true, pred, reference_pred, groups=self._test_groups_for(y_true, groups),
                                  n_boot=self.profile.bootstrap, seed=self.profile.seed,
                                  y_pred_clean_a=y_pred_clean, y_pred_clean_b=y_pred_clean_reference)
        evaluation = []
        for key, (value, lo, hi) in diffs.items():
            grouping, _, metric = key.rpartition(":")
            evaluation.append({"grouping": grouping, "metric": difference_metric(metric, reference),
                               "value": value, "ci_low": lo, "ci_high": hi})
        rows = metric_rows(evaluation, profile=self.profile.name, experiment=experiment, model=model,
                           attack=attack, defence=defence, setting=setting, param=param)
        self.rows.extend(rows)
        return rows

    def save_results(self, experiment: str):
        """Write ``<results_dir>/<experiment>.csv`` atomically; return it as a DataFrame."""
        from skinlib.results import read_results, write_results

        path = self.results_dir / f"{experiment}.csv"
        write_results(path, [r for r in self.rows if r["experiment"] == experiment])
        return read_results(path)

    def save_figure(self, fig, name: str) -> Path:
        """Save ``fig`` as ``<results_dir>/figures/<name>.png`` (:func:`skinlib.plots.save_page_figure`)."""
        from skinlib.plots import save_page_figure

        return save_page_figure(fig, self.results_dir, name)

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        """Write ``<results_dir>/<name>`` as JSON (whole, then renamed)."""
        from skinlib.paths import safe_name

        path = self.results_dir / safe_name(name, "file name")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)
        return path

    def banner(self):
        """A Markdown banner naming the profile and the dataset behind this page's numbers."""
        from IPython.display import Markdown

        from skinlib.report import banner

        return Markdown(banner(self.profile.name, self.profile.data.source, len(self.dataset)))


def open_run(profile: str = "default", *, data_dir: Optional[str] = None, results_dir: Optional[str] = None,
             overrides: Optional[dict[str, Any]] = None) -> Run:
    """Open a profile for a notebook: validate it, load the data, split it, seed everything.

    ``overrides`` maps dotted profile keys to values (``{"fgsm.eps": 4/255}``); ``None``
    values are ignored, so a notebook can pass its papermill parameters straight through.
    TensorFlow's ops are made deterministic here, not only when a model is trained: a page
    that loads every model from the cache attacks them with the same kernels as one that
    trained them (without it, ART's UAP through the LLT on inception_small differed by 1.9
    points of accuracy between the published ham10000 run of experiment 3.2, whose page
    loaded its models, and a rerun whose page trained them).
    """
    from skinlib.models import set_determinism

    chosen = {k: v for k, v in (overrides or {}).items() if v is not None}
    prof = load_profile(profile, overrides=chosen, data_dir=data_dir)
    set_determinism(prof.seed)
    ds = load_dataset(prof.data.source, prof.data.data_dir, prof.data.image_size, seed=prof.seed,
                      n_images=prof.data.n_images, cache_dir=cache_root() / "datasets")
    splits = split_module.split_dataset(ds.labels, ds.lesion_ids, fractions=tuple(prof.data.fractions),
                                        by=prof.data.split, seed=prof.seed, predefined=ds.predefined_split)
    out = Path(results_dir) if results_dir else default_results_dir(prof.name)
    out.mkdir(parents=True, exist_ok=True)
    return Run(profile=prof, results_dir=out, dataset=ds, splits=splits, cache=StepCache())
