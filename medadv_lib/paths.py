"""Where data, cache and build outputs live; every environment override is read here.

Resolution order for each folder: explicit argument, then the environment variable, then a
default inside the repository (or the user's cache folder when the package is installed
outside a checkout).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

DATA_ENV = "MEDADV_DATA_DIR"
CACHE_ENV = "MEDADV_CACHE_DIR"
OUTPUT_ENV = "MEDADV_OUTPUT_DIR"
ALLOW_COMPUTE_ENV = "MEDADV_ALLOW_COMPUTE"
#: Folder variables a user may set to a relative path; :func:`absolute_environment` fixes them.
PATH_ENVS = (DATA_ENV, CACHE_ENV, OUTPUT_ENV)


def _in_checkout() -> bool:
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "medadv_lib").is_dir()


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder holding the datasets (argument > ``MEDADV_DATA_DIR`` > ``<repo>/data``)."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().resolve()
    return (REPO_ROOT / "data") if _in_checkout() else Path.home() / ".medadv" / "data"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder of the content-addressed cache (argument > ``MEDADV_CACHE_DIR`` > ``<repo>/.cache``)."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    return (REPO_ROOT / ".cache") if _in_checkout() else Path.home() / ".cache" / "medadv"


def output_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder for executed notebooks, rendered sites and screenshots (``<repo>/_build``)."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(OUTPUT_ENV):
        return Path(os.environ[OUTPUT_ENV]).expanduser().resolve()
    return (REPO_ROOT / "_build") if _in_checkout() else Path.cwd() / "_build"


def absolute_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """``path`` with ``~`` expanded, made absolute against ``base`` (default: the current folder).

    Symbolic links are kept as the user wrote them (no :meth:`~pathlib.Path.resolve`), only
    ``..`` and ``.`` are folded, so the path names the folder the user meant.
    """
    path = Path(path).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else os.getcwd()) / path
    return Path(os.path.normpath(path))


def absolute_environment(base: str | os.PathLike | None = None,
                         environ: "os._Environ | dict[str, str] | None" = None) -> dict[str, str]:
    """Rewrite every relative folder variable of :data:`PATH_ENVS` as an absolute path, in place.

    A user types ``MEDADV_DATA_DIR=../shared/data`` relative to the folder they run the command
    from; a notebook kernel runs in ``book/`` and a library call may change folder, so the value
    must be fixed once, where the command starts, before any child process inherits it.
    Idempotent; empty values are left alone (they mean "unset").

    Returns
    -------
    dict
        ``{variable: new value}`` for the variables that were rewritten.
    """
    environ = os.environ if environ is None else environ
    changed = {}
    for name in PATH_ENVS:
        value = environ.get(name)
        if value and not Path(value).expanduser().is_absolute():
            environ[name] = changed[name] = str(absolute_path(value, base))
        elif value and value.startswith("~"):
            environ[name] = changed[name] = str(absolute_path(value))
    return changed


def compute_allowed() -> bool:
    """False when ``MEDADV_ALLOW_COMPUTE=0``: cache misses then raise instead of computing."""
    return os.environ.get(ALLOW_COMPUTE_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}
