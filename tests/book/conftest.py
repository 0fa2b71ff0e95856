"""Fixtures of the book tests: the real model cache and a smoke build of the site.

The book is built the way ``medadv book`` builds it, so these tests reuse the project's model
cache (``MEDADV_CACHE_DIR`` as set before pytest started, else ``<repo>/.cache``) instead of the
private per-test cache that ``tests/conftest.py`` gives unit tests: training the five smoke models
from scratch would take minutes.
"""
from __future__ import annotations

import os

import pytest

from medadv_lib import paths

REAL_CACHE = os.environ.get(paths.CACHE_ENV) or str(paths.REPO_ROOT / ".cache")
REAL_OUTPUT = os.environ.get(paths.OUTPUT_ENV)


@pytest.fixture
def book_env(monkeypatch, mirror):
    """The environment ``medadv book`` would see: the data mirror, the real cache, the real _build."""
    monkeypatch.setenv(paths.CACHE_ENV, REAL_CACHE)
    if REAL_OUTPUT:
        monkeypatch.setenv(paths.OUTPUT_ENV, REAL_OUTPUT)
    else:
        monkeypatch.delenv(paths.OUTPUT_ENV, raising=False)
    monkeypatch.delenv("MEDADV_PROFILE", raising=False)
    return mirror


@pytest.fixture
def smoke_site(book_env):
    """Execute every chapter at smoke and render the site; returns the BookBuild.

    Set ``MEDADV_TEST_REUSE_BOOK=1`` to reuse an existing ``_build/smoke`` site (rendered again
    from the notebooks executed last time, which still runs the full Sphinx check).
    """
    from medadv_lib import book

    reuse = os.environ.get("MEDADV_TEST_REUSE_BOOK", "").strip().lower() in ("1", "true", "yes")
    executed = all((book.source_dir("smoke") / "book" / f"{c}.ipynb").is_file() for c in book.toc_chapters())
    return book.build_book(profile="smoke", execute=not (reuse and executed), progress=False, echo=True)
