"""A failing page never replaces the last good results, and the book shows it as failed."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from skinlib import pipeline


def _fake_page(results_dir, page, text):
    (results_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (results_dir / f"{page}.csv").write_text(text)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {page}"))
    nbformat.write(nb, str(results_dir / "notebooks" / f"{page}.ipynb"))


def test_failed_page_keeps_last_good_results(isolated_dirs, monkeypatch, tmp_path):
    out = isolated_dirs / "results" / "smoke"
    _fake_page(out, "exp0_classifier", "last good\n")

    def crash(page, profile, staging, log_output=True):
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "exp0_classifier.csv").write_text("half written")
        raise RuntimeError("ValueError: something broke in cell 4")

    monkeypatch.setattr(pipeline, "execute_page", crash)
    book = tmp_path / "book"
    monkeypatch.setattr(pipeline, "BOOK_DIR", book)
    prov = pipeline.run("smoke", only=["exp0_classifier"], publish=False, log_output=False)

    assert (out / "exp0_classifier.csv").read_text() == "last good\n"
    record = prov["experiments"]["exp0_classifier"]
    assert record["status"] == "failed" and "something broke" in record["error"]
    assert json.loads((out / "provenance.json").read_text())["experiments"]["exp0_classifier"]["status"] == "failed"

    pipeline.publish_book("smoke", book_dir=book)
    page = nbformat.read(book / "experiments" / "exp0_classifier.ipynb", as_version=4)
    notice = page.cells[1].source
    assert "{error}" in notice and "something broke" in notice and "last successful run" in notice
    never_run = nbformat.read(book / "experiments" / "exp2_2_uap.ipynb", as_version=4)
    assert "has not been run yet" in never_run.cells[1].source


def test_successful_page_is_promoted_whole(isolated_dirs, monkeypatch):
    out = isolated_dirs / "results" / "smoke"

    def ok(page, profile, staging, log_output=True):
        (staging / "notebooks").mkdir(parents=True, exist_ok=True)
        (staging / f"{page}.csv").write_text("new\n")
        nbformat.write(nbformat.v4.new_notebook(), str(staging / "notebooks" / f"{page}.ipynb"))

    monkeypatch.setattr(pipeline, "execute_page", ok)
    pipeline.run("smoke", only=["exp2_1_fgsm"], publish=False, log_output=False)
    assert (out / "exp2_1_fgsm.csv").read_text() == "new\n"
    assert (out / "notebooks" / "exp2_1_fgsm.ipynb").is_file()
    assert not (out / ".staging").exists()


def test_data_folder_checked_before_any_page(isolated_dirs, monkeypatch):
    from skinlib.errors import SkinlibError

    monkeypatch.setattr(pipeline, "execute_page", lambda *a, **k: pytest.fail("a page ran"))
    with pytest.raises(SkinlibError, match="/no/such/folder"):
        pipeline.run("ham10000", data_dir="/no/such/folder", publish=False)


def _ok_page(page, profile, staging, log_output=True):
    """A stand-in for papermill: writes a page's CSV and notebook, naming the seed it ran."""
    (staging / "notebooks").mkdir(parents=True, exist_ok=True)
    (staging / f"{page}.csv").write_text(f"seed {profile.seed}\n")
    nbformat.write(nbformat.v4.new_notebook(), str(staging / "notebooks" / f"{page}.ipynb"))


def test_each_seed_writes_its_own_folder_and_report_pages_run_once(isolated_dirs, monkeypatch, capsys):
    base = isolated_dirs / "results" / "smoke"
    ran = []

    def page(page, profile, staging, log_output=True):
        ran.append((profile.seed, page))
        _ok_page(page, profile, staging)

    monkeypatch.setattr(pipeline, "execute_page", page)
    monkeypatch.setattr(pipeline, "aggregate_seeds", lambda profile, seeds: base / "seeds.csv")
    prov = pipeline.run("smoke", seeds=["0", "2"], publish=False)
    assert ran == [(0, p) for p in pipeline.ALL_PAGES] + [(2, p) for p in pipeline.SEED_PAGES]
    assert (base / "exp0_classifier.csv").read_text() == "seed 0\n"
    assert (base / "seed-2" / "exp0_classifier.csv").read_text() == "seed 2\n"
    assert not (base / "seed-2" / "summary.csv").exists()
    assert json.loads((base / "seed-2" / "provenance.json").read_text())["seed"] == 2
    assert prov["seed"] == 0 and set(prov["seed_runs"]) == {0, 2}
    for seed, pages in ((0, pipeline.ALL_PAGES), (2, pipeline.SEED_PAGES)):
        assert all(pipeline.stamp_path(pipeline.load_profile("smoke"), seed, p).is_file() for p in pages)
    out = capsys.readouterr().out
    assert "[skinlib] smoke seed 2: exp3_3_combined started" in out
    assert re.search(r"\[skinlib\] smoke seed 2: exp3_3_combined finished in \d+ s", out)


