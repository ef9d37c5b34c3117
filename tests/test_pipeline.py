"""End to end on the `smoke` profile: every experiment, determinism, kill and resume.

These run the real command line (`python -m skinlib run`) in subprocesses with their
own cache and results folders, as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from skinlib.labels import CLASSES
from skinlib.pipeline import EXPERIMENTS
from skinlib.profiles import load_profile

SMOKE = load_profile("smoke")
METRICS = {"accuracy", "macro_recall", "macro_specificity", "health_accuracy", "sensitivity",
           "health_specificity", "npv", "fnr", *(f"recall_{c}" for c in CLASSES)}
ATTACK_METRICS = {"error_rate", "flip_rate"}


def _env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SKINLIB_CACHE_DIR=str(base / "cache"), SKINLIB_RESULTS_DIR=str(base / "results"),
               PYTHONUNBUFFERED="1")
    return env


def _run(base: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", "smoke", *args],
                          env=_env(base), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("smoke_a")
    proc = _run(base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base / "results" / "smoke"


@pytest.mark.slow
def test_every_experiment_writes_every_metric(smoke_run):
    import json

    prov = json.loads((smoke_run / "provenance.json").read_text())
    assert all(prov["experiments"][e]["status"] == "ok" for e in EXPERIMENTS)
    # each page names the CPU it ran on (its vector instructions decide the float kernels)
    assert all(prov["experiments"][e]["cpu"] == prov["hardware"]["cpu"] != "" for e in EXPERIMENTS)
    frames = {e: pd.read_csv(smoke_run / f"{e}.csv", keep_default_na=False) for e in EXPERIMENTS}
    for e, df in frames.items():
        models = (SMOKE.adaptive.models or SMOKE.models) if e == "exp4_adaptive" else SMOKE.models
        assert set(df["model"]) == set(models), e
        assert METRICS <= set(df["metric"]), e
        assert set(df.loc[df["metric"].isin(["sensitivity", "npv"]), "grouping"]) == {"clinical", "thesis"}, e
    fractions = {float(p) for p in frames["exp1_poisoning"]["param"]}
    assert fractions == {0.0, *SMOKE.poisoning.fractions}
    attacked = pd.concat([frames["exp2_1_fgsm"], frames["exp2_2_uap"]])
    assert {"fgsm", "pgd", "random", "uap_art", "uap_fast"} <= set(attacked["attack"])
    assert ATTACK_METRICS <= set(attacked["metric"])
    for e, defence in (("exp3_1_retraining", "retraining"), ("exp3_2_llt", "llt"),
                       ("exp3_3_combined", "retraining+llt")):
        df = frames[e]
        assert set(df["defence"]) == {defence}
        assert {"clean", "greybox", "whitebox"} == set(df["setting"])
    assert (smoke_run / "notebooks" / "exp3_3_combined.ipynb").is_file()
    parts = pd.read_csv(smoke_run / "exp3_2_llt_parts.csv")
    assert set(parts["transform"]) == {"none", "flip", "webp", "both"}
    assert set(parts["attack"]) == {"fgsm", "uap_art", "uap_fast", "pgd"}
    assert len(parts) == 4 * 4 * len(SMOKE.models) and parts["accuracy"].between(0, 1).all()
    assert (parts.loc[parts["transform"] == "none", "gain"] == 0).all()
    assert prov["dataset"]["images"] == SMOKE.data.n_images
    adaptive = frames["exp4_adaptive"]
    assert set(adaptive["defence"]) == {"none", "retraining", "llt", "retraining+llt", "pgd_at"}
    assert set(adaptive["setting"]) == {"clean", "greybox", "whitebox", "transfer"}
    assert {"pgd", "apgd_ce", "apgd_dlr", "pgd_lowfreq", "pgd_codec", "square", "pgd_targeted",
            "worst_case"} <= set(adaptive["attack"])
    assert {"accuracy_vs_undefended", "accuracy_vs_clean", "accuracy_vs_gradient"} <= set(adaptive["metric"])
    curves = pd.read_csv(smoke_run / "exp4_adaptive_curves.csv")
    assert set(curves["curve"]) == {"steps", "restarts", "eps"}
    # through the LLT the curves follow the attack that models WebP; elsewhere plain PGD
    by_defence = curves.groupby("defence")["attack"].agg(set).to_dict()
    assert by_defence == {"none": {"pgd"}, "retraining": {"pgd"}, "pgd_at": {"pgd"}, "llt": {"pgd_codec"},
                          "retraining+llt": {"pgd_codec"}}


@pytest.mark.slow
def test_executed_pages_hold_no_progress_bars(smoke_run):
    """Every page as the book shows it: no Keras/tqdm progress output (training pages
    included), parameter cells removed, the set-up cell's code removed."""
    import nbformat

    from skinlib.pipeline import ALL_PAGES, strip_progress

    for page in ALL_PAGES:
        nb = nbformat.read(smoke_run / "notebooks" / f"{page}.ipynb", as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    assert strip_progress(out["text"]) == out["text"], (page, out["text"][:300])
                    assert "━" not in out["text"] and "/step" not in out["text"], page
        tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
        assert ["injected-parameters", "remove-cell"] in tags, page
        assert not any("parameters" in t and "remove-cell" not in t for t in tags), page


@pytest.mark.slow
def test_two_runs_give_byte_identical_results(smoke_run, tmp_path):
    """A second run of every experiment from the first run's trained exp0 and poisoned models
    (the ``model`` steps; everything else, retraining and PGD-AT included, is computed again):
    the same bytes. That training from nothing is deterministic too is checked where exp0 trains
    from an empty cache (test_killed_run_resumes_and_matches, the grid tests of test_workflow.py)."""
    import shutil

    shutil.copytree(smoke_run.parent.parent / "cache" / "steps" / "model", tmp_path / "cache" / "steps" / "model")
    proc = _run(tmp_path, "--only", *EXPERIMENTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for e in EXPERIMENTS:
        first = (smoke_run / f"{e}.csv").read_bytes()
        second = (tmp_path / "results" / "smoke" / f"{e}.csv").read_bytes()
        assert first == second, f"{e}.csv differs between two runs with the same seed"


@pytest.mark.slow
def test_killed_run_resumes_and_matches(smoke_run, tmp_path):
    """SIGKILL in the middle of training, start again: it resumes and gives the same numbers."""
    cmd = [sys.executable, "-m", "skinlib", "run", "--profile", "smoke", "--only", "exp0_classifier"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    steps = tmp_path / "cache" / "steps" / "model"
    deadline = time.time() + 600
    checkpoint = None
    while time.time() < deadline and proc.poll() is None:
        found = [p for p in steps.rglob("*") if p.is_file() and "work" in p.parts and p.suffix in (".json", ".h5", ".npz")]
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.2)
    assert checkpoint is not None, "no epoch checkpoint appeared before the run ended"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results" / "smoke" / "exp0_classifier.csv").exists()
    unfinished = [d for d in steps.iterdir() if d.is_dir() and not (d / "DONE.json").exists()]
    assert unfinished, "the killed step should be unfinished"

    again = _run(tmp_path, "--only", "exp0_classifier")
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = (tmp_path / "results" / "smoke" / "exp0_classifier.csv").read_bytes()
    assert resumed == (smoke_run / "exp0_classifier.csv").read_bytes()


@pytest.mark.slow
def test_second_run_reuses_finished_steps(smoke_run, tmp_path):
    """A finished profile re-runs from the cache: no training step is computed again."""
    import shutil

    shutil.copytree(smoke_run.parent.parent / "cache", tmp_path / "cache")
    before = {p: p.stat().st_mtime for p in (tmp_path / "cache" / "steps").rglob("DONE.json")}
    proc = _run(tmp_path, "--only", "exp0_classifier", "exp3_1_retraining")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {p: p.stat().st_mtime for p in (tmp_path / "cache" / "steps").rglob("DONE.json")}
    assert after == before


@pytest.mark.slow
def test_finished_training_steps_keep_the_model_and_no_checkpoints(smoke_run):
    """Once a trained or retrained model is saved, its epoch checkpoints and optimizer state
    are deleted (they only serve a resume, and a ResNet50's take more room than its model)."""
    steps = smoke_run.parent.parent / "cache" / "steps"
    finished = [d for kind in ("model", "retrain", "pgd_at") for d in (steps / kind).glob("*")
                if (d / "DONE.json").is_file()]
    assert {d.parent.name for d in finished} >= {"model", "retrain"}, finished
    for folder in finished:
        assert (folder / "model.keras").is_file(), folder
        left = [p.relative_to(folder) for p in folder.rglob("*")
                if p.suffix in (".h5", ".npz") or p.name == "state.json" or p.name == "work" or
                p.name.startswith("round")]
        assert not left, f"{folder}: checkpoints left after the model was saved: {left}"
