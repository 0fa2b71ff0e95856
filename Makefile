# The two commands of the README: `make book` builds the book, `make test` runs every test.
# Both create .venv and install what they need (torch/torchvision as a matching pair from PyPI).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?=
ARGS    ?=
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-10)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install chromium test test-unit test-notebooks test-browser book bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	# the peer the attack tests compare with; --no-deps: torchattacks pins an old `requests`
	$(BIN)/python -m pip install -q --no-deps torchattacks
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
	rm -f $(VENV)/.installed-* && touch $@

# MathJax for the book's formulas, from npm (pinned), into a git-ignored folder; medadv_lib.book
# copies it into every rendered site, so formulas render offline (never a CDN)
MATHJAX_VERSION := 3.2.2
MATHJAX := $(VENV)/mathjax/node_modules/mathjax/.installed-$(MATHJAX_VERSION)

$(MATHJAX):
	@command -v npm >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq npm >/dev/null)
	rm -rf $(VENV)/mathjax && mkdir -p $(VENV)/mathjax
	npm install --no-save --no-package-lock --no-audit --no-fund --prefix $(VENV)/mathjax mathjax@$(MATHJAX_VERSION)
	touch $@

install: $(STAMP) $(MATHJAX)

chromium:  # Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser)
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null)

# unit and integration tests, the smoke book build with the browser check, then every chapter
# under nbval (after the build, so the smoke models are already in the cache)
test: install chromium
	$(BIN)/python -m pytest tests -q
	$(BIN)/python tests/run_notebooks.py

# relative MEDADV_DATA_DIR/MEDADV_CACHE_DIR/MEDADV_OUTPUT_DIR are read against this folder (the repo root);
# extra options through ARGS, e.g. make book ARGS="--timeout 7200" or ARGS="--prepare-only"
book: install
	$(BIN)/medadv book $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

bench: install
	$(BIN)/python -m pip install -q --no-deps torchattacks
	$(BIN)/medadv bench attacks
	$(BIN)/medadv bench detectors
	$(BIN)/medadv bench defenses

clean:
	rm -rf _build .pytest_cache