def test_failed_page_prints_one_line_with_error_and_notebook(isolated_dirs, monkeypatch, capsys):
    def crash(page, profile, staging, log_output=True):
        (staging / "notebooks").mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(), str(staging / "notebooks" / f"{page}.ipynb"))
        raise RuntimeError("Traceback (most recent call last):\n  File x\nValueError: bad eps 3")

    monkeypatch.setattr(pipeline, "execute_page", crash)
    pipeline.run("smoke", only=["exp2_1_fgsm"], publish=False)
    err = capsys.readouterr().err.strip().splitlines()
    failed = isolated_dirs / "results" / "smoke" / "failed" / "exp2_1_fgsm.ipynb"
    assert len(err) == 1 and "exp2_1_fgsm FAILED" in err[0] and "ValueError: bad eps 3" in err[0]
    assert str(failed) in err[0] and failed.is_file()
    stamp = pipeline.stamp_path(pipeline.load_profile("smoke"), 0, "exp2_1_fgsm")
    assert not stamp.exists()  # the grid sees the job as failed


def test_kernel_noise_goes_to_the_page_log(isolated_dirs, monkeypatch, capfd):
    import os

    def noisy(page, profile, staging, log_output=True):
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit\n")  # as a kernel would, on fd 2
        _ok_page(page, profile, staging)

    monkeypatch.setattr(pipeline, "execute_page", noisy)
    pipeline.run("smoke", only=["data"], publish=False)
    captured = capfd.readouterr()
    assert "cuInit" not in captured.err and "cuInit" not in captured.out
    log = isolated_dirs / "results" / "smoke" / pipeline.GRID_DIR / "seed-0" / "data.log"
    assert "cuInit" in log.read_text()


def test_second_run_of_a_profile_refuses_with_one_line(isolated_dirs):
    import os
    import subprocess
    import sys

    from filelock import FileLock

    lock = FileLock(str(isolated_dirs / "results" / "smoke" / pipeline.GRID_DIR / "run.lock"))
    (isolated_dirs / "results" / "smoke" / pipeline.GRID_DIR).mkdir(parents=True)
    with lock:  # as a running `skinlib run --profile smoke` holds it
        proc = subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", "smoke", "--no-publish"],
                              capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "another `skinlib run` of profile smoke" in proc.stderr
    assert not (isolated_dirs / "results" / "smoke" / "provenance.json").exists()


def test_page_of_one_seed_refuses_while_another_process_runs_it(isolated_dirs, monkeypatch):
    from filelock import FileLock

    from skinlib.errors import SkinlibError

    monkeypatch.setattr(pipeline, "execute_page", _ok_page)
    profile = pipeline.load_profile("smoke")
    grid = isolated_dirs / "results" / "smoke" / pipeline.GRID_DIR / "seed-1"
    grid.mkdir(parents=True)
    with FileLock(str(grid / "exp0_classifier.lock")):
        with pytest.raises(SkinlibError, match="being run by another process"):
            pipeline.execute_one(profile, "exp0_classifier", 1)
    assert pipeline.execute_one(profile, "exp0_classifier", 1)["status"] == "ok"
    with pytest.raises(SkinlibError, match="primary seed 0 only"):
        pipeline.execute_one(profile, "summary", 1)


def _acc(value):
    return [{"grouping": "", "metric": "accuracy", "value": value, "ci_low": value - 0.1, "ci_high": value + 0.1}]


def test_table_over_seeds_has_mean_sd_min_max(isolated_dirs):
    import pandas as pd

    from skinlib.results import COLUMNS, metric_rows, write_results

    profile = pipeline.load_profile("smoke")
    for seed, acc in ((0, 0.5), (1, 0.7), (2, 0.9)):
        rows = metric_rows(_acc(acc), profile="smoke",
                           experiment="exp0_classifier", model="resnet_tiny")
        if seed < 2:  # a second experiment that seed 2 has not run
            rows += metric_rows(_acc(acc / 2), profile="smoke",
                                experiment="exp2_1_fgsm", model="resnet_tiny", attack="fgsm",
                                setting="greybox", param="0.00784314")
            write_results(pipeline.seed_dir(profile, seed) / "exp2_1_fgsm.csv", rows[1:])
        write_results(pipeline.seed_dir(profile, seed) / "exp0_classifier.csv", rows[:1])
    path = pipeline.aggregate_seeds(profile, [0, 1, 2])
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == COLUMNS + ["n_seeds", "sd", "min", "max"]
    exp0 = table[table["experiment"] == "exp0_classifier"].iloc[0]
    assert (exp0["value"], exp0["n_seeds"], exp0["min"], exp0["max"]) == (0.7, 3, 0.5, 0.9)
    assert exp0["sd"] == pytest.approx(0.2) and exp0["ci_low"] == pytest.approx(0.6)
    fgsm = table[table["experiment"] == "exp2_1_fgsm"].iloc[0]
    assert fgsm["n_seeds"] == 2 and fgsm["value"] == pytest.approx(0.3)
    assert path.read_bytes() == pipeline.aggregate_seeds(profile, [0, 1, 2]).read_bytes()

    from skinlib.report import seed_spread
    from skinlib.results import read_results

    spread = seed_spread(table, primary=read_results(pipeline.seed_dir(profile, 0) / "exp0_classifier.csv"))
    row = spread[spread["experiment"] == "exp0_classifier"].iloc[0]
    assert row["shown"] == "0.500 [0.40, 0.60]"  # seed 0's value and bootstrap interval
    assert row["over seeds"] == "0.700 ± 0.200 (0.500-0.900, 3 seeds)"
