"""The step cache: each finished step of a run is stored under a key of its inputs.

A step (a trained model, a poisoned model, a perturbation, a retrained model) is a
folder ``<cache>/steps/<kind>/<key>/`` whose key hashes the step's parameters and the
source code of the modules that compute it. The folder counts as finished only once
its ``DONE.json`` marker exists (written last, atomically), so a run killed at any
moment redoes exactly the unfinished step; a training step resumes from its own epoch
checkpoints inside the folder. Changing a parameter changes the key of exactly the
steps that depend on it. ``--force`` makes every step of the current run start afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Optional

from skinlib.paths import cache_root

FORCE_ENV = "SKINLIB_FORCE_RUN_ID"


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """SHA-256 over the source files of ``modules`` (their code is part of the key)."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()


def params_key(params: dict[str, Any], code: str = "") -> str:
    blob = json.dumps(params, sort_keys=True, default=str) + code
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class StepCache:
    """Finished steps under ``root`` (default ``<repo>/.cache/skinlib/steps``)."""

    def __init__(self, root: Optional[Path] = None, force_run_id: Optional[str] = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "steps"
        self.force_run_id = force_run_id if force_run_id is not None else os.environ.get(FORCE_ENV) or None

    def folder(self, kind: str, params: dict[str, Any], modules: Iterable[ModuleType] = ()) -> Path:
        return self.root / kind / params_key(params, code_fingerprint(modules))

    def is_done(self, folder: Path) -> bool:
        marker = folder / "DONE.json"
        if not marker.is_file():
            return False
        if self.force_run_id:
            try:
                return json.loads(marker.read_text()).get("run_id") == self.force_run_id
            except (OSError, ValueError):
                return False
        return True

    def run(self, kind: str, params: dict[str, Any], compute: Callable[[Path], None],
            modules: Iterable[ModuleType] = ()) -> Path:
        """Return the finished folder of this step, computing it with ``compute(folder)`` if needed."""
        folder = self.folder(kind, params, modules)
        if self.is_done(folder):
            return folder
        if self.force_run_id and folder.exists():
            started_by = folder / "STARTED"
            if not started_by.is_file() or started_by.read_text() != self.force_run_id:
                shutil.rmtree(folder)  # left by an earlier run: --force starts it afresh
        folder.mkdir(parents=True, exist_ok=True)
        if self.force_run_id:
            (folder / "STARTED").write_text(self.force_run_id)
        started = time.time()
        compute(folder)
        marker = {"kind": kind, "params": params, "run_id": self.force_run_id,
                  "seconds": round(time.time() - started, 3)}
        tmp = folder / "DONE.json.tmp"
        tmp.write_text(json.dumps(marker, indent=1, sort_keys=True, default=str))
        os.replace(tmp, folder / "DONE.json")
        return folder
