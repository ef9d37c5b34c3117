"""``skinlib run``: execute the experiment notebooks of a profile with papermill.

Each page (the data chapter, the seven experiments, the summary and appendix pages) is
executed into a staging folder; only a notebook that ran to the end is promoted, with
its results, into ``results/<profile>/`` (files renamed into place). A failed or killed
page never replaces the last good results of that profile; it is recorded as failed in
``provenance.json`` and shown as failed in the book.
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
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

from skinlib.errors import SkinlibError
from skinlib.paths import BOOK_DIR, NOTEBOOKS_DIR, ROOT, results_dir
from skinlib.profiles import Profile, load_profile
from skinlib.steps import FORCE_ENV

#: Experiment ids of DESIGN.md, in run order.
EXPERIMENTS: tuple[str, ...] = (
    "exp0_classifier", "exp1_poisoning", "exp2_1_fgsm", "exp2_2_uap",
    "exp3_1_retraining", "exp3_2_llt", "exp3_3_combined", "exp4_adaptive",
)
#: Report pages executed around the experiments (not experiments: they write no CSV).
PAGES_BEFORE: tuple[str, ...] = ("data",)
PAGES_AFTER: tuple[str, ...] = ("summary", "provenance", "benchmarks")
ALL_PAGES: tuple[str, ...] = PAGES_BEFORE + EXPERIMENTS + PAGES_AFTER

PACKAGES = ("tensorflow", "keras", "adversarial-robustness-toolbox", "numpy", "pillow",
            "scikit-learn", "pandas", "seaborn", "matplotlib", "papermill", "jupytext",
            "jupyter-book", "myst-nb")


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
    return {"platform": platform.platform(), "processor": platform.machine(),
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


def execute_page(page: str, profile: Profile, out_dir: Path, *, log_output: bool = True) -> Path:
    """Run ``notebooks/<page>.ipynb`` with papermill; results go to ``out_dir``, the
    executed notebook to ``out_dir/notebooks/``."""
    import papermill

    source = NOTEBOOKS_DIR / f"{page}.ipynb"
    if not source.is_file():
        raise SkinlibError(f"{source}: notebook missing (run `jupytext --sync notebooks/*.py`)")
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    executed = out_dir / "notebooks" / f"{page}.ipynb"
    papermill.execute_notebook(
        str(source), str(executed), kernel_name="python3", cwd=str(ROOT), progress_bar=False,
        log_output=log_output, stdout_file=sys.stdout if log_output else None,
        parameters={"profile": profile.name, "data_dir": profile.data.data_dir, "results_dir": str(out_dir)},
    )
    return executed


def run(profile_name: str, *, data_dir: Optional[str] = None, only: Optional[Sequence[str]] = None,
        force: bool = False, publish: bool = True, log_output: bool = True) -> dict[str, Any]:
    """Execute the pages of ``profile_name``; returns the provenance record."""
    profile = load_profile(profile_name, data_dir=data_dir)
    pages = list(ALL_PAGES)
    if only:
        unknown = [p for p in only if p not in ALL_PAGES]
        if unknown:
            raise SkinlibError(f"--only: unknown experiment {unknown[0]!r}; valid: {', '.join(ALL_PAGES)}")
        pages = [p for p in ALL_PAGES if p in only]
    _check_data(profile)

    out = results_dir(profile.name)
    out.mkdir(parents=True, exist_ok=True)
    prov_path = out / "provenance.json"
    prov = _read_json(prov_path)
    prov.update({
        "profile": profile.name, "parameters": profile.to_dict(), "git_commit": _git_commit(),
        "packages": _versions(), "hardware": _hardware(), "command": " ".join(sys.argv),
    })
    prov.setdefault("experiments", {})
    run_id = uuid.uuid4().hex if force else ""
    previous_force = os.environ.get(FORCE_ENV)
    os.environ[FORCE_ENV] = run_id
    try:
        for page in pages:
            staging = out / ".staging" / page
            shutil.rmtree(staging, ignore_errors=True)
            started = datetime.now(timezone.utc)
            t0 = time.perf_counter()
            record: dict[str, Any] = {"started": started.isoformat(timespec="seconds"),
                                      "git_commit": prov["git_commit"]}
            print(f"[skinlib] {profile.name}: {page} ...", flush=True)
            try:
                execute_page(page, profile, staging, log_output=log_output)
                _promote(staging, out)
                (out / "failed" / f"{page}.ipynb").unlink(missing_ok=True)
                record["status"] = "ok"
            except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
                record["status"] = "failed"
                record["error"] = _one_line(exc)
                failed_nb = staging / "notebooks" / f"{page}.ipynb"
                if failed_nb.is_file():
                    (out / "failed").mkdir(exist_ok=True)
                    os.replace(failed_nb, out / "failed" / f"{page}.ipynb")
                shutil.rmtree(staging, ignore_errors=True)
                print(f"[skinlib] {page} FAILED: {record['error']}", file=sys.stderr, flush=True)
            record["ended"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record["duration_s"] = round(time.perf_counter() - t0, 1)
            record["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
            prov["experiments"][page] = record
            if (out / "dataset.json").is_file():
                prov["dataset"] = _read_json(out / "dataset.json")
            _atomic_json(prov_path, prov)
    finally:
        if previous_force is None:
            os.environ.pop(FORCE_ENV, None)
        else:
            os.environ[FORCE_ENV] = previous_force
    shutil.rmtree(out / ".staging", ignore_errors=True)
    if publish:
        publish_book(profile.name)
    return prov


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
