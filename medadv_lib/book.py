"""The book: chapters executed by papermill with parameters, rendered by jupyter-book (v1).

A chapter is a MyST markdown notebook ``book/<name>.md`` (jupytext header, kernel ``python3``)
listed in ``_toc.yml``. Adding a chapter means adding that file and one ``- file: book/<name>``
line to ``_toc.yml``; nothing here names chapters, except that :data:`RUN_LAST` pages (the
reproducibility page, which displays the other chapters' execution times) run after the others.

Everything a build writes lives in one folder per profile, so a smoke build never overwrites a
cpu build::

    _build/<profile>/src/            staging source: _config.yml, _toc.yml, _static/, book/*.md (plain pages),
                                     book/<chapter>.ipynb (executed chapters)
    _build/<profile>/html/           the rendered site (index.html)
    _build/<profile>/timings.json    seconds per executed chapter (and timings.csv)
    _build/<profile>/screenshots/    one screenshot per page, from the browser test

Chapters are executed beforehand by papermill (``execute_notebooks: "off"`` in ``_config.yml``)
and Sphinx runs with warnings as errors, so a cell error, a broken cross-reference or a missing
figure fails the build.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import datetime as _dt
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths

BOOK_DIR = paths.REPO_ROOT / "book"
CONFIG_FILE = paths.REPO_ROOT / "_config.yml"
TOC_FILE = paths.REPO_ROOT / "_toc.yml"
#: Environment variable holding a chapter's default profile (its parameters cell reads it).
PROFILE_ENV = "MEDADV_PROFILE"
#: Chapters executed after all others (they report on the others).
RUN_LAST = ("reproducibility",)
KERNEL = "python3"
#: Name of the prepare stage (models trained before the chapters) in ``timings.json``.
PREPARE_STAGE = "prepare (models)"
#: Files of ``book/`` never copied into the staging folder.
_SKIP_NAMES = {"__pycache__", ".ipynb_checkpoints", ".DS_Store"}


class BookError(Exception):
    """Base class of the book's errors (the CLI prints their message without a traceback)."""


class ParameterError(BookError, ValueError):
    """An unknown chapter, an unknown parameter or a value that does not fit the parameter's type."""


class ExecutionError(BookError, RuntimeError):
    """A chapter's cell raised, timed out or killed its kernel."""


class RenderError(BookError, RuntimeError):
    """Sphinx reported an error or a warning (warnings are errors in this book)."""


# ----------------------------------------------------------------------------------------------
# Folders of a profile
# ----------------------------------------------------------------------------------------------

def stage_dir(profile: str) -> Path:
    """``_build/<profile>``: everything one profile's build writes."""
    return paths.output_dir() / profile


def source_dir(profile: str) -> Path:
    """The staging source jupyter-book renders (config, toc, plain pages, executed notebooks)."""
    return stage_dir(profile) / "src"


def html_dir(profile: str) -> Path:
    return stage_dir(profile) / "html"


def site_index(profile: str) -> Path:
    return html_dir(profile) / "index.html"


def timings_path(profile: str) -> Path:
    return stage_dir(profile) / "timings.json"


def screenshots_dir(profile: str) -> Path:
    return stage_dir(profile) / "screenshots"


def default_profile() -> str:
    """``paper`` when CUDA is available, else ``cpu`` (the default of ``medadv book``)."""
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def chapter_default_profile() -> str:
    """A chapter's default profile: ``$MEDADV_PROFILE``, else ``smoke``."""
    return os.environ.get(PROFILE_ENV) or "smoke"


# ----------------------------------------------------------------------------------------------
# Table of contents and chapters
# ----------------------------------------------------------------------------------------------

