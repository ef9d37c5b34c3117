"""``skinlib run``: execute the pages of a profile with papermill, one seed after another.

The pages of one (profile, seed) and what each reads from the others are declared once,
in :data:`PAGE_NEEDS`; ``skinlib run`` executes them in that order, and the Snakemake
workflow (``workflow/Snakefile``) turns the same table into jobs that run in parallel
or on a cluster. Both execute a page through :func:`execute_one` (the Snakefile's jobs
call ``skinlib page``), so there is one code path and the CSVs are byte-identical.

Each page is executed into a staging folder; only a notebook that ran to the end is
promoted, with its results, into the seed's results folder (files renamed into place).
A failed or killed page never replaces the last good results of that profile; it is
recorded as failed in ``provenance.json`` and shown as failed in the book: a notice with
the error is put at the top of its last good notebook in ``results/<profile>/notebooks/``
(or, when it never succeeded, a failure page takes its place there).

The book: ``results/<profile>/notebooks/`` holds each page as the book shows it (progress
bars stripped, parameter cells removed, set-up code hidden: :func:`tidy_notebook`).
The published book (``jupyter-book build book/``) reads the committed ``ham10000`` run
through the tracked link ``book/experiments -> ../results/ham10000/notebooks``;
``skinlib run`` never writes into ``book/``. :func:`build_book` (``skinlib book``) builds
the book of any profile in ``book/_build/<profile>/`` (git-ignored) from a staged copy of
the chapters, with a placeholder for each page the profile has not run.

Results folders (:func:`seed_dir`): the profile's primary seed (the first of its
``seeds``) writes ``results/<profile>/`` itself, the folder the book shows; every other
seed ``K`` writes ``results/<profile>/seed-K/``. With more than one seed,
:func:`aggregate_seeds` writes ``results/<profile>/seeds.csv`` (mean, sd, min, max of
each results cell over the seeds). The report pages (summary, provenance, benchmarks)
run for the primary seed only.

Concurrency: a page of one (profile, seed) holds a lock while it runs (a second process
asking for it at the same time gets a one-line error), ``skinlib run`` holds a lock on
its profile (a second ``skinlib run`` of the same profile refuses to start), and the
step cache (:mod:`skinlib.steps`) lets concurrent jobs share a model or a UAP.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from skinlib.errors import SkinlibError
from skinlib.paths import BOOK_DIR, NOTEBOOKS_DIR, PROFILES_DIR, PROGRESS_ENV, PROJECT_ENV, ROOT, results_dir
from skinlib.profiles import Profile, apply_overrides, load_profile
from skinlib.steps import FORCE_ENV

#: Every page of one (profile, seed), in run order, with what it reads from earlier pages:
#: ``{page: {artefact: (pages that produce it, ...)}}``. The Snakefile names each of its
#: edges after the artefact. Adding a page is one line here (and its notebook).
PAGE_NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "data": {},
    "exp0_classifier": {"dataset": ("data",)},
    "exp1_poisoning": {"dataset": ("data",)},  # trains its own models (its clean point too)
    "exp2_1_fgsm": {"models": ("exp0_classifier",)},
    "exp2_2_uap": {"models": ("exp0_classifier",)},
    "exp3_1_retraining": {"models": ("exp0_classifier",), "uaps": ("exp2_2_uap",)},
    "exp3_2_llt": {"models": ("exp0_classifier",), "uaps": ("exp2_2_uap",)},
    "exp3_3_combined": {"retrained_models": ("exp3_1_retraining",), "uaps": ("exp2_2_uap",)},
    "exp4_adaptive": {"models": ("exp0_classifier",), "retrained_models": ("exp3_1_retraining",)},
}
#: Report pages: they read every experiment's results and run for the primary seed only.
REPORT_PAGES: tuple[str, ...] = ("summary", "provenance", "benchmarks")

#: Experiment ids of DESIGN.md, in run order (every page of :data:`PAGE_NEEDS` but ``data``).
EXPERIMENTS: tuple[str, ...] = tuple(p for p in PAGE_NEEDS if p.startswith("exp"))
PAGE_NEEDS["summary"] = {"results": EXPERIMENTS}
PAGE_NEEDS["provenance"] = {"run_records": tuple(PAGE_NEEDS)}  # every page before it
PAGE_NEEDS["benchmarks"] = {}
PAGES_BEFORE: tuple[str, ...] = tuple(p for p in PAGE_NEEDS if p not in EXPERIMENTS + REPORT_PAGES)
PAGES_AFTER: tuple[str, ...] = REPORT_PAGES
#: Every page, in the order ``skinlib run`` executes them.
ALL_PAGES: tuple[str, ...] = PAGES_BEFORE + EXPERIMENTS + PAGES_AFTER
#: The pages every seed runs.
SEED_PAGES: tuple[str, ...] = PAGES_BEFORE + EXPERIMENTS

#: Where the grid keeps its job stamps and locks, inside ``results/<profile>/`` (git-ignored).
GRID_DIR = ".grid"
#: The table of results over seeds, in ``results/<profile>/``.
SEEDS_TABLE = "seeds.csv"

PACKAGES = ("tensorflow", "keras", "adversarial-robustness-toolbox", "numpy", "pillow",
            "scikit-learn", "pandas", "seaborn", "matplotlib", "papermill", "jupytext",
            "jupyter-book", "myst-nb", "snakemake")

#: Environment of the notebook kernels (a variable already set in the environment wins):
#: TensorFlow's C++ and absl start-up lines stay out, no progress bars (Keras, tqdm) are
#: drawn into the stored outputs, and the kernels resolve this run's project folder.
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", PROGRESS_ENV: "0", PROJECT_ENV: str(ROOT)}


# --------------------------------------------------------------------------- folders and page lists


def seed_dir(profile: Profile, seed: int) -> Path:
    """The results folder of ``seed``: ``results/<profile>/`` for the primary seed (the
    first of the profile's ``seeds``), ``results/<profile>/seed-K/`` for another seed K.

    Examples:
        >>> p = load_profile("smoke")
        >>> seed_dir(p, 0) == results_dir("smoke"), seed_dir(p, 2).name
        (True, 'seed-2')
    """
    base = results_dir(profile.name)
    return base if seed == profile.primary_seed else base / f"seed-{seed}"


def stamp_path(profile: Profile, seed: int, page: str) -> Path:
    """The file a finished page of ``seed`` leaves (what the Snakefile's jobs output)."""
    return results_dir(profile.name) / GRID_DIR / f"seed-{seed}" / f"{page}.done"


def page_needs(page: str) -> dict[str, tuple[str, ...]]:
    """What ``page`` reads from other pages: ``{artefact: (producing pages, ...)}``."""
    if page not in PAGE_NEEDS:
        raise SkinlibError(f"unknown page {page!r}; valid: {', '.join(ALL_PAGES)}")
    return PAGE_NEEDS[page]


def seed_files(profile: Profile, name: str) -> dict[int, Path]:
    """``{seed: path}`` of the file ``name`` in every seed's results folder that has it
    (the primary seed's folder and each ``seed-K/``), in seed order."""
    base = results_dir(profile.name)
    found = {profile.primary_seed: base / name} if (base / name).is_file() else {}
    for folder in base.glob("seed-*"):
        if folder.name[5:].isdigit() and (folder / name).is_file():
            found[int(folder.name[5:])] = folder / name
    return dict(sorted(found.items()))


def pages_for_seed(profile: Profile, seed: int, only: Optional[Sequence[str]] = None) -> list[str]:
    """The pages ``seed`` runs, in order (report pages for the primary seed only)."""
    pages = ALL_PAGES if seed == profile.primary_seed else SEED_PAGES
    return [p for p in pages if not only or p in only]


def check_pages(pages: Sequence[str], what: str = "--only") -> list[str]:
    unknown = [p for p in pages if p not in ALL_PAGES]
    if unknown:
        raise SkinlibError(f"{what}: unknown experiment {unknown[0]!r}; valid: {', '.join(ALL_PAGES)}")
    return list(pages)


def check_seeds(seeds: Sequence[Any], what: str = "--seeds") -> list[int]:
    """``seeds`` as distinct integers 0 or more, or a one-line error naming the bad one."""
    out: list[int] = []
    for s in seeds:
        try:
            k = int(str(s), 10)
        except ValueError:
            raise SkinlibError(f"{what}: {s!r} is not an integer seed") from None
        if k < 0:
            raise SkinlibError(f"{what}: {k} is negative (seeds are 0 or more)")
        if k in out:
            raise SkinlibError(f"{what}: seed {k} is given twice")
        out.append(k)
    if not out:
        raise SkinlibError(f"{what}: give at least one seed")
    return out


def profile_argument(profile: Profile) -> str:
    """What the notebooks are given to load the same profile: its name for a shipped
    profile, else the path of its file."""
    origin = Path(profile.origin) if profile.origin else None
    if origin is None or origin.resolve() == (PROFILES_DIR / f"{profile.name}.yml").resolve():
        return profile.name
    return str(origin.resolve())


# --------------------------------------------------------------------------- provenance helpers


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        # "+dirty" when the code or the parameters differ from the commit (results written
        # by a run are not code: they do not count)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "skinlib", "notebooks", "profiles", "pyproject.toml"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


#: The vector instructions that decide which float kernels TensorFlow's CPU build runs.
_SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")


@functools.lru_cache(maxsize=1)
def _cpu() -> str:
    """The CPU's model name and its vector instruction sets, e.g. ``"AMD EPYC; avx2 fma avx512f"``.

    Two machines with different sets run different float kernels, so the same seed can
    train different weights on them; provenance records it per page for that reason.
    Read once per process (the page record and the hardware both name it).
    """
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    simd = [f for f in _SIMD_FLAGS if f in flags]
    return f"{name}; {' '.join(simd)}" if simd else name


def _hardware() -> dict[str, Any]:
    mem_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    gpus = []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        gpus = [g for g in out.stdout.strip().splitlines() if g]
    except (OSError, subprocess.SubprocessError):
        pass
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu": _cpu(),
            "node": platform.node(), "cpu_count": os.cpu_count(), "memory_gib": mem_gib, "gpus": gpus}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _promote(staging: Path, target: Path) -> None:
    """Move every file of ``staging`` into ``target`` (rename: each file appears whole)."""
    for src in sorted(staging.rglob("*")):
        if src.is_file():
            dst = target / src.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _exclusive(lock_path: Path, busy: str) -> Iterator[None]:
    """Hold the file lock ``lock_path`` (taken at once or not at all: ``busy`` is the error).

    The lock is an OS lock (``filelock``): it goes with its process, so a killed run never
    leaves it held.
    """
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SkinlibError(busy) from None
    try:
        yield
    finally:
        lock.release()


def _update_provenance(out: Path, profile: Profile, seed: int, page: str, record: dict[str, Any],
                       command: str) -> dict[str, Any]:
    """Add one page's record to ``<out>/provenance.json`` (read, change, write under a lock:
    jobs of the grid finish at the same time)."""
    from filelock import FileLock

    prov_path = out / "provenance.json"
    with FileLock(str(results_dir(profile.name) / GRID_DIR / f"seed-{seed}" / "provenance.json.lock")):
        prov = _read_json(prov_path)
        prov.update({
            "profile": profile.name, "seed": seed, "parameters": profile.to_dict(),
            "git_commit": record.get("git_commit", _git_commit()), "packages": _versions(),
            "hardware": _hardware(), "command": command,
        })
        prov.setdefault("experiments", {})[page] = record
        if (out / "dataset.json").is_file():
            prov["dataset"] = _read_json(out / "dataset.json")
        _atomic_json(prov_path, prov)
    return prov


# --------------------------------------------------------------------------- one page


def execute_page(page: str, profile: Profile, out_dir: Path, *, log_output: bool = False) -> Path:
    """Run ``notebooks/<page>.ipynb`` with papermill for ``profile`` (its ``seed`` is the
    seed of this run); results go to ``out_dir``, the executed notebook to
    ``out_dir/notebooks/``. ``log_output`` echoes the cells' output to stdout."""
    import papermill

    source = NOTEBOOKS_DIR / f"{page}.ipynb"
    if not source.is_file():
        raise SkinlibError(f"{source}: notebook missing (run `jupytext --sync notebooks/*.py`)")
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    executed = out_dir / "notebooks" / f"{page}.ipynb"
    papermill.execute_notebook(
        str(source), str(executed), kernel_name="python3", cwd=str(ROOT), progress_bar=False,
        log_output=log_output, stdout_file=sys.stdout if log_output else None,
        parameters={"profile": profile_argument(profile), "data_dir": profile.data.data_dir,
                    "results_dir": str(out_dir), "seed": profile.seed},
    )
    return executed


@contextmanager
def _quiet_stderr(log_path: Path) -> Iterator[None]:
    """Send this process's stderr (and so the kernel's, which inherits it: TensorFlow's
    C++ lines, IPKernelApp, warnings) to ``log_path`` while a page runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _say(text: str, *, error: bool = False) -> None:
    print(f"[skinlib] {text}", file=sys.stderr if error else sys.stdout, flush=True)


def execute_one(profile: Profile, page: str, seed: Optional[int] = None, *, log_output: bool = False,
                command: Optional[str] = None) -> dict[str, Any]:
    """Execute one page of one (profile, seed), promote its results, record it.

    The one code path of both ``skinlib run`` and the Snakemake jobs. Prints one line when
    the page starts and one when it ends (finished in N s, or failed with the error's last
    line and the path of the failed notebook). On success it writes the page's stamp
    (:func:`stamp_path`), the file the Snakefile's job outputs. Returns the page's record
    (``status`` ``ok`` or ``failed``). A second process asking for the same page of the
    same (profile, seed) while it runs gets a :class:`SkinlibError`.
    """
    seed = profile.primary_seed if seed is None else seed
    page_needs(page)
    if page in REPORT_PAGES and seed != profile.primary_seed:
        raise SkinlibError(f"page {page}: report pages run for the primary seed "
                           f"{profile.primary_seed} only, not seed {seed}")
    run_profile = apply_overrides(profile, {"seed": seed}) if seed != profile.seed else profile
    out = seed_dir(profile, seed)
    grid = results_dir(profile.name) / GRID_DIR / f"seed-{seed}"
    label = f"{profile.name} seed {seed}: {page}"
    stamp = stamp_path(profile, seed, page)
    with _exclusive(grid / f"{page}.lock", f"{out}: page {page} (seed {seed}) is being run by another process; "
                                           "wait for it to finish"):
        stamp.unlink(missing_ok=True)
        staging = out / ".staging" / page  # ours alone while the page lock is held
        shutil.rmtree(staging, ignore_errors=True)
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        record: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "git_commit": _git_commit(),
                                  "seed": seed, "node": platform.node(), "cpu": _cpu()}
        _say(f"{label} started")
        saved_env = {k: os.environ.get(k) for k in KERNEL_ENV}
        os.environ.update({k: os.environ.get(k) or v for k, v in KERNEL_ENV.items()})
        try:
            with _quiet_stderr(grid / f"{page}.log"):
                execute_page(page, run_profile, staging, log_output=log_output)
            executed = staging / "notebooks" / f"{page}.ipynb"
            if executed.is_file():
                tidy_notebook_file(executed)
            _promote(staging, out)
            (out / "failed" / f"{page}.ipynb").unlink(missing_ok=True)
            record["status"] = "ok"
        except SkinlibError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
            record["status"] = "failed"
            record["error"] = _one_line(exc)
            failed_nb = staging / "notebooks" / f"{page}.ipynb"
            if failed_nb.is_file():
                (out / "failed").mkdir(parents=True, exist_ok=True)
                os.replace(failed_nb, out / "failed" / f"{page}.ipynb")
                record["failed_notebook"] = str(out / "failed" / f"{page}.ipynb")
            shutil.rmtree(staging, ignore_errors=True)
            mark_failed(out, profile.name, page, record)
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        record["ended"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["duration_s"] = round(time.perf_counter() - t0, 1)
        record["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        _update_provenance(out, run_profile, seed, page, record, command or " ".join(sys.argv))
        try:
            (out / ".staging").rmdir()
        except OSError:
            pass
        if record["status"] == "ok":
            _atomic_json(stamp, {"page": page, "seed": seed, "profile": profile.name,
                                 "ended": record["ended"], "duration_s": record["duration_s"]})
            _say(f"{label} finished in {record['duration_s']:.0f} s")
        else:
            where = record.get("failed_notebook", f"{out}/failed/")
            _say(f"{label} FAILED after {record['duration_s']:.0f} s: {record['error']} (notebook: {where})",
                 error=True)
    return record


# --------------------------------------------------------------------------- a whole run


def run(profile_name: str, *, data_dir: Optional[str] = None, only: Optional[Sequence[str]] = None,
        seeds: Optional[Sequence[Any]] = None, force: bool = False,
        log_output: bool = False) -> dict[str, Any]:
    """Execute the pages of ``profile_name`` for each of ``seeds`` (default: the profile's
    ``seeds``), one after another; then, with more than one seed, the table over seeds.
    Nothing is written outside the results (and cache) folders: the book of the run is
    built by :func:`build_book`.

    Returns the provenance record of the primary seed when it ran (else of the last seed),
    with ``seed_runs`` mapping each seed to its pages' statuses.
    """
    profile = load_profile(profile_name, data_dir=data_dir)
    if only:
        check_pages(only)
    seed_list = check_seeds(seeds) if seeds is not None else list(profile.seeds)
    plan = [(s, pages_for_seed(profile, s, only)) for s in seed_list]
    if not any(pages for _, pages in plan):
        raise SkinlibError(f"--only: {', '.join(only or [])} run for the primary seed {profile.primary_seed} "
                           "only, which --seeds does not include")
    _check_data(profile)

    base = results_dir(profile.name)
    run_id = uuid.uuid4().hex if force else ""
    previous_force = os.environ.get(FORCE_ENV)
    os.environ[FORCE_ENV] = run_id
    statuses: dict[int, dict[str, str]] = {}
    try:
        with _exclusive(base / GRID_DIR / "run.lock",
                        f"{base}: another `skinlib run` of profile {profile.name} is running; wait for it to finish"):
            # every seed's experiments, then the table over seeds, then the report pages
            # (the summary shows the spread over seeds, so it runs after the table)
            for seed, pages in plan:
                statuses[seed] = {}
                for page in pages:
                    if page not in REPORT_PAGES:
                        statuses[seed][page] = execute_one(profile, page, seed, log_output=log_output)["status"]
            if len(seed_list) > 1 and set(EXPERIMENTS) & {p for _, pages in plan for p in pages}:
                path = aggregate_seeds(profile, seed_list)
                _say(f"{profile.name}: table over seeds {', '.join(map(str, seed_list))} written to {path}")
            for seed, pages in plan:
                for page in pages:
                    if page in REPORT_PAGES:
                        statuses[seed][page] = execute_one(profile, page, seed, log_output=log_output)["status"]
    finally:
        if previous_force is None:
            os.environ.pop(FORCE_ENV, None)
        else:
            os.environ[FORCE_ENV] = previous_force
    shown = profile.primary_seed if profile.primary_seed in seed_list else seed_list[-1]
    prov = _read_json(seed_dir(profile, shown) / "provenance.json")
    prov["seed_runs"] = statuses
    return prov


def aggregate_seeds(profile: Profile, seeds: Sequence[int]) -> Path:
    """Write ``results/<profile>/seeds.csv``: each results cell over ``seeds``.

    Columns: those of the tidy results, where ``value`` is the mean over the seeds that
    have the cell and ``ci_low``/``ci_high`` the means of their bootstrap bounds, plus
    ``n_seeds``, ``sd`` (sample standard deviation, empty for one seed), ``min``, ``max``.
    Experiments without results for a seed are left out of that seed's count.

    Shape: one row per (experiment, model, attack, defence, setting, param, grouping,
    metric) found in any seed.
    """
    import pandas as pd

    from skinlib.results import CONTEXT_COLUMNS, COLUMNS, FLOAT_FORMAT, atomic_write_text, read_results

    seeds = check_seeds(seeds, "seeds")
    frames = []
    for seed in seeds:
        folder = seed_dir(profile, seed)
        for exp in EXPERIMENTS:
            if (folder / f"{exp}.csv").is_file():
                frames.append(read_results(folder / f"{exp}.csv").assign(seed=seed))
    if not frames:
        raise SkinlibError(f"{results_dir(profile.name)}: no results of seeds {', '.join(map(str, seeds))} "
                           "to aggregate")
    allrows = pd.concat(frames, ignore_index=True)
    order = {e: i for i, e in enumerate(EXPERIMENTS)}
    grouped = allrows.groupby(CONTEXT_COLUMNS, sort=False, dropna=False)
    table = grouped.agg(value=("value", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
                        n_seeds=("seed", "nunique"), sd=("value", "std"), min=("value", "min"),
                        max=("value", "max")).reset_index()
    table["_order"] = table["experiment"].map(order)
    table = table.sort_values("_order", kind="stable").drop(columns="_order")
    table = table[COLUMNS + ["n_seeds", "sd", "min", "max"]]
    path = results_dir(profile.name) / SEEDS_TABLE
    atomic_write_text(path, table.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    lines = [ln for ln in text if ln.strip() and not set(ln.strip()) <= set("-")]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln.strip()[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _check_data(profile: Profile) -> None:
    """Fail fast, before any notebook runs, when the data folder is unusable."""
    from skinlib.data import get_source

    info = get_source(profile.data.source)
    if info.needs_data_dir:
        if not profile.data.data_dir:
            raise SkinlibError(f"profile {profile.name}: data source {profile.data.source!r} needs a data "
                               "folder (--data-dir PATH or SKINLIB_DATA_DIR)")
        if not Path(profile.data.data_dir).is_dir():
            raise SkinlibError(f"{profile.data.data_dir}: data folder does not exist")



# --------------------------------------------------------------------------- the book's pages

#: Key of the notebook (and cell) metadata the pipeline writes: notices and placeholders.
NB_META = "skinlib"
#: Tags of the cells that hold the parameters (papermill's and the injected ones).
PARAMETER_TAGS = ("parameters", "injected-parameters")
#: A line of progress output: carriage returns or backspaces (a bar redrawn in place),
#: Keras' bar characters and epoch headers, tqdm's ``n/N [.., it/s]`` tail.
_PROGRESS_LINE = re.compile(r"[\r\x08]|━|^\s*Epoch \d+/\d+\s*$|\|\s*\d+/\d+ \[[^\]]*(it|img)/s\]")


def strip_progress(text: str) -> str:
    """``text`` without its progress-bar lines (Keras ``fit``, tqdm)."""
    lines = text.split("\n")
    kept = [ln for ln in lines if not _PROGRESS_LINE.search(ln)]
    return "\n".join(kept) if len(kept) != len(lines) else text


def tidy_notebook(nb: Any) -> Any:
    """The executed notebook ``nb`` as the book shows it (changed in place and returned).

    - Progress-bar lines are dropped from the stream outputs (a stream left empty goes).
    - The parameter cells (``parameters``, ``injected-parameters``) are tagged
      ``remove-cell``: they matter for provenance (they stay in the file), not for reading.
    - The set-up cells before the page's first section (imports and the profile banner,
      tagged ``hide-input`` in the sources) become ``remove-input``: their output (the
      banner) shows, with no "show code" bar stacked above it.
    - A ``hide-output`` cell left with only stderr output (which the book does not show)
      loses the tag: no empty "show output" bar.

    Idempotent; cells, sources and every other output are left as they are.
    """
    seen_code = False
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            if seen_code:
                break
            continue
        if cell.get("cell_type") != "code":
            continue
        seen_code = True
        tags = list(cell.get("metadata", {}).get("tags", []))
        if set(PARAMETER_TAGS) & set(tags):
            tags = [t for t in tags if t not in ("hide-cell", "hide-input", "remove-cell")] + ["remove-cell"]
        elif "hide-input" in tags:
            tags = [("remove-input" if t == "hide-input" else t) for t in tags]
        else:
            continue
        cell.setdefault("metadata", {})["tags"] = tags
    for cell in nb.cells:
        if cell.get("cell_type") != "code" or not cell.get("outputs"):
            continue
        outputs = []
        for out in cell["outputs"]:
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                text = strip_progress("".join(text) if isinstance(text, list) else text)
                if not text.strip():
                    continue
                out["text"] = text
            outputs.append(out)
        cell["outputs"] = outputs
        tags = cell.get("metadata", {}).get("tags", [])
        if "hide-output" in tags and all(o.get("output_type") == "stream" and o.get("name") == "stderr"
                                         for o in outputs):
            # the book drops stderr (nb_output_stderr: remove): no empty "show output" bar
            cell["metadata"]["tags"] = [t for t in tags if t != "hide-output"]
    return nb


def _write_notebook(nb: Any, path: Path) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def tidy_notebook_file(path: Path) -> None:
    """:func:`tidy_notebook` on the notebook file ``path`` (rewritten whole)."""
    import nbformat

    _write_notebook(tidy_notebook(nbformat.read(str(path), as_version=4)), path)


def _title(page: str) -> str:
    return page.replace("_", " ")


def _notice(text: str, kind: str) -> Any:
    import nbformat

    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata[NB_META] = {"notice": kind}
    return cell


def _placeholder(page: str, kind: str, notice: Any) -> Any:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata[NB_META] = {"placeholder": kind, "page": page}
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {_title(page)}"))
    nb.cells.append(notice)
    return nb


def is_placeholder(nb: Any) -> bool:
    """Whether ``nb`` is a failure or not-run page written by the pipeline, not a run's notebook."""
    return bool(nb.get("metadata", {}).get(NB_META, {}).get("placeholder"))


