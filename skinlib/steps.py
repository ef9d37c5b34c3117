"""The step cache: each finished step of a run is stored under a key of its inputs.

A step (a trained model, a poisoned model, a perturbation, a retrained model) is a
folder ``<cache>/steps/<kind>/<key>/`` whose key hashes the step's parameters and the
source code of the modules that compute it. The folder counts as finished only once
its ``DONE.json`` marker exists (written last, atomically), so a run killed at any
moment redoes exactly the unfinished step; a training step resumes from its own epoch
checkpoints inside the folder. Changing a parameter changes the key of exactly the
steps that depend on it. ``--force`` makes every step of the current run start afresh.

Concurrency: jobs running at once (the Snakemake grid, two ``skinlib run``) may need the
same step. Each step has a lock file beside its folder (``<key>.lock``, a
:class:`filelock.FileLock`): the first job to need the step computes it while holding
the lock, the others wait for the lock and then find the step finished and reuse it.
The lock is an OS lock, released by the kernel when its holder dies, so a killed job
never leaves a step locked; the step it left unfinished has no ``DONE.json``, so no one
reads it, and the next holder of the lock computes it again in the same folder (a
training step resumes from its last epoch checkpoint, other files are overwritten).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
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
        from filelock import FileLock, Timeout

        folder = self.folder(kind, params, modules)
        if self.is_done(folder):
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"[skinlib] step {kind}/{folder.name} is being computed by another job; waiting for it",
                  file=sys.stderr, flush=True)
            lock.acquire()
        try:
            if self.is_done(folder):  # finished by the job we waited for
                return folder
            return self._compute(kind, params, compute, folder)
        finally:
            lock.release()

    def _compute(self, kind: str, params: dict[str, Any], compute: Callable[[Path], None], folder: Path) -> Path:
        """Compute the step into ``folder`` (the caller holds its lock), then mark it done."""
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
