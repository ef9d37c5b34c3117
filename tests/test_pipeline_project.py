"""Running a profile leaves the repository as it was, and folders belong to the project
folder the command runs in (not to the clone the package was installed from)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What a second project needs to be recognised as one (and to stage its book).
PROJECT_PARTS = ("profiles", "notebooks", "book", "_toc.yml", "_config.yml")
#: Variables that would point a subprocess at another project or folder.
FOLDER_ENV = ("SKINLIB_PROJECT_DIR", "SKINLIB_RESULTS_DIR", "SKINLIB_CACHE_DIR")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOLDER_ENV}
    env.update(extra)
    return env


def _git_status() -> str:
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return proc.stdout


def test_run_leaves_the_repository_unchanged(tmp_path):
    """`skinlib run` writes its results and cache only: nothing in the working tree
    (tracked or not ignored) changes, book/ included; its page has no progress bars."""
    from skinlib.pipeline import strip_progress

    before = _git_status()
    env = _clean_env(SKINLIB_RESULTS_DIR=str(tmp_path / "results"), SKINLIB_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", "smoke", "--only", "data"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("[skinlib]") == 2  # the terminal: one line as the page starts, one as it ends
    assert _git_status() == before
    nb = nbformat.read(tmp_path / "results" / "smoke" / "notebooks" / "data.ipynb", as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                assert strip_progress(out["text"]) == out["text"], out["text"][:300]
    assert any("remove-cell" in c.metadata.get("tags", []) for c in nb.cells)


def _second_project(base: Path) -> Path:
    project = base / "clone2"
    project.mkdir()
    for name in PROJECT_PARTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, symlinks=True,
                            ignore=shutil.ignore_patterns("_build", "__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy(src, project / name)
    return project


_SHOW = ("from skinlib import paths, profiles; "
         "print(paths.ROOT, paths.results_root(), paths.cache_root(), paths.NOTEBOOKS_DIR, profiles.PROFILES_DIR, "
         "sep='\\n')")


def _where(cwd: Path, **env: str) -> list[Path]:
    proc = subprocess.run([sys.executable, "-c", _SHOW], cwd=cwd, env=_clean_env(**env), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [Path(line) for line in proc.stdout.split()]


def test_folders_belong_to_the_project_the_command_runs_in(tmp_path):
    project = _second_project(tmp_path)
    root, results, cache, notebooks, profiles = _where(project / "notebooks")  # from a subfolder too
    assert root == project.resolve()
    assert results == root / "results" and cache == root / ".cache" / "skinlib"
    assert notebooks == root / "notebooks" and profiles == root / "profiles"

    # SKINLIB_PROJECT_DIR names it from anywhere; the results and cache overrides still win
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root, results, cache, *_ = _where(elsewhere, SKINLIB_PROJECT_DIR=str(project),
                                      SKINLIB_RESULTS_DIR=str(tmp_path / "r"))
    assert root == project.resolve() and results == tmp_path / "r" and cache == root / ".cache" / "skinlib"

    # outside any checkout: the package's own folder
    root, *_ = _where(elsewhere)
    import skinlib.paths

    assert root == skinlib.paths.PACKAGE_ROOT


def test_book_of_a_profile_is_staged_in_its_project(tmp_path):
    """`skinlib book` run in a second project stages that project's results there."""
    project = _second_project(tmp_path)
    notebooks = project / "results" / "smoke" / "notebooks"
    notebooks.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# The data of clone2"))
    nbformat.write(nb, str(notebooks / "data.ipynb"))
    proc = subprocess.run([sys.executable, "-m", "skinlib", "book", "--profile", "smoke", "--stage-only"],
                          cwd=project, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    src = project / "book" / "_build" / "smoke" / "src" / "book"
    assert str(src) in proc.stdout
    assert "clone2" in (src / "experiments" / "data.ipynb").read_text()
    assert "has not been run yet" in (src / "experiments" / "exp0_classifier.ipynb").read_text()


def test_kernels_see_no_progress_bars(tmp_path):
    """Inside a notebook kernel (as papermill runs it) progress bars are off by default."""
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("from skinlib.paths import show_progress\nprint(show_progress())"))
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, str(src))
    saved = os.environ.pop("SKINLIB_PROGRESS", None)
    try:
        papermill.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    finally:
        if saved is not None:
            os.environ["SKINLIB_PROGRESS"] = saved
    text = "".join(o.get("text", "") for o in nbformat.read(out, as_version=4).cells[0].outputs)
    assert text.strip() == "False"


def test_cpu_names_the_model_and_its_vector_instructions():
    from skinlib.pipeline import _SIMD_FLAGS, _cpu

    text = _cpu()
    name, _, simd = text.partition("; ")
    assert name.strip()
    assert set(simd.split()) <= set(_SIMD_FLAGS)
