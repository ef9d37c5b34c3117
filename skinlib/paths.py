"""Where the compendium keeps things: repository root, results, cache, notebooks, book."""

from __future__ import annotations

import os
import re
from pathlib import Path

from skinlib.errors import SkinlibError

ROOT = Path(__file__).resolve().parent.parent
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
