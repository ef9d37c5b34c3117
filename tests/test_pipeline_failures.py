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
    prov = pipeline.run("smoke", only=["exp0_classifier"], log_output=False)

    assert (out / "exp0_classifier.csv").read_text() == "last good\n"
    record = prov["experiments"]["exp0_classifier"]
    assert record["status"] == "failed" and "something broke" in record["error"]
    assert json.loads((out / "provenance.json").read_text())["experiments"]["exp0_classifier"]["status"] == "failed"

    # where the book reads the page: the last good version, the error on top
    page = nbformat.read(out / "notebooks" / "exp0_classifier.ipynb", as_version=4)
    assert page.cells[0].source == "# exp0_classifier"
    notice = page.cells[1].source
    assert "{error}" in notice and "something broke" in notice and "last successful run" in notice
    assert not pipeline.is_placeholder(page)

    # failing again: one notice (the latest), not two
    def crash_again(page, profile, staging, log_output=True):
        raise RuntimeError("KeyError: x")

    monkeypatch.setattr(pipeline, "execute_page", crash_again)
    pipeline.run("smoke", only=["exp0_classifier"], log_output=False)
    page = nbformat.read(out / "notebooks" / "exp0_classifier.ipynb", as_version=4)
    notices = [c for c in page.cells if "{error}" in c.source]
    assert len(notices) == 1 and "KeyError: x" in notices[0].source

    # a page that never succeeded becomes a failure page there
    pipeline.run("smoke", only=["exp2_1_fgsm"], log_output=False)
    failed = nbformat.read(out / "notebooks" / "exp2_1_fgsm.ipynb", as_version=4)
    assert pipeline.is_placeholder(failed) and "no successful run yet" in failed.cells[1].source

    # the staged book: those pages as they are, a page not run yet says so
    src = pipeline.stage_book("smoke", tmp_path / "src")
    staged = nbformat.read(src / "experiments" / "exp0_classifier.ipynb", as_version=4)
    assert "KeyError: x" in staged.cells[1].source
    never_run = nbformat.read(src / "experiments" / "exp2_2_uap.ipynb", as_version=4)
    assert "has not been run yet" in never_run.cells[1].source
    assert {p.stem for p in (src / "experiments").glob("*.ipynb")} == set(pipeline.ALL_PAGES)
    assert (src / "_toc.yml").is_file() and not (src / "_toc.yml").is_symlink()
    assert (src / "_config.yml").is_file() and (src / "intro.md").is_file()

    # and a later success replaces the page whole, notice gone
    monkeypatch.setattr(pipeline, "execute_page", _ok_page)
    pipeline.run("smoke", only=["exp0_classifier"], log_output=False)
    page = nbformat.read(out / "notebooks" / "exp0_classifier.ipynb", as_version=4)
    assert not any("{error}" in c.source for c in page.cells)


def test_successful_page_is_promoted_whole(isolated_dirs, monkeypatch):
    out = isolated_dirs / "results" / "smoke"

    def ok(page, profile, staging, log_output=True):
        (staging / "notebooks").mkdir(parents=True, exist_ok=True)
        (staging / f"{page}.csv").write_text("new\n")
        nbformat.write(nbformat.v4.new_notebook(), str(staging / "notebooks" / f"{page}.ipynb"))

    monkeypatch.setattr(pipeline, "execute_page", ok)
    pipeline.run("smoke", only=["exp2_1_fgsm"], log_output=False)
    assert (out / "exp2_1_fgsm.csv").read_text() == "new\n"
    assert (out / "notebooks" / "exp2_1_fgsm.ipynb").is_file()
    assert not (out / ".staging").exists()


