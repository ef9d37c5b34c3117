"""``skinlib run``: execute the pages of a profile with papermill, one seed after another.

The pages of one (profile, seed) and what each reads from the others are declared once,
in :data:`PAGE_NEEDS`; ``skinlib run`` executes them in that order, and the Snakemake
workflow (``workflow/Snakefile``) turns the same table into jobs that run in parallel
or on a cluster. Both execute a page through :func:`execute_one` (the Snakefile's jobs
call ``skinlib page``), so there is one code path and the CSVs are byte-identical.

Each page is executed into a staging folder; only a notebook that ran to the end is
promoted, with its results, into the seed's results folder (files renamed into place).
A failed or killed page never replaces the last good results of that profile; it is
recorded as failed in ``provenance.json`` and shown as failed in the book.

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

import json
import os
import platform
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
from skinlib.paths import BOOK_DIR, NOTEBOOKS_DIR, PROFILES_DIR, ROOT, results_dir
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

#: Environment of the notebook kernels: TensorFlow's C++ and absl start-up lines stay out.
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


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
    return {"platform": platform.platform(), "processor": platform.machine(), "node": platform.node(),
            "cpu_count": os.cpu_count(), "memory_gib": mem_gib, "gpus": gpus}


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
                                  "seed": seed, "node": platform.node()}
        _say(f"{label} started")
        saved_env = {k: os.environ.get(k) for k in KERNEL_ENV}
        os.environ.update({k: os.environ.get(k) or v for k, v in KERNEL_ENV.items()})
        try:
            with _quiet_stderr(grid / f"{page}.log"):
                execute_page(page, run_profile, staging, log_output=log_output)
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
        seeds: Optional[Sequence[Any]] = None, force: bool = False, publish: bool = True,
        log_output: bool = False) -> dict[str, Any]:
    """Execute the pages of ``profile_name`` for each of ``seeds`` (default: the profile's
    ``seeds``), one after another; then, with more than one seed, the table over seeds.

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
            for seed, pages in plan:
                statuses[seed] = {}
                for page in pages:
                    record = execute_one(profile, page, seed, log_output=log_output)
                    statuses[seed][page] = record["status"]
            if len(seed_list) > 1 and set(EXPERIMENTS) & {p for _, pages in plan for p in pages}:
                path = aggregate_seeds(profile, seed_list)
                _say(f"{profile.name}: table over seeds {', '.join(map(str, seed_list))} written to {path}")
    finally:
        if previous_force is None:
            os.environ.pop(FORCE_ENV, None)
        else:
            os.environ[FORCE_ENV] = previous_force
    if publish and profile.primary_seed in seed_list:
        publish_book(profile.name)
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


def _notice_cell(text: str) -> dict[str, Any]:
    import nbformat

    return nbformat.v4.new_markdown_cell(text)


def publish_book(profile_name: str, book_dir: Path = BOOK_DIR) -> list[Path]:
    """Copy the executed pages of ``profile_name`` into ``book/experiments/``.

    A page whose latest run failed gets a warning at its top (with the error) above its
    last good version, or becomes a failure page when it never succeeded; a page not run
    yet in this profile says so. Nothing else in the book is touched.
    """
    import nbformat

    out = results_dir(profile_name)
    prov = _read_json(out / "provenance.json")
    target = book_dir / "experiments"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for page in ALL_PAGES:
        good = out / "notebooks" / f"{page}.ipynb"
        record = prov.get("experiments", {}).get(page, {})
        title = page.replace("_", " ")
        if good.is_file():
            nb = nbformat.read(good, as_version=4)
        else:
            nb = nbformat.v4.new_notebook()
            nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
            if record.get("status") != "failed":
                nb.cells.append(_notice_cell(
                    f"```{{warning}}\nThis page has not been run yet for profile `{profile_name}`: "
                    f"run `skinlib run --profile {profile_name} --only {page}`.\n```"))
        for cell in nb.cells:  # the parameter cells matter for provenance, not for reading
            tags = cell.get("metadata", {}).get("tags", [])
            if {"parameters", "injected-parameters"} & set(tags) and "hide-cell" not in tags:
                cell.setdefault("metadata", {})["tags"] = [*tags, "hide-cell"]
        if record.get("status") == "failed":
            when = record.get("ended", "")
            lead = ("The results below are from its last successful run." if good.is_file()
                    else "It has no successful run yet.")
            notice = (f"```{{error}}\nThe latest run of this page (profile `{profile_name}`, {when}) "
                      f"failed: `{record.get('error', 'unknown error')}`. {lead}\n```")
            insert_at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
            nb.cells.insert(insert_at, _notice_cell(notice))
        dst = target / f"{page}.ipynb"
        tmp = dst.with_name(dst.name + ".tmp")
        nbformat.write(nb, str(tmp))
        os.replace(tmp, dst)
        written.append(dst)
    return written
