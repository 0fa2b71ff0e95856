"""Test every notebook chapter at the ``smoke`` profile with nbval.

Converts each MyST chapter of ``book/`` (the ones with a kernel in their jupytext header) to a
notebook in ``_build/nbval/`` and runs::

    MEDADV_PROFILE=smoke python -m pytest --nbval-lax --nbval-cell-timeout=600 _build/nbval/*.ipynb

``--nbval-lax`` checks that every cell runs without error (outputs are not compared); the chapters'
hidden claim-check cells are the assertions. Usage::

    MEDADV_DATA_DIR=/path/to/mirror python tests/run_notebooks.py [CHAPTER ...] [-- PYTEST ARGS]

Exit status: pytest's (0 when every chapter passes).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from medadv_lib import book, paths

CELL_TIMEOUT = 600


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    names = argv or book.available_chapters()
    order = [n for n in names if n not in book.RUN_LAST] + [n for n in names if n in book.RUN_LAST]
    out = paths.output_dir() / "nbval"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    notebooks = []
    for name in order:
        target = out / f"{book.chapter_path(name).stem}.ipynb"
        book.convert(name, target)
        notebooks.append(str(target))
    paths.absolute_environment()  # nbval's kernels run elsewhere: a relative MEDADV_DATA_DIR means this folder
    if not paths.data_dir().is_dir():
        print(f"warning: data folder {paths.data_dir()} does not exist; set {paths.DATA_ENV} to the offline mirror",
              file=sys.stderr)
    env = dict(os.environ, MEDADV_PROFILE="smoke")
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", f"--nbval-cell-timeout={CELL_TIMEOUT}",
           "-p", "no:cacheprovider", "-q", *extra, *notebooks]
    print("MEDADV_PROFILE=smoke " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env, cwd=str(paths.REPO_ROOT))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
