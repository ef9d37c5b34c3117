"""The Snakemake grid (workflow/Snakefile): the graph, bad config, and, slow, the smoke
grid with two seeds locally (killed and restarted) and through a one-node SLURM, each
byte-identical to ``skinlib run --seeds 0 1``."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skinlib import pipeline

ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE)]
#: The smoke grid of the slow tests: the fewest pages that show a real edge between jobs
#: (data -> exp0, the exp0 models being the step every later page reuses) and the table
#: over seeds; a smoke page takes 40-110 s on 2 shared cores.
GRID_PAGES = ["data", "exp0_classifier"]
SEEDS = [0, 1]


def _env(base: Path) -> dict[str, str]:
    return dict(os.environ, SKINLIB_CACHE_DIR=str(base / "cache"), SKINLIB_RESULTS_DIR=str(base / "results"),
                PYTHONUNBUFFERED="1")


def _snakemake(base: Path, *args: str, config: tuple[str, ...] = (), timeout: int = 1200,
               **kw) -> subprocess.CompletedProcess:
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [*SNAKEMAKE, "--directory", str(work), *args, "--config", *config]
    return subprocess.run(cmd, env=_env(base), capture_output=True, text=True, timeout=timeout, **kw)


def _smoke_config() -> tuple[str, ...]:
    return ("profile=smoke", f"seeds=[{','.join(map(str, SEEDS))}]", f"pages=[{','.join(GRID_PAGES)}]",
            "publish=false")


# ---------------------------------------------------------------------------------- fast


def test_page_table_runs_in_dependency_order():
    order = {p: i for i, p in enumerate(pipeline.ALL_PAGES)}
    assert set(pipeline.PAGE_NEEDS) == set(order)
    for page, needs in pipeline.PAGE_NEEDS.items():
        for producers in needs.values():
            assert all(order[p] < order[page] for p in producers), page
    for page in pipeline.ALL_PAGES:
        assert (ROOT / "notebooks" / f"{page}.ipynb").is_file(), page


def test_dry_run_of_the_full_grid(tmp_path):
    proc = _snakemake(tmp_path, "-n", config=("profile=default", "seeds=[0,1,2]"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    for page in pipeline.SEED_PAGES:
        assert counts.get(page) == "3", (page, counts)
    for page in pipeline.REPORT_PAGES:
        assert counts.get(page) == "1", (page, counts)
    assert counts.get("aggregate_seeds") == "1" and counts.get("book") == "1"
    assert not (tmp_path / "results").exists(), "a dry run wrote results"


def test_rule_graph_has_the_real_dependencies(tmp_path):
    proc = _snakemake(tmp_path, "--rulegraph", config=("profile=smoke", "seeds=[0]", "publish=false"),
                      timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", proc.stdout, flags=re.M))
    edges = {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, flags=re.M)}
    expected = {(producer, page) for page, needs in pipeline.PAGE_NEEDS.items()
                for producers in needs.values() for producer in producers}
    assert {e for e in edges if e[1] != "all"} == expected
    # what experiments.py really reads: exp3.2 needs exp0's models and exp2.2's UAPs, not
    # the retrained models of exp3.1; exp3.3 needs those; exp1 trains its own models
    assert {("data", "exp0_classifier"), ("exp0_classifier", "exp2_1_fgsm"), ("exp2_2_uap", "exp3_1_retraining"),
            ("exp2_2_uap", "exp3_2_llt"), ("exp3_1_retraining", "exp3_3_combined")} <= edges
    assert ("exp3_1_retraining", "exp3_2_llt") not in edges
    assert ("exp0_classifier", "exp1_poisoning") not in edges


@pytest.mark.parametrize("config, needle", [
    (("profile=smoke", "seeds=[0,x]"), "'x'"),
    (("profile=smoke", "pages=[exp9]"), "exp9"),
    (("profile=smoke", "seeds=[0,-1]"), "-1"),
    (("profile=smoke", "seeds=[0,0]"), "twice"),
    (("profile=smoke", "seeds=[1.5]"), "1.5"),
    (("profile=smoke", "seed=1"), "seed: unknown key"),  # a typo of seeds: not silently the default seeds
    (("profil=smoke",), "profil: unknown key"),  # not silently the default profile
    (("profile=smoke", "publish=maybe"), "maybe"),
    (("profile=nosuch",), "no such profile"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, config, needle):
    proc = _snakemake(tmp_path, "-n", config=config, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("text, needle", [("", "empty profile"), ("name: x\nfgsm:\n  eps: 3\n", "fgsm.eps")])
def test_bad_profile_file_is_one_line_and_exit_2(tmp_path, text, needle):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    proc = _snakemake(tmp_path, "-n", config=(f"profile={path}",), timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------------- slow


def _csvs(results: Path) -> dict[str, bytes]:
    """Every results CSV of the smoke grid (both seeds' folders and seeds.csv), by relative path."""
    found = {str(p.relative_to(results)): p.read_bytes() for p in results.rglob("*.csv")
             if ".staging" not in p.parts}
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """``skinlib run --profile smoke --seeds 0 1`` over the grid's pages, one after another."""
    base = tmp_path_factory.mktemp("grid_reference")
    proc = subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", "smoke", "--seeds",
                           *map(str, SEEDS), "--only", *GRID_PAGES, "--no-publish"],
                          env=_env(base), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in GRID_PAGES:  # the one-line-per-job console
        assert re.search(rf"smoke seed 1: {page} finished in \d+ s", proc.stdout), proc.stdout
    csvs = _csvs(base / "results" / "smoke")
    expected = {f"{prefix}{name}" for prefix in ("", "seed-1/")  # the smoke profile checks the split too
                for name in ("exp0_classifier.csv", "exp0_split_leakage.csv")} | {"seeds.csv"}
    assert set(csvs) == expected
    return csvs


