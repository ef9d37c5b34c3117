# The two commands: `make book` (run every experiment of PROFILE, build its book into
# book/_build/PROFILE/) and `make test` (install what the tests need, run them).
# `make html` builds the published book (the committed ham10000 run) into book/_build/html/.
# Running never changes tracked files outside results/PROFILE/. Everything lives in .venv.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= default
DATA_DIR ?=

.PHONY: book run html test notebooks clean-book

book: $(STAMP)
	@status=0; $(BIN)/skinlib run --profile $(PROFILE) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") || status=$$?; \
	$(BIN)/skinlib book --profile $(PROFILE) || status=$$?; exit $$status

run: $(STAMP)
	$(BIN)/skinlib run --profile $(PROFILE) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

html: $(STAMP)
	$(BIN)/jupyter-book build book/ && echo "book: open book/_build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest

notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (skinlib)" > /dev/null
	touch $(STAMP)

clean-book:
	rm -rf book/_build