def test_data_folder_checked_before_any_page(isolated_dirs, monkeypatch):
    from skinlib.errors import SkinlibError

    monkeypatch.setattr(pipeline, "execute_page", lambda *a, **k: pytest.fail("a page ran"))
    with pytest.raises(SkinlibError, match="/no/such/folder"):
        pipeline.run("ham10000", data_dir="/no/such/folder")


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

    def aggregate(profile, seeds):
        ran.append((tuple(seeds), "aggregate"))
        return base / "seeds.csv"

    monkeypatch.setattr(pipeline, "execute_page", page)
    monkeypatch.setattr(pipeline, "aggregate_seeds", aggregate)
    prov = pipeline.run("smoke", seeds=["0", "2"])
    # every seed's experiments, the table over seeds, then the report pages (the summary shows the table)
    assert ran == ([(0, p) for p in pipeline.SEED_PAGES] + [(2, p) for p in pipeline.SEED_PAGES]
                   + [((0, 2), "aggregate")] + [(0, p) for p in pipeline.REPORT_PAGES])
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
    pipeline.run("smoke", only=["exp2_1_fgsm"])
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
    pipeline.run("smoke", only=["data"])
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
        proc = subprocess.run([sys.executable, "-m", "skinlib", "run", "--profile", "smoke"],
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

    # the summary's view of it: the seed the book shows beside the spread, in percent, and in words
    from skinlib.pages import table_width
    from skinlib.report import seed_spread_markdown, seed_spread_tables

    shown = seed_spread_tables(table, read_results(pipeline.seed_dir(profile, 0) / "exp0_classifier.csv"))
    assert list(shown) == ["exp0", "exp2.1"] and list(shown["exp0"].index) == ["resnet_tiny · clean"]
    assert shown["exp0"].iloc[0].tolist() == ["accuracy", "50.0 [40, 60]", "70.0 ± 20.0", "50.0 to 90.0"]
    assert shown["exp0"].columns[2] == "3 seeds: mean ± sd" and shown["exp2.1"].columns[2] == "2 seeds: mean ± sd"
    assert shown["exp2.1"].iloc[0, 1] == "—"  # seed 0's exp2.1 is not in the exp0 CSV handed in
    assert max(table_width(f) for f in shown.values()) < 80  # fits the book's column
    words = seed_spread_markdown(table).splitlines()
    assert words[0].startswith("- exp0_classifier: 3 training seeds; the largest sd of an accuracy over seeds "
                               "is 20.0 points, as large as the bootstrap intervals' median half-width of 10.0")
    assert words[1].startswith("- exp2_1_fgsm: 2 training seeds")

    # the leakage check of each seed that has one, found in its own folder
    from skinlib.report import leakage_over_seeds

    for seed, image in ((0, 0.75), (2, 0.71)):
        pd.DataFrame({"model": ["resnet_tiny"] * 2, "split": ["by_image", "by_lesion"],
                      "accuracy": [image, 0.70]}).to_csv(pipeline.seed_dir(profile, seed) / "exp0_split_leakage.csv")
    files = pipeline.seed_files(profile, "exp0_split_leakage.csv")
    assert list(files) == [0, 2] and files[2].parent.name == "seed-2"
    text = leakage_over_seeds({k: pd.read_csv(v) for k, v in files.items()})
    assert "resnet_tiny +5.0 (seed 0), +1.0 (seed 2); mean +3.0" in text


def _progress_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("profile = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters", "hide-cell"]}),
        nbformat.v4.new_code_cell("import x\ndisplay(banner)", metadata={"tags": ["hide-input"]}),
        nbformat.v4.new_code_cell("train()", metadata={"tags": ["hide-output"]}),
        nbformat.v4.new_markdown_cell("## A section"),
        nbformat.v4.new_code_cell("plot()", metadata={"tags": ["hide-input"]}),
        nbformat.v4.new_code_cell("quiet()", metadata={"tags": ["hide-output"]}),
    ]
    nb.cells[7].outputs = [nbformat.v4.new_output("stream", name="stderr", text="Epoch 1/2\nsome warning\n")]
    keras = ("\r\x1b[1m  1/219\x1b[0m \x1b[37m━━━━━━━━━━\x1b[0m 2s/step - loss: 1.99"
             "\x08\x08\x08\r\x1b[1m219/219\x1b[0m ━━━━━━━━━━ 12s 56ms/step - loss: 0.8\n")
    nb.cells[4].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="Epoch 1/6\n"),
        nbformat.v4.new_output("stream", name="stdout", text=keras),
        nbformat.v4.new_output("stream", name="stderr",
                               text="decoding: 100%|██████████| 70/70 [00:01<00:00, 52.1img/s]\n"),
        nbformat.v4.new_output("stream", name="stdout", text="kept line\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "a figure"}),
    ]
    return nb


def test_tidy_notebook_strips_progress_and_hides_setup():
    nb = pipeline.tidy_notebook(_progress_notebook())
    tags = [c.metadata.get("tags") for c in nb.cells]
    assert tags[1] == ["parameters", "remove-cell"]
    assert tags[2] == ["injected-parameters", "remove-cell"]
    assert tags[3] == ["remove-input"]  # the import/banner cell: its output shows, no code bar
    assert tags[4] == ["hide-output"]
    assert tags[6] == ["hide-input"]  # a figure's code below the first section stays one click away
    assert tags[7] == []  # only stderr left, which the book drops: no empty "show output" bar
    assert nb.cells[7].outputs[0].text == "some warning\n"
    outputs = nb.cells[4].outputs
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == ["kept line\n"]
    assert outputs[-1].output_type == "display_data"
    again = pipeline.tidy_notebook(nbformat.from_dict(json.loads(json.dumps(nb))))
    assert again == nb  # idempotent


def test_promoted_notebook_is_tidied(isolated_dirs, monkeypatch):
    def noisy(page, profile, staging, log_output=True):
        (staging / "notebooks").mkdir(parents=True, exist_ok=True)
        nbformat.write(_progress_notebook(), str(staging / "notebooks" / f"{page}.ipynb"))

    monkeypatch.setattr(pipeline, "execute_page", noisy)
    pipeline.run("smoke", only=["data"])
    text = (isolated_dirs / "results" / "smoke" / "notebooks" / "data.ipynb").read_text()
    assert "━" not in text and "Epoch 1/6" not in text and "it/s" not in text and "img/s" not in text
    assert '"remove-cell"' in text


def test_kernels_draw_no_progress_bars():
    from skinlib.paths import PROGRESS_ENV

    assert pipeline.KERNEL_ENV[PROGRESS_ENV] == "0"