@pytest.mark.slow
def test_local_grid_killed_and_restarted_matches_skinlib_run(reference, tmp_path):
    """``snakemake --cores 2``, killed (SIGKILL, every process of it) while the exp0 jobs of
    both seeds train; ``--unlock`` and again: the same bytes as ``skinlib run``."""
    work = tmp_path / "work"
    work.mkdir()
    cmd = [*SNAKEMAKE, "--directory", str(work), "--cores", "2", "--rerun-incomplete", "--config",
           *_smoke_config()]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    grid = tmp_path / "results" / "smoke" / pipeline.GRID_DIR
    deadline = time.time() + 900
    steps = tmp_path / "cache" / "steps" / "model"
    while time.time() < deadline and proc.poll() is None and not (
            len(list(grid.glob("seed-*/data.done"))) == 2 and steps.is_dir() and any(steps.rglob("work/*"))):
        time.sleep(0.5)  # both seeds past their data page, a training step under way
    assert proc.poll() is None, "the grid ended before it could be killed mid-way"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results" / "smoke" / "seeds.csv").exists()

    assert _snakemake(tmp_path, "--unlock", config=_smoke_config()).returncode == 0
    again = _snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", config=_smoke_config(), timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _csvs(tmp_path / "results" / "smoke") == reference


def _slurm_up() -> str:
    if shutil.which("sbatch") is None:
        return "sbatch not found (.ci/run installs Debian's slurm-wlm and starts a one-node cluster)"
    try:
        ok = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if ok.returncode != 0 or not re.search(r"idle|mixed|allocated", ok.stdout):
        return f"no SLURM node up (sinfo: {ok.stdout.strip() or ok.stderr.strip()[:200]}); run .ci/slurm-up"
    return ""


@pytest.mark.slow
def test_slurm_grid_matches_skinlib_run(reference, tmp_path):
    """The same grid through ``sbatch`` (workflow/profiles/slurm, the generic cluster executor)."""
    reason = _slurm_up()
    if reason:
        pytest.skip(reason)
    proc = _snakemake(tmp_path, "--profile", str(ROOT / "workflow" / "profiles" / "slurm"), "--latency-wait", "10",
                      config=_smoke_config(), timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    logs = list((tmp_path / "work" / ".snakemake" / "slurm-logs").glob("*.log"))
    assert len(logs) >= len(GRID_PAGES) * len(SEEDS), "the jobs did not go through sbatch"
    assert _csvs(tmp_path / "results" / "smoke") == reference
