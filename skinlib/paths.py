"""Where the compendium keeps things: project folder, results, cache, notebooks, book.

The project folder (:data:`ROOT`) is the compendium checkout a command runs in, not the
folder the package was installed from, so that a second clone run with the first clone's
editable install keeps its results, cache and book to itself. It is, in order:

1. ``SKINLIB_PROJECT_DIR`` when set;
2. the nearest ancestor of the current directory (itself included) that is a compendium
   checkout (it holds ``profiles/``, ``notebooks/`` and ``_toc.yml``);
3. the folder above the package (an editable install's checkout).

``SKINLIB_RESULTS_DIR`` and ``SKINLIB_CACHE_DIR`` still override the results and cache
folders on their own.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Optional

from skinlib.errors import SkinlibError

#: The folder above the package: the checkout of an editable install.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: Environment variable naming the project folder explicitly.
PROJECT_ENV = "SKINLIB_PROJECT_DIR"
#: Environment variable switching progress bars (Keras, tqdm) on (``1``) or off (``0``).
PROGRESS_ENV = "SKINLIB_PROGRESS"


def is_project(folder: Path) -> bool:
    """Whether ``folder`` is a compendium checkout (``profiles/``, ``notebooks/``, ``_toc.yml``)."""
    return (folder / "profiles").is_dir() and (folder / "notebooks").is_dir() and (folder / "_toc.yml").is_file()


def project_root(cwd: Optional[Path] = None) -> Path:
    """The project folder: ``SKINLIB_PROJECT_DIR``, else the nearest compendium checkout
    at or above ``cwd`` (default: the current directory), else :data:`PACKAGE_ROOT`."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    try:
        here = (cwd or Path.cwd()).resolve()
    except OSError:  # the current directory was deleted
        return PACKAGE_ROOT
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    return PACKAGE_ROOT


ROOT = project_root()
NOTEBOOKS_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
PROFILES_DIR = ROOT / "profiles"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name (no separators, no ``..``); else a clear error."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise SkinlibError(f"{what}: {name!r} is not a plain name (letters, digits, _ . - only)")
    return name


def results_root() -> Path:
    return Path(os.environ.get("SKINLIB_RESULTS_DIR", ROOT / "results"))


def results_dir(profile_name: str) -> Path:
    return results_root() / safe_name(profile_name, "profile name")


def cache_root() -> Path:
    return Path(os.environ.get("SKINLIB_CACHE_DIR", ROOT / ".cache" / "skinlib"))


def show_progress() -> bool:
    """Whether long loops may draw progress bars (Keras ``fit``, tqdm).

    ``SKINLIB_PROGRESS=0``/``1`` decides when set (``skinlib run`` sets 0 for its
    kernels); otherwise bars are off inside a Jupyter kernel, whose output is stored in
    the executed notebook (each redraw of a bar would be kept: megabytes per page), and
    on elsewhere.
    """
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env:
        return env not in ("0", "false", "no", "off")
    return not _in_kernel()


def _in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (papermill's, or an open notebook's)."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