def toc_entries(toc: str | os.PathLike | None = None) -> list[str]:
    """Document names listed in ``_toc.yml`` (``root`` first, then every ``file`` in order)."""
    import yaml

    data = yaml.safe_load(Path(toc or TOC_FILE).read_text()) or {}
    found: list[str] = []

    def walk(node):
        if isinstance(node, Mapping):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(re.sub(r"\.(md|ipynb)$", "", node[key]))
            for value in node.values():
                if isinstance(value, (list, Mapping)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return list(dict.fromkeys(found))


def is_notebook(path: str | os.PathLike) -> bool:
    """True for a MyST markdown notebook (its front matter names a kernel)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    end = text.find("\n---", 3)
    return end > 0 and re.search(r"^kernelspec:", text[3:end], flags=re.M) is not None


def toc_chapters(toc: str | os.PathLike | None = None) -> list[str]:
    """Names of the notebook chapters in ``_toc.yml``, in execution order (:data:`RUN_LAST` last)."""
    names = []
    for doc in toc_entries(toc):
        path = paths.REPO_ROOT / f"{doc}.md"
        if path.is_file() and is_notebook(path):
            names.append(Path(doc).name)
    return [n for n in names if n not in RUN_LAST] + [n for n in names if n in RUN_LAST]


def available_chapters() -> list[str]:
    """Every notebook chapter in ``book/`` (listed in the toc or not)."""
    return sorted(p.stem for p in BOOK_DIR.glob("*.md") if is_notebook(p))


def chapter_path(chapter: str | os.PathLike) -> Path:
    """The ``.md`` of a chapter given by name (``data_and_models``) or path."""
    path = Path(chapter)
    if path.suffix == ".md" and path.is_file():
        return path.resolve()
    candidate = BOOK_DIR / f"{path.stem if path.suffix == '.md' else chapter}.md"
    if candidate.is_file() and is_notebook(candidate):
        return candidate
    raise ParameterError(f"unknown chapter {str(chapter)!r}; chapters: {', '.join(available_chapters()) or 'none'}")


def convert(chapter: str | os.PathLike, output: str | os.PathLike | None = None):
    """Convert a chapter's MyST markdown to a notebook (jupytext); write it to ``output`` if given."""
    import jupytext
    import nbformat

    nb = jupytext.read(chapter_path(chapter))
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(output))
    return nb


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------

