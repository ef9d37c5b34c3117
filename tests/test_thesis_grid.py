"""The thesis's own models end to end: every page of the ``thesis`` profile through the
Snakemake grid, at a tiny scale on CPU.

The tiny profile is ``profiles/thesis.yml`` with only the sizes changed (a YAML written
into the test's temp dir, named ``thesis_tiny``): the built-in synthetic source instead
of the real images (so it passes without them), 75 px images (the smallest InceptionV3
accepts; from scratch the keras.applications backbones run at the input size), one
epoch without ImageNet weights, a two-round retraining, and small attack budgets and
subsets. Models, page graph, split, classes and every code path are the thesis's.

Each job's peak memory comes back two ways: ``provenance.json`` (``peak_memory_mib``:
the page kernel's peak resident size, ``getrusage``) and the Snakemake ``benchmark:``
file of the job (``max_rss``: every process of the job together, sampled each second
for the first 30 s, then every 30 s). Both are printed (``pytest -s``) and written to
``<tmp>/thesis_tiny_memory.json``; ``workflow/resources.yaml`` derives its ``thesis``
values from them.

The grid is critical-path bound (data -> exp0 -> exp2.2 -> exp3.1 -> exp4 -> summary): one
of the two cores sits idle for most of its 20 minutes. So when the grid test is selected,
``conftest.py`` starts it in the background as soon as collection ends
(:func:`start_grid`), the rest of the suite runs on the idle core meanwhile, and the test
waits for it and checks it. Run alone, the test starts it itself.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from skinlib import pipeline

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile")]
NAME = "thesis_tiny"
MODELS = ["resnet50", "inceptionv3"]
#: A guard against a hung grid, not a budget: the grid's CPU time is in workflow/resources.yaml's
#: comment; on shared cores its wall time is several times that.
TIMEOUT_S = 3600

#: What the tiny profile changes in profiles/thesis.yml (every other value is the thesis's).
TINY: dict = {
    "name": NAME,
    "description": "profiles/thesis.yml at a tiny scale for the test suite (synthetic, 75 px, one epoch).",
    "bootstrap": 10,
    "data": {"source": "synthetic", "n_images": 210, "image_size": 75},
    "train": {"epochs": 1, "batch_size": 32, "weights": None, "fine_tune_epochs": 0, "augment": False,
              "jit_compile": False},
    # poisoning.epochs stays the thesis's (unset: exp0's schedule), so the 0% point is exp0's model
    "poisoning": {"fractions": [0.3]},
    "fgsm": {"eps_sweep": [0.00784313725490196, 0.03137254901960784], "pgd_steps": 2, "n_examples": 2},
    "uap": {"max_iter": 1, "n_train_images": 16, "fast_batch_size": 16, "fast_epochs": 1},
    "retraining": {"rounds": 2, "epochs_per_round": 1},
    "llt": {"quality_sweep": [50]},
    # the adaptive evaluation of one model (the same code for the other; it is the longest page)
    "adaptive": {"models": ["resnet50"], "eps_curve": [0.0, 0.00784313725490196], "n_images": 16, "steps": 2,
                 "convergence_images": 8, "convergence_factor": 1, "curve_images": 8, "curve_steps": 1,
                 "codec_fit_images": 16, "square_queries": 10, "at_epochs": 1, "at_steps": 1,
                 "at_val_images": 16},
}


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def tiny_thesis_profile(folder: Path) -> Path:
    """Write ``thesis_tiny.yml`` (profiles/thesis.yml with :data:`TINY` applied) into ``folder``."""
    thesis = yaml.safe_load((ROOT / "profiles" / "thesis.yml").read_text(encoding="utf-8"))
    path = folder / f"{NAME}.yml"
    path.write_text(yaml.safe_dump(_merge(thesis, TINY), sort_keys=False), encoding="utf-8")
    return path


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_tiny_profile_is_the_thesis_profile_made_small(tmp_path):
    from skinlib.profiles import load_profile

    thesis, tiny = load_profile("thesis", data_dir="/tmp"), load_profile(tiny_thesis_profile(tmp_path))
    assert tiny.name == NAME and tiny.models == thesis.models == MODELS
    assert (tiny.data.source, tiny.data.image_size, tiny.train.weights) == ("synthetic", 75, None)
    assert tiny.retraining.rounds == 2 and tiny.data.split == thesis.data.split
    assert tiny.poisoning.epochs is thesis.poisoning.epochs is None  # the 0% point is exp0's model
    assert tiny.fgsm.eps == thesis.fgsm.eps and tiny.uap.eps == thesis.uap.eps


class Grid:
    """A tiny thesis grid started in the background: its folder, process and start."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.git_before = _git_status()
        profile = tiny_thesis_profile(folder)
        work = folder / "work"
        work.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SKINLIB_CACHE_DIR=str(folder / "cache"), SKINLIB_RESULTS_DIR=str(folder / "results"),
                   PYTHONUNBUFFERED="1")
        cmd = [*SNAKEMAKE, "--directory", str(work), "--cores", "2", "--config", f"profile={profile}", "seeds=[0]",
               "publish=false"]
        self.log = folder / "snakemake.log"
        self.t0 = time.perf_counter()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)

    def kill(self) -> None:
        """Every job and kernel of the grid, not just snakemake."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


#: The grid conftest.py started for this session (None: not started).
STARTED: dict[str, Grid] = {}


def start_grid(folder: Path) -> Grid:
    """Start the tiny thesis grid in ``folder`` in the background (once per session)."""
    if "grid" not in STARTED:
        STARTED["grid"] = Grid(folder)
    return STARTED["grid"]


@pytest.mark.slow
def test_thesis_profile_every_page_through_the_grid(tmp_path):
    """``snakemake --cores 2`` over every page of the tiny thesis profile: every job ends,
    every experiment has results for ResNet50 and InceptionV3, peak memory is recorded,
    nothing is written into the repository."""
    grid = start_grid(tmp_path)
    try:
        grid.proc.wait(timeout=max(1.0, TIMEOUT_S - (time.perf_counter() - grid.t0)))
    except subprocess.TimeoutExpired:
        grid.kill()
        pytest.fail(f"the tiny thesis grid ran past {TIMEOUT_S} s:\n{grid.output()[-3000:]}")
    wall = time.perf_counter() - grid.t0
    assert grid.proc.returncode == 0, grid.output()[-4000:]

    folder = grid.folder
    results = folder / "results" / NAME
    done = results / pipeline.GRID_DIR / "seed-0"
    prov = json.loads((results / "provenance.json").read_text())
    memory = {}
    for page in pipeline.ALL_PAGES:
        assert (done / f"{page}.done").is_file(), page
        record = prov["experiments"][page]
        assert record["status"] == "ok", (page, record)
        bench = done / f"{page}.benchmark.tsv"
        row = {}
        if bench.is_file():
            rows = list(csv.DictReader(bench.open(), delimiter="\t"))
            row = {k: float(v) for k, v in (rows[-1] if rows else {}).items() if k in ("max_rss", "cpu_time")
                   and v not in ("", "NA", "-")}
        memory[page] = {"duration_s": record["duration_s"], "kernel_peak_mib": record["peak_memory_mib"],
                        "job_max_rss_mib": row.get("max_rss"), "job_cpu_s": row.get("cpu_time")}
    for exp in pipeline.EXPERIMENTS:
        with (results / f"{exp}.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert rows, exp
        models = {r["model"] for r in rows}
        expected = set(MODELS) if exp != "exp4_adaptive" or not prov["parameters"]["adaptive"]["models"] \
            else set(prov["parameters"]["adaptive"]["models"])
        assert expected <= models, (exp, models)
        assert all(r["value"] != "" for r in rows if r["metric"] == "accuracy"), exp
    (folder / f"{NAME}_memory.json").write_text(json.dumps({"wall_s": round(wall, 1), "jobs": memory}, indent=1))
    print(f"\nthesis_tiny grid: {wall:.0f} s wall on --cores 2")
    for page, m in memory.items():
        print(f"  {page:18s} {m['duration_s']:7.1f} s  cpu {m['job_cpu_s']} s  kernel peak "
              f"{m['kernel_peak_mib']:7.1f} MiB  job max_rss {m['job_max_rss_mib']} MiB")
    assert _git_status() == grid.git_before, "the grid wrote into the repository"
