"""`skinlib data check` and the command line's error contract."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

HAM_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skinlib", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_data_check_synthetic_reports_counts_and_a_clean_split():
    proc = _cli("data", "check", "--source", "synthetic", "--size", "16")
    assert proc.returncode == 0, proc.stderr
    counts = dict(re.findall(r"^\s+(\w+)\s+(\d+)\s+\(", proc.stdout, flags=re.M))
    assert set(counts) == set(HAM_COUNTS)
    assert sum(int(v) for v in counts.values()) == 3000
    assert "lesions in more than one split: 0" in proc.stdout


def test_data_check_real_ham10000(real_ham10000, tmp_path):
    import os

    env = dict(os.environ, SKINLIB_CACHE_DIR=str(tmp_path))
    proc = _cli("data", "check", "--source", "ham10000", "--data-dir", str(real_ham10000), "--size", "32", env=env)
    assert proc.returncode == 0, proc.stderr
    counts = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s+\(", proc.stdout, flags=re.M)}
    assert counts == HAM_COUNTS
    assert "lesions: 7470" in proc.stdout
    assert "lesions in more than one split: 0" in proc.stdout
    assert "200x150: 10015" in proc.stdout


@pytest.mark.parametrize("args, needle", [
    (["data", "check", "--source", "ham10000", "--data-dir", "/nonexistent/ham"], "/nonexistent/ham"),
    (["data", "check", "--source", "nosuch", "--data-dir", "/tmp"], "nosuch"),
    (["run", "--profile", "nosuchprofile"], "nosuchprofile"),
    (["run", "--profile", "smoke", "--only", "exp9"], "exp9"),
    (["run", "--profile", "smoke", "--seeds", "0", "one"], "'one'"),
    (["run", "--profile", "smoke", "--seeds", "1", "--only", "summary"], "primary seed 0"),
    (["page", "exp9", "--profile", "smoke"], "exp9"),
    (["page", "summary", "--profile", "smoke", "--seed", "2"], "primary seed 0 only"),
    (["book", "--profile", "nosuchprofile"], "nosuchprofile"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "page summary", "aggregate", "book"])
def test_a_mistyped_profile_is_rejected_before_tensorflow_loads(command):
    """The profile's existence is checked before the slow TensorFlow import (seconds on 2 cores)."""
    code = ("import sys; from skinlib.cli import main; rc = main(sys.argv[1:]); "
            "print('tensorflow' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *command.split(), "--profile", "nosuchprofile"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "nosuchprofile" in proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("seeds, needle", [(["0", "x"], "'x'"), (["1", "1"], "seed 1 is given twice"),
                                           (["-3"], "-3 is negative"), ([], "at least one seed")])
def test_bad_seeds_are_one_line_errors(seeds, needle):
    from skinlib.errors import SkinlibError
    from skinlib.pipeline import check_seeds

    with pytest.raises(SkinlibError, match=re.escape(needle)):
        check_seeds(seeds)


def test_run_no_longer_publishes_but_accepts_no_publish():
    """`skinlib run` never writes into book/; `--no-publish` (older scripts) is accepted and does nothing."""
    import argparse

    from skinlib.cli import _parser

    parser = _parser()
    args = parser.parse_args(["run", "--profile", "smoke", "--no-publish"])
    assert args.no_publish and args.profile == "smoke"
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    assert "--no-publish" not in run.format_help()