def chapter_parameters(chapter: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The parameters of a chapter as papermill infers them from its ``parameters`` cell.

    Returns ``{name: {"name", "inferred_type_name", "default", "help"}}`` (``default`` is source text).
    """
    import papermill

    with tempfile.TemporaryDirectory(prefix="medadv-inspect-") as tmp:
        path = Path(tmp) / f"{chapter_path(chapter).stem}.ipynb"
        convert(chapter, path)
        return papermill.inspect_notebook(str(path))


def _describe(params: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{n} ({p.get('inferred_type_name') or 'any'}, default {p.get('default')})"
                     for n, p in params.items()) or "none"


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _declared_types(info: Mapping[str, Any]) -> tuple[list[str], bool]:
    """(type names, optional) of a parameter, from its annotation or else from its default literal."""
    text = str(info.get("inferred_type_name") or "None").replace("typing.", "")
    names = [n for n in re.split(r"[\s|\[\],]+", text) if n and n not in ("Optional", "Union")]
    optional = "None" in names or text.startswith("Optional")
    types = [n for n in names if n != "None"]
    if not types:
        try:
            default = ast.literal_eval(str(info.get("default")))
        except (ValueError, SyntaxError):
            return [], optional
        if default is None:
            return [], True
        types = [type(default).__name__]
    return types, optional


def coerce_parameter(name: str, value: Any, info: Mapping[str, Any]) -> Any:
    """Convert a command-line string to the type the chapter declares for parameter ``name``.

    Non-string values (from the Python API) pass unchanged. ``none``/``null`` give None for an
    optional parameter. Without a declared type the value is read as a Python literal if it is one.
    """
    if not isinstance(value, str):
        return value
    types, optional = _declared_types(info)
    text = value.strip()
    if optional and text.lower() in ("none", "null"):
        return None
    if not types:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return value
    order = [t for t in ("bool", "int", "float", "str") if t in types] + [t for t in types if t not in
                                                                          ("bool", "int", "float", "str")]
    for t in order:
        if t == "str":
            return value
        if t == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            continue
        try:
            if t == "int":
                return int(text)
            if t == "float":
                return float(text)
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue
        if type(parsed).__name__ == t:
            return parsed
    wanted = " or ".join(types + (["None"] if optional else []))
    raise ParameterError(f"parameter {name}={value!r} is not a valid {wanted}")


def prepare_parameters(chapter: str | os.PathLike, parameters: Mapping[str, Any] | None = None, *,
                       profile: str | None = None, device: str | None = None,
                       declared: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Validate and type the parameters of one run; ``profile`` and ``device`` join them.

    Raises
    ------
    ParameterError
        For a name the chapter does not declare (the message lists its parameters), a value of the
        wrong type, conflicting profile/device values, or ``cuda`` on a machine without CUDA.
    """
    from .config import get_profile

    name = chapter_path(chapter).stem
    declared = dict(declared if declared is not None else chapter_parameters(chapter))
    params = dict(parameters or {})
    unknown = [k for k in params if k not in declared]
    if unknown:
        raise ParameterError(f"chapter {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                             f"its parameters are: {_describe(declared)}")
    for key, value in (("profile", profile), ("device", device)):
        if value is None:
            continue
        if key not in declared:
            raise ParameterError(f"chapter {name!r} has no {key!r} parameter; its parameters are: {_describe(declared)}")
        if key in params and str(params[key]) != str(value):
            raise ParameterError(f"conflicting values for {key}: --{key} {value} and -p {key} {params[key]}")
        params[key] = value
    if "profile" in declared:
        params["profile"] = str(params.get("profile") or chapter_default_profile())
        get_profile(params["profile"])  # unknown profile -> ConfigError listing the valid ones
    typed = {k: coerce_parameter(k, v, declared[k]) for k, v in params.items()}
    dev = typed.get("device")
    if isinstance(dev, str) and dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ParameterError(f"device {dev!r} requested but CUDA is not available on this machine "
                                 f"(torch {torch.__version__}, {torch.cuda.device_count()} CUDA devices); "
                                 "use --device cpu, or run on a machine with a GPU")
    return typed


# ----------------------------------------------------------------------------------------------
# Executing chapters
# ----------------------------------------------------------------------------------------------

@dataclass
class ChapterRun:
    """One executed chapter: the executed notebook, the seconds it took, the parameters used."""

    chapter: str
    path: Path
    seconds: float
    profile: str | None
    parameters: dict = field(default_factory=dict)

    def __iter__(self):  # ``path, seconds = run_chapter(...)``
        return iter((self.path, self.seconds))


def hide_injected_parameters(nb) -> bool:
    """Tag papermill's ``injected-parameters`` cell ``remove-cell`` (bookkeeping, not for readers); True if one was."""
    changed = False
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            changed = True
    return changed


def run_chapter(chapter: str | os.PathLike, profile: str | None = None, parameters: Mapping[str, Any] | None = None,
                device: str | None = None, output: str | os.PathLike | None = None, timeout: int | None = 1800, *,
                progress: bool = True, kernel: str = KERNEL, echo: bool = True) -> ChapterRun:
    """Execute one chapter with papermill and write the executed notebook.

    Parameters
    ----------
    chapter : str or path
        A chapter name (``data_and_models``) or the path of its ``.md``.
    profile : str, optional
        ``smoke``, ``cpu`` or ``paper``; default ``-p profile``, else ``$MEDADV_PROFILE``, else ``smoke``.
    parameters : mapping, optional
        Chapter parameters; strings (from ``-p NAME VALUE``) are converted to the declared type.
    device : {"cpu", "cuda"}, optional
        Passed as the chapter's ``device`` parameter (default: the profile decides).
    output : path, optional
        Executed notebook (default ``_build/<profile>/src/book/<chapter>.ipynb``).
    timeout : int, optional
        Per-cell timeout in seconds (None: no limit).
    progress : bool
        Papermill's progress bar (one tick per cell).

    Returns
    -------
    ChapterRun
        Unpacks as ``(path, seconds)``.
    """
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    # the kernel runs in book/: a relative MEDADV_DATA_DIR must mean the caller's folder, not book/
    paths.absolute_environment()
    source = chapter_path(chapter)
    name = source.stem
    nb = convert(source)
    with tempfile.TemporaryDirectory(prefix="medadv-inspect-") as tmp:
        nbformat.write(nb, str(Path(tmp) / f"{name}.ipynb"))
        declared = papermill.inspect_notebook(str(Path(tmp) / f"{name}.ipynb"))
    params = prepare_parameters(source, parameters, profile=profile, device=device, declared=declared)
    profile_name = params.get("profile") or chapter_default_profile()
    out = Path(output) if output is not None else source_dir(profile_name) / "book" / f"{name}.ipynb"
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if echo:
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        sys.stderr.write(f"[medadv] executing {name} ({shown}); cell timeout {timeout} s\n")
    start = time.perf_counter()
    try:
        papermill.execute_notebook(nb, str(out), parameters=params, kernel_name=kernel, progress_bar=progress,
                                   execution_timeout=timeout, cwd=str(source.parent), log_output=False)
    except PapermillExecutionError as err:
        raise ExecutionError(f"chapter {name!r} failed in cell [{err.exec_count}] with {err.ename}: {err.evalue}\n"
                             f"the executed notebook with the traceback is {out}") from err
    except CellTimeoutError as err:
        raise ExecutionError(f"chapter {name!r}: a cell ran longer than the {timeout} s cell timeout, which guards "
                             f"against hangs; if the machine is just slow, raise it: `medadv book --timeout "
                             f"{2 * (timeout or 1800)}` (or `make book ARGS=\"--timeout {2 * (timeout or 1800)}\"`, "
                             f"`medadv run {name} --timeout ...`); partial notebook: {out}") from err
    except DeadKernelError as err:
        raise ExecutionError(f"chapter {name!r}: the kernel died (out of memory?); partial notebook: {out}") from err
    seconds = time.perf_counter() - start
    executed = nbformat.read(str(out), as_version=4)
    if hide_injected_parameters(executed):
        nbformat.write(executed, str(out))
    if echo:
        sys.stderr.write(f"[medadv] {name}: {seconds:.1f} s -> {out}\n")
    return ChapterRun(name, out, seconds, params.get("profile"), params)


# ----------------------------------------------------------------------------------------------
# Timings
# ----------------------------------------------------------------------------------------------

def read_timings(profile: str) -> list[dict[str, Any]]:
    """The recorded execution times of a profile's chapters (empty if that profile was never built)."""
    path = timings_path(profile)
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("chapters", []))


def timings_frame(profile: str):
    """:func:`read_timings` as a DataFrame (chapter, seconds, minutes, finished (UTC), parameters)."""
    import pandas as pd

    rows = read_timings(profile)
    frame = pd.DataFrame(rows, columns=["chapter", "seconds", "finished", "parameters"])
    frame.insert(2, "minutes", frame["seconds"] / 60.0)
    frame["parameters"] = frame["parameters"].map(
        lambda p: ", ".join(f"{k}={v}" for k, v in (p or {}).items()) if isinstance(p, Mapping) else "")
    if len(frame) and not frame["parameters"].str.len().any():
        frame = frame.drop(columns="parameters")  # a plain build passes only the profile
    return frame.rename(columns={"finished": "finished (UTC)"})


def write_timings(profile: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``timings.json`` and ``timings.csv`` of a profile atomically; returns the JSON path."""
    path = timings_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"profile": profile, "updated": _now(), "chapters": [dict(r) for r in rows]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(blob, indent=1, default=str))
    os.replace(tmp, path)
    csv_path = path.with_suffix(".csv")
    with open(csv_path.with_name(csv_path.name + ".tmp"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["chapter", "seconds", "finished"])
        for r in rows:
            writer.writerow([r["chapter"], f"{r['seconds']:.2f}", r.get("finished", "")])
    os.replace(csv_path.with_name(csv_path.name + ".tmp"), csv_path)
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_timings(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of chapter times with a total line."""
    width = max([len("chapter"), len("total")] + [len(r["chapter"]) for r in rows])
    lines = [f"{'chapter':{width}s} {'seconds':>9s} {'minutes':>8s}"]
    lines += [f"{r['chapter']:{width}s} {r['seconds']:9.1f} {r['seconds'] / 60:8.2f}" for r in rows]
    total = sum(r["seconds"] for r in rows)
    lines.append(f"{'total':{width}s} {total:9.1f} {total / 60:8.2f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Staging and rendering
# ----------------------------------------------------------------------------------------------

def stage_sources(profile: str) -> Path:
    """Copy ``_config.yml``, ``_toc.yml`` and every non-notebook file of ``book/`` into the staging folder.

    Notebook chapters are not copied: their executed ``.ipynb`` stands in for them. ``book/_static``
    is copied to the staging root's ``_static`` (custom CSS). Plain pages that no longer exist in
    ``book/`` are removed from the staging folder.
    """
    src = source_dir(profile)
    (src / "book").mkdir(parents=True, exist_ok=True)
    for file in (CONFIG_FILE, TOC_FILE):
        shutil.copy2(file, src / file.name)
    wanted = set()
    for path in sorted(BOOK_DIR.rglob("*")):
        rel = path.relative_to(BOOK_DIR)
        if any(part in _SKIP_NAMES for part in rel.parts) or path.is_dir() or path.suffix == ".ipynb":
            continue
        if path.suffix == ".md" and len(rel.parts) == 1 and is_notebook(path):
            stale = src / "book" / rel  # a page that became a notebook: only the .ipynb may remain
            stale.unlink(missing_ok=True)
            continue
        # book/_static/ becomes the site's _static/ (jupyter-book links every CSS/JS file in it)
        target = src / rel if rel.parts[0] == "_static" else src / "book" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        wanted.add(target)
    for path in (src / "book").glob("*.md"):
        if path not in wanted:
            path.unlink()
    return src


#: Environment variable naming an installed npm ``mathjax`` package (the folder holding ``es5/``).
MATHJAX_ENV = "MEDADV_MATHJAX_DIR"
#: Where ``make install`` puts the npm package ``mathjax`` (pinned there); git ignores ``.venv``.
MATHJAX_DEFAULT = paths.REPO_ROOT / ".venv" / "mathjax" / "node_modules" / "mathjax"
#: The site's copy of MathJax: ``_static/<this>/``; ``mathjax_path`` in ``_config.yml`` points into it.
MATHJAX_SITE_DIR = "mathjax"


def mathjax_dir() -> Path:
    """The installed MathJax distribution (its ``es5`` folder): ``$MEDADV_MATHJAX_DIR``, else ``.venv/mathjax``.

    Raises
    ------
    RenderError
        If MathJax is not installed there (``make install`` installs it from npm).
    """
    root = Path(os.environ.get(MATHJAX_ENV) or MATHJAX_DEFAULT).expanduser()
    es5 = root / "es5" if (root / "es5").is_dir() else root
    if not (es5 / "startup.js").is_file():
        raise RenderError(f"MathJax is not installed at {root} (no es5/startup.js), so the book's formulas would "
                          "show as raw TeX; run `make install` (it installs the npm package `mathjax` into "
                          f".venv/mathjax), or set {MATHJAX_ENV} to the folder of an installed npm `mathjax` package")
    return es5


def _mathjax_path(config_file: Path) -> str:
    """``sphinx.config.mathjax_path`` of a staged ``_config.yml``, checked to be a local file under
    ``_static/mathjax/`` (Sphinx resolves a relative ``mathjax_path`` against ``_static``)."""
    import yaml

    config = yaml.safe_load(config_file.read_text()) or {}
    value = str(((config.get("sphinx") or {}).get("config") or {}).get("mathjax_path") or "")
    if not value or "://" in value or value.startswith("//") or not value.startswith(f"{MATHJAX_SITE_DIR}/"):
        raise RenderError(f"{config_file}: sphinx.config.mathjax_path is {value!r}; it must be a local file under "
                          f"_static/{MATHJAX_SITE_DIR}/ (e.g. {MATHJAX_SITE_DIR}/tex-mml-chtml.js): the book renders "
                          "its formulas offline, never from a CDN")
    return value


def copy_mathjax(html: str | os.PathLike, config_file: str | os.PathLike) -> Path:
    """Copy the installed MathJax into the rendered site's ``_static/mathjax`` (replacing an old copy).

    It is copied into the built site rather than staged in ``_static/`` because jupyter-book links
    every ``.js`` file found under ``_static`` of the source into every page. MathJax finds its
    extensions and fonts relative to its own script, so the site needs no network.

    Returns the copied script that ``mathjax_path`` names.
    """
    rel = _mathjax_path(Path(config_file))
    target = Path(html) / "_static" / MATHJAX_SITE_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(mathjax_dir(), target)
    script = target.parent / rel
    if not script.is_file():
        raise RenderError(f"mathjax_path {rel!r} names no file of the installed MathJax ({mathjax_dir()}); "
                          f"its components are: {', '.join(sorted(p.name for p in target.glob('*.js')))}")
    return script


class _Tee(io.TextIOBase):
    """A stream that writes through to ``target`` and keeps a copy."""

    def __init__(self, target):
        self.target, self.buffer = target, io.StringIO()

    def write(self, text):
        self.buffer.write(text)
        return self.target.write(text)

    def flush(self):
        self.target.flush()


def render(profile: str, *, quiet: bool = True) -> Path:
    """Render the staged sources of ``profile`` to ``_build/<profile>/html`` (warnings are errors).

    A fresh build every time (the html and doctree folders are removed first), so every warning is
    reported on every build. MathJax is copied into the site (:func:`copy_mathjax`), so formulas
    render from disk with no network. Returns the site's ``index.html``.
    """
    from jupyter_book.sphinx import build_sphinx

    src, out = source_dir(profile), html_dir(profile)
    doctrees = stage_dir(profile) / "doctrees"
    _mathjax_path(src / "_config.yml")  # fail before the Sphinx run on a CDN or missing mathjax_path
    mathjax_dir()
    for folder in (out, doctrees):
        shutil.rmtree(folder, ignore_errors=True)
    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee), warnings.catch_warnings():
        # sphinx-external-toc scans every live object, which trips torch's deprecated aliases
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"sphinx_external_toc\..*")
        result = build_sphinx(str(src), str(out), noconfig=True, path_config=str(src / "_config.yml"),
                              use_external_toc=True, doctreedir=str(doctrees), builder="html", freshenv=True,
                              warningiserror=True, keep_going=True, quiet=quiet,
                              confoverrides={"external_toc_path": (src / "_toc.yml").as_posix(),
                                             "latex_individualpages": False, "nitpicky": True})
    problems = [line for line in tee.buffer.getvalue().splitlines() if "WARNING" in line or "ERROR" in line]
    if isinstance(result, BaseException) or result != 0 or problems:
        detail = "\n  ".join(problems[:40]) or repr(result)
        raise RenderError(f"rendering the {profile} book failed ({len(problems)} warning(s)/error(s)):\n  {detail}")
    index = site_index(profile)
    if not index.is_file():
        raise RenderError(f"Sphinx finished but {index} does not exist")
    copy_mathjax(out, src / "_config.yml")
    return index


@dataclass
class BookBuild:
    profile: str
    index: Path
    timings: list[dict]


def build_book(profile: str | None = None, chapters: Sequence[str] | None = None, timeout: int | None = 1800,
               execute: bool = True, *, progress: bool = True, echo: bool = True, prepare: bool = True,
               prepare_only: bool = False) -> BookBuild | list[dict]:
    """Execute the chapters of ``_toc.yml`` at ``profile`` (reusing the model cache), then render the site.

    Parameters
    ----------
    profile : str, optional
        Default ``paper`` with CUDA, else ``cpu``.
    chapters : sequence of str, optional
        Execute only these (the others are rendered from their last execution at this profile).
    timeout : int, optional
        Per-cell timeout in seconds.
    execute : bool
        False renders the notebooks executed last time (``medadv book --no-execute``).
    prepare : bool
        Before the chapters, check that their data exist (one message listing every missing file
        and how to get it) and train every model they need (:mod:`medadv_lib.prepare`), with
        progress in the terminal; the chapters then load the models from the cache.
    prepare_only : bool
        Stop after the prepare stage (``medadv book --prepare-only``); returns its rows.

    Writes ``_build/<profile>/timings.json`` (and ``.csv``) after every chapter, so that the
    reproducibility page, executed last, shows the times of this build.
    """
    from .config import get_profile

    paths.absolute_environment()  # before any kernel inherits the environment
    profile = profile or default_profile()
    get_profile(profile)
    in_toc = toc_chapters()
    selected = in_toc if not chapters else list(chapters)
    bad = [c for c in selected if c not in in_toc]
    if bad:
        raise ParameterError(f"chapter(s) {', '.join(bad)} not in _toc.yml; its chapters are: {', '.join(in_toc)}")
    selected = [c for c in in_toc if c in selected]  # toc order, RUN_LAST last
    previous = {r["chapter"]: r for r in read_timings(profile)}
    if (execute and prepare) or prepare_only:
        from .prepare import DataMissingError, prepare_book

        start = time.perf_counter()
        try:
            models = prepare_book(profile, selected, progress=progress, echo=echo)
        except DataMissingError as err:
            raise BookError(str(err)) from err
        previous[PREPARE_STAGE] = {"chapter": PREPARE_STAGE, "seconds": round(time.perf_counter() - start, 2),
                                   "finished": _now(), "parameters": {"models": len(models),
                                                                      "trained": sum(m["source"] == "trained" for m in models)}}
        write_timings(profile, [previous[c] for c in [PREPARE_STAGE, *in_toc] if c in previous])
        if prepare_only:
            return models
    stage_sources(profile)
    if execute:
        for name in selected:
            run = run_chapter(name, profile=profile, timeout=timeout, progress=progress, echo=echo)
            shown = {k: v for k, v in run.parameters.items() if k != "profile"}
            previous[name] = {"chapter": name, "seconds": round(run.seconds, 2), "finished": _now(),
                              "parameters": shown, "notebook": str(run.path.relative_to(stage_dir(profile)))}
            write_timings(profile, [previous[c] for c in [PREPARE_STAGE, *in_toc] if c in previous])
    missing = [c for c in in_toc if not (source_dir(profile) / "book" / f"{c}.ipynb").is_file()]
    if missing:
        raise BookError(f"no executed notebook at profile {profile} for: {', '.join(missing)}; run "
                        f"`medadv book --profile {profile}` (or `medadv run CHAPTER --profile {profile}`) first")
    rows = [previous[c] for c in [PREPARE_STAGE, *in_toc] if c in previous]
    start = time.perf_counter()
    index = render(profile)
    if echo:
        print(f"\nprofile {profile}: rendered in {time.perf_counter() - start:.1f} s")
        print(format_timings(rows))
        print(f"timings: {timings_path(profile)}")
        print(f"site:    {index}")
    return BookBuild(profile, index, rows)