def _failure_notice(profile_name: str, record: dict[str, Any], has_good: bool) -> Any:
    lead = "The results below are from its last successful run." if has_good else "It has no successful run yet."
    return _notice(f"```{{error}}\nThe latest run of this page (profile `{profile_name}`, {record.get('ended', '')}) "
                   f"failed: `{record.get('error', 'unknown error')}`. {lead}\n```", "failed")


def not_run_page(profile_name: str, page: str) -> Any:
    """The page shown for ``page`` where profile ``profile_name`` has not run it yet."""
    return _placeholder(page, "not-run", _notice(
        f"```{{warning}}\nThis page has not been run yet for profile `{profile_name}`: "
        f"run `skinlib run --profile {profile_name} --only {page}`.\n```", "not-run"))


def with_failure_notice(nb: Optional[Any], profile_name: str, page: str, record: dict[str, Any]) -> Any:
    """The page to show when the latest run of ``page`` failed: the last good notebook
    ``nb`` with an error notice at its top (under the title), or a failure page when
    there is none (``nb`` is None or a placeholder). An older notice is replaced."""
    if nb is None or is_placeholder(nb):
        return _placeholder(page, "failed", _failure_notice(profile_name, record, False))
    nb.cells = [c for c in nb.cells if not c.get("metadata", {}).get(NB_META, {}).get("notice")]
    at = 1 if nb.cells and nb.cells[0].get("cell_type") == "markdown" else 0
    nb.cells.insert(at, _failure_notice(profile_name, record, True))
    return nb


