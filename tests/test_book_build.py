"""The book: it builds with no warnings, and every page works in a real browser.

The published book is the committed ``ham10000`` run: ``book/experiments`` is a tracked
relative link to ``results/ham10000/notebooks``, so ``jupyter-book build book/`` reads the
executed notebooks where the run left them (one copy). The tests build a copy of the
repository's book (so ``book/_build`` and the working tree are left alone), the link and
its target included, and check that every page of the table of contents is there.
The book of any other profile (``skinlib book``) is staged and built too, from
placeholders and a failed page, with no warnings.

The browser test serves the built HTML on 127.0.0.1 and opens every page of the table
of contents in headless Chromium (Playwright) at a 1280 px wide viewport. It checks that
each page loads, that its HTML file stays under 1.5 MB, that every image decodes, that no
table is wider than the page's content column, that every internal link reaches an
existing file, and that no page shows a Python traceback or an error output.
Screenshots of the front page and of one experiment page are saved to
``book/_build/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SCREENSHOTS = BOOK / "_build" / "screenshots"
#: Folder of the book holding the executed notebooks: a link to the published run's.
GENERATED = "experiments/"
#: Where ``book/experiments`` points (relative to ``book/``): the committed ham10000 run.
PUBLISHED = "../results/ham10000/notebooks"
#: The largest HTML file a page may have (bytes).
MAX_PAGE_BYTES = 1_500_000
#: The page that answers the research questions, and the profile the published book shows.
SUMMARY_DOC = "experiments/summary"
PUBLISHED_PROFILE = "ham10000"


def _verdict_keys() -> list[tuple[str, str]]:
    """(research question, model) pairs the published summary must answer, one sentence each."""
    from skinlib.profiles import load_profile
    from skinlib.verdicts import RESEARCH_QUESTIONS

    models = load_profile(PUBLISHED_PROFILE).models
    return [(rq, m) for rq in RESEARCH_QUESTIONS for m in models]
SOURCE_SUFFIXES = (".md", ".ipynb")
#: Top-level paths the copy leaves out: version control, environments, caches, builds.
SKIP_TOP = {".git", ".venv", ".cache", ".pytest_cache", "artifacts", "build", "results"}
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Traces of a failed cell or a failed run in rendered HTML (myst-nb error outputs,
#: and the error notice ``skinlib run`` puts on a page whose latest run failed).
ERROR_SELECTORS = ".output.traceback, .output.error, div.admonition.error"


def toc_documents(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every document of the table of contents, root first, in reading order."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    docs = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                docs.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [str(Path(d).with_suffix("")) if Path(d).suffix in SOURCE_SUFFIXES else d for d in docs]


def missing_documents(book: Path = BOOK) -> list[str]:
    """Documents of the table of contents with no source file in ``book``."""
    return [d for d in toc_documents() if not any((book / f"{d}{s}").is_file() for s in SOURCE_SUFFIXES)]


def _copy_repository(dest: Path) -> None:
    """The files the book build reads (the book, its configuration, what it includes,
    and the published run's notebooks that ``book/experiments`` links to)."""
    ignore = shutil.ignore_patterns("_build", ".ipynb_checkpoints", "__pycache__", "*.egg-info")
    for entry in ROOT.iterdir():
        if entry.name in SKIP_TOP:
            continue
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(entry, target, follow_symlinks=False)
    published = (BOOK / PUBLISHED).resolve()
    if published.is_dir():
        shutil.copytree(published, dest / published.relative_to(ROOT.resolve()), ignore=ignore)


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    found = str(exe) if exe.is_file() else shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book is not installed (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> dict:
    """Build a copy of the book once per session; returns its HTML folder and the log."""
    work = tmp_path_factory.mktemp("book")
    repo = work / "repo"
    repo.mkdir()
    _copy_repository(repo)
    for doc in (d for d in missing_documents(repo / "book") if d.startswith(GENERATED)):
        page = repo / "book" / f"{doc}.md"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"# {Path(doc).name}\n\nPlaceholder: this page is published by `skinlib run`.\n",
                        encoding="utf-8")
    out = work / "out"
    proc = subprocess.run(
        [_jupyter_book(), "build", str(repo / "book"), "--path-output", str(out), "-W", "--keep-going"],
        cwd=repo, capture_output=True, text=True, timeout=900)
    return {"returncode": proc.returncode, "log": proc.stdout + proc.stderr, "html": out / "_build" / "html"}


def test_book_config_is_shared():
    """book/_config.yml and book/_toc.yml are relative links to the top-level files."""
    for name in ("_config.yml", "_toc.yml"):
        link = BOOK / name
        assert link.is_symlink(), f"book/{name} should be a symlink to ../{name}"
        assert not Path(link.readlink()).is_absolute(), f"book/{name} should be a relative symlink"
        assert link.resolve() == (ROOT / name).resolve()


def test_published_pages_are_the_ham10000_run():
    """book/experiments is a tracked relative link to the committed ham10000 notebooks
    (one copy: `skinlib run` never writes into book/)."""
    link = BOOK / "experiments"
    assert link.is_symlink(), "book/experiments should be a symlink to " + PUBLISHED
    assert str(link.readlink()) == PUBLISHED
    assert link.resolve() == (ROOT / "results" / "ham10000" / "notebooks").resolve()
    tracked = subprocess.run(["git", "ls-files", "-s", "book/experiments"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0:
        assert tracked.stdout.startswith("120000 "), "book/experiments should be committed as a link"


def test_book_pages_present():
    """Every page of the table of contents exists in book/ (the published run's included)."""
    missing = missing_documents()
    assert not missing, f"pages listed in _toc.yml but absent from book/: {missing}"


def test_published_notebooks_are_tidy():
    """The published pages hold no progress-bar output and no visible parameter cells."""
    import nbformat

    from skinlib.pipeline import PARAMETER_TAGS, strip_progress

    for path in sorted((BOOK / "experiments").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if set(PARAMETER_TAGS) & set(tags):
                assert "remove-cell" in tags, f"{path.name}: parameter cell shown"
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    assert strip_progress(out["text"]) == out["text"], f"{path.name}: progress output"


def test_staged_book_of_a_profile_builds_without_warnings(isolated_dirs, tmp_path):
    """`skinlib book` stages a profile's book: pages not run and a failed page become
    placeholders, and the staged sources build with no warnings."""
    from skinlib import pipeline

    record = {"status": "failed", "error": "ValueError: broken", "ended": "2026-01-01T00:00:00+00:00"}
    pipeline.mark_failed(isolated_dirs / "results" / "smoke", "smoke", "exp2_1_fgsm", record)
    src = pipeline.stage_book("smoke", tmp_path / "src")
    proc = subprocess.run([_jupyter_book(), "build", str(src), "--path-output", str(tmp_path / "out"), "-W",
                           "--keep-going"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    html = tmp_path / "out" / "_build" / "html"
    for doc in toc_documents():
        assert (html / f"{doc}.html").is_file(), f"{doc}.html was not built"
    assert "has not been run yet" in (html / "experiments" / "exp0_classifier.html").read_text()
    failed = (html / "experiments" / "exp2_1_fgsm.html").read_text()
    assert "The latest run of this page" in failed and "broken" in failed


def test_book_builds_without_warnings(built_book):
    log = built_book["log"]
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert built_book["returncode"] == 0, \
        "jupyter-book build -W failed:\n" + "\n".join(warnings or log.splitlines()[-40:])
    assert not warnings, "the book build printed warnings:\n" + "\n".join(warnings)
    for doc in toc_documents():
        assert (built_book["html"] / f"{doc}.html").is_file(), f"{doc}.html was not built"


# ------------------------------------------------------------------------------ browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002, D102
        pass


@pytest.fixture(scope="session")
def served_book(built_book) -> Iterator[str]:
    """The built HTML served on 127.0.0.1 (a free port) for the session; yields its URL."""
    if built_book["returncode"] != 0:
        pytest.skip("the book did not build (see test_book_builds_without_warnings)")
    handler = functools.partial(_QuietHandler, directory=str(built_book["html"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through Playwright; skipped with install hints where either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install playwright (or pip install -e '.[test]')")
    executable = next((c for c in CHROMIUM_CANDIDATES if Path(c).is_file()), None) or shutil.which("chromium")
    if executable is None:
        pytest.skip("Chromium not found at /usr/bin/chromium: apt-get install chromium "
                    "(Debian/Ubuntu), or another Chromium at one of " + ", ".join(CHROMIUM_CANDIDATES))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


_IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  for (const img of images) {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) { /* reported below */ }
  }
  return images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}"""


#: Tables wider than the content column (the article's text width) at the current viewport.
#: A table inside a horizontally scrolling wrapper counts at its full width: it does not
#: fit the column either.
_WIDE_TABLES_JS = """() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const width = column.getBoundingClientRect().width;
  return Array.from(column.querySelectorAll('table')).map((t, i) => ({
      index: i, width: Math.max(t.scrollWidth, t.getBoundingClientRect().width), column: width,
      text: (t.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 60)}))
    .filter(t => t.width > t.column + 1);
}"""


def _internal_targets(hrefs: list[str], base: str) -> set[str]:
    """Same-origin link targets without fragment or query."""
    targets = set()
    for href in hrefs:
        parts = urllib.parse.urlsplit(href)
        if parts.scheme in ("http", "https") and href.startswith(base):
            targets.add(urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    return targets


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _png_title(url: str) -> str:
    """The ``Title`` text chunk of the PNG at ``url`` ("" when it has none): the figure's
    titles, written by ``skinlib.plots.figure_title`` when the page ran."""
    from PIL import Image

    with urllib.request.urlopen(url, timeout=10) as resp:
        data = resp.read()
    return str(Image.open(io.BytesIO(data)).text.get("Title", ""))


def _screenshot_page(docs: list[str]) -> str:
    experiments = [d for d in docs if d.startswith(GENERATED + "exp")]
    preferred = GENERATED + "exp2_1_fgsm"
    return preferred if preferred in experiments else (experiments or docs)[0]


@pytest.fixture(scope="session")
def browsed(browser, served_book, built_book) -> dict[str, list[str]]:
    """Every page of the table of contents opened once at 1280 x 900 px: what went wrong
    (``problems``), the tables wider than their content column (``wide_tables``) and each
    figure's page and PNG title (``figures``)."""
    base = served_book
    docs = toc_documents()
    shot = _screenshot_page(docs)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # The book is checked on its own: requests that leave the local server (MathJax and
    # fonts from CDNs) are refused, so the test needs no network and cannot hang on it.
    context.route(lambda url: not url.startswith(base), lambda route: route.abort())
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(f"{page.url}: {exc}"))
    problems: list[str] = []
    wide: list[str] = []
    figures: list[tuple[str, str]] = []
    links: set[str] = set()
    try:
        for doc in docs:
            url = urllib.parse.urljoin(base, f"{doc}.html")
            response = page.goto(url, wait_until="load")
            if response is None or response.status != 200:
                problems.append(f"{doc}: HTTP {None if response is None else response.status}")
                continue
            size = (built_book["html"] / f"{doc}.html").stat().st_size
            if size > MAX_PAGE_BYTES:
                problems.append(f"{doc}: HTML file of {size / 1e6:.2f} MB (limit {MAX_PAGE_BYTES / 1e6:.1f} MB)")
            for table in page.evaluate(_WIDE_TABLES_JS):
                wide.append(f"{doc}: table {table['index']} is {table['width']:.0f} px wide, wider than the "
                            f"{table['column']:.0f} px content column: {table['text']!r}")
            for img in page.evaluate(_IMAGES_JS):
                if not img["width"]:
                    problems.append(f"{doc}: image does not load: {img['src']}")
                elif img["src"].startswith(base) and img["src"].lower().endswith(".png"):
                    figures.append((doc, _png_title(img["src"])))
            links |= _internal_targets(page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"), base)
            errors = page.eval_on_selector_all(ERROR_SELECTORS, "els => els.map(e => e.textContent.slice(0, 300))")
            problems += [f"{doc}: error output: {text.strip()}" for text in errors]
            if "Traceback (most recent call last)" in page.evaluate("document.body.textContent"):
                problems.append(f"{doc}: shows a Python traceback")
            if doc == SUMMARY_DOC:
                text = page.evaluate("document.body.innerText")
                problems += [f"{doc}: no verdict sentence for {rq} and {model}" for rq, model in _verdict_keys()
                             if f"{rq} — {model}:" not in text]
            if doc == docs[0]:
                page.screenshot(path=str(SCREENSHOTS / "front_page.png"), full_page=True)
            if doc == shot:
                page.screenshot(path=str(SCREENSHOTS / f"{Path(doc).name}.png"), full_page=True)
    finally:
        context.close()
    links.add(urllib.parse.urljoin(base, "index.html"))  # the redirect to the root page
    for target in sorted(links):
        status = _status(target)
        if status != 200:
            problems.append(f"broken internal link ({status}): {target[len(base) - 1:]}")
    problems += [f"JavaScript error: {e}" for e in js_errors]
    return {"problems": problems, "wide_tables": wide, "figures": figures}


@pytest.mark.browser
def test_book_pages_in_browser(browsed):
    """Every page loads, weighs under 1.5 MB, decodes its images, links to existing
    files, and shows no traceback, error output or JavaScript error; the summary has a
    verdict sentence per research question and model."""
    assert not browsed["problems"], "\n".join(browsed["problems"])


@pytest.mark.browser
def test_book_tables_fit_the_content_column(browsed):
    """At a 1280 px wide window no table is wider than the page's content column."""
    assert not browsed["wide_tables"], "\n".join(browsed["wide_tables"])


#: Figures that show no model's output, by a phrase of their title: the training labels of
#: the poisoning chapter (before any model is trained on them).
DATA_FIGURE_PHRASES = ("training labels",)


@pytest.mark.browser
def test_book_figures_are_titled_with_their_model(browsed):
    """Every figure carries its titles (the PNG's ``Title`` chunk, written when the page
    ran); on every page after the data chapter each title names a model of the published
    profile, except figures of the data alone (:data:`DATA_FIGURE_PHRASES`)."""
    from skinlib.profiles import load_profile

    models = load_profile(PUBLISHED_PROFILE).models
    assert browsed["figures"], "no figures found in the book"
    untitled = [doc for doc, title in browsed["figures"] if not title]
    assert not untitled, f"figures without a title on: {sorted(set(untitled))}"
    nameless = [f"{doc}: {title!r}" for doc, title in browsed["figures"]
                if doc.startswith(GENERATED) and doc != f"{GENERATED}data"
                and not any(m in title for m in models)
                and not any(p in title.lower() for p in DATA_FIGURE_PHRASES)]
    assert not nameless, "figure titles that name no model:\n" + "\n".join(nameless)
