"""The step cache under concurrency: one process computes a step, the others wait and
reuse it; a killed holder leaves the step neither locked nor half-read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from skinlib.steps import StepCache

# A step whose computation takes a while and leaves a trace of every time it ran.
WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from skinlib.steps import StepCache

    root, log, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    def compute(folder):
        with open(log, "a") as fh:
            fh.write(f"computed by {os.getpid()}\\n")
        (folder / "part1").write_text("half")
        time.sleep(seconds)
        (folder / "value.txt").write_text("42")

    folder = StepCache(root).run("demo", {"x": 1}, compute)
    print(folder, (folder / "value.txt").read_text(), flush=True)
""")


def _start(tmp_path: Path, seconds: float) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "steps"), str(tmp_path / "log.txt"),
                             str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, SKINLIB_FORCE_RUN_ID=""))


def test_two_processes_needing_one_step_compute_it_once(tmp_path):
    first = _start(tmp_path, 3.0)
    while not (tmp_path / "log.txt").is_file():  # the first one holds the lock and computes
        time.sleep(0.05)
    second = _start(tmp_path, 0.0)
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert (tmp_path / "log.txt").read_text().count("computed by") == 1
    assert out1 == out2 and out1.strip().endswith(" 42")
    assert "being computed by another job; waiting" in err2


def test_killed_holder_neither_blocks_nor_leaves_a_readable_half_step(tmp_path):
    holder = _start(tmp_path, 60.0)
    while not (tmp_path / "log.txt").is_file():
        time.sleep(0.05)
    time.sleep(0.3)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    cache = StepCache(tmp_path / "steps", force_run_id="")
    folder = cache.folder("demo", {"x": 1})
    assert (folder / "part1").is_file() and not cache.is_done(folder)  # left unfinished, not marked done

    again = _start(tmp_path, 0.0)
    out, err = again.communicate(timeout=60)  # the lock went with the killed process
    assert again.returncode == 0, err
    assert out.strip().endswith(" 42") and cache.is_done(folder)
    assert (tmp_path / "log.txt").read_text().count("computed by") == 2
