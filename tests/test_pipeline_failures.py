"""A failing page never replaces the last good results, and the book shows it as failed."""

from __future__ import annotations

import json

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