def mark_failed(out: Path, profile_name: str, page: str, record: dict[str, Any]) -> Path:
    """Show the failure of ``page`` where the book reads it: in ``<out>/notebooks/<page>.ipynb``
    (its last good version gets the error notice on top, or a failure page is written)."""
    import nbformat

    path = out / "notebooks" / f"{page}.ipynb"
    nb = None
    if path.is_file():
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # an unreadable notebook is replaced by the failure page
            nb = None
    _write_notebook(with_failure_notice(nb, profile_name, page, record), path)
    return path


# --------------------------------------------------------------------------- the book of a profile

#: The book's documents that runs produce: ``experiments/<page>`` (see ``_toc.yml``).
BOOK_PAGES_DIR = "experiments"


def book_dir(profile_name: str) -> Path:
    """Where :func:`build_book` works for ``profile_name``: ``book/_build/<profile>/``
    (``src/book/`` the staged sources, ``_build/html/`` the HTML, ``build.log``)."""
    from skinlib.paths import safe_name

    return BOOK_DIR / "_build" / safe_name(profile_name, "profile name")


#: Top-level entries of the project that the staged book does not link to.
_NOT_STAGED = {"book", "results"}


def stage_book(profile_name: str, dest: Optional[Path] = None) -> Path:
    """Stage the book of ``profile_name`` under ``dest`` (default ``book_dir(profile)/src``);
    returns the staged book folder, ``dest/book``.

    ``dest/book`` holds the chapters of ``book/`` and the configuration (``_config.yml``,
    ``_toc.yml`` as files), and ``experiments/<page>.ipynb`` for every page: the profile's
    executed notebook (:func:`tidy_notebook`; a failed latest run keeps its notice), a
    failure page, or a page saying it has not been run yet. Beside it, ``dest`` links to
    the project's other top-level folders (``profiles/``, ...), so that what the chapters
    include from outside the book (``../profiles/smoke.yml``) resolves as in ``book/``.
    """
    import nbformat

    dest = Path(dest) if dest is not None else book_dir(profile_name) / "src"
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    book = dest / "book"
    book.mkdir(parents=True)
    for entry in sorted(ROOT.iterdir()):
        if entry.name not in _NOT_STAGED and not entry.name.startswith("."):
            (dest / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    for entry in sorted(BOOK_DIR.iterdir()):
        if entry.name in ("_build", BOOK_PAGES_DIR) or entry.name.startswith("."):
            continue
        if entry.is_dir():
            shutil.copytree(entry, book / entry.name, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        else:
            shutil.copy(entry, book / entry.name)  # follows the _config.yml/_toc.yml links
    out = results_dir(profile_name)
    prov = _read_json(out / "provenance.json")
    for page in ALL_PAGES:
        good = out / "notebooks" / f"{page}.ipynb"
        record = prov.get("experiments", {}).get(page, {})
        nb = nbformat.read(str(good), as_version=4) if good.is_file() else None
        if nb is None:
            nb = (with_failure_notice(None, profile_name, page, record) if record.get("status") == "failed"
                  else not_run_page(profile_name, page))
        _write_notebook(tidy_notebook(nb), book / BOOK_PAGES_DIR / f"{page}.ipynb")
    return book


def jupyter_book() -> str:
    """The ``jupyter-book`` command beside this Python, else on ``PATH``."""
    exe = Path(sys.executable).with_name("jupyter-book")
    found = str(exe) if exe.is_file() else shutil.which("jupyter-book")
    if not found:
        raise SkinlibError("jupyter-book is not installed (pip install -e .)")
    return found


def build_book(profile_name: str, *, build: bool = True) -> dict[str, Any]:
    """Build the book of ``profile_name`` into ``book/_build/<profile>/`` (git-ignored).

    Stages the sources (:func:`stage_book`), then runs ``jupyter-book build`` on them
    (nothing is executed: the pages are the stored notebooks); its output goes to
    ``build.log`` there. Returns ``{"src", "html", "log", "returncode"}``; with
    ``build=False`` only stages (``returncode`` None).
    """
    base = book_dir(profile_name)
    src = stage_book(profile_name, base / "src")
    html = base / "_build" / "html"
    log = base / "build.log"
    result: dict[str, Any] = {"src": src, "html": html, "log": log, "returncode": None}
    if not build:
        return result
    with open(log, "wb") as fh:
        proc = subprocess.run([jupyter_book(), "build", str(src), "--path-output", str(base)],
                              stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT))
    result["returncode"] = proc.returncode
    return result
