"""The book machinery: table of contents, chapter anatomy, parameters, staging, timings, rendering.

Fast tests need neither the data nor a kernel; the ones marked ``slow`` execute a chapter or
render a small book with Sphinx.
"""
from __future__ import annotations

import ast
import os
import json
import math
import re
import textwrap
from pathlib import Path

import pytest

from medadv_lib import book, cli, paths
from medadv_lib.config import ConfigError


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.OUTPUT_ENV, str(tmp_path / "_build"))
    return tmp_path / "_build"


# ----------------------------------------------------------------------------------------------
# Table of contents and chapter anatomy
# ----------------------------------------------------------------------------------------------

def test_toc_lists_existing_files_with_reproducibility_last():
    entries = book.toc_entries()
    assert entries[0] == "book/intro"
    for doc in entries:
        assert (paths.REPO_ROOT / f"{doc}.md").is_file(), f"_toc.yml lists {doc} but {doc}.md does not exist"
    chapters = book.toc_chapters()
    assert "data_and_models" in chapters
    assert chapters[-1] == "reproducibility"
    assert not book.is_notebook(paths.REPO_ROOT / "book" / "intro.md")


def test_every_notebook_chapter_is_in_the_toc():
    listed = set(book.toc_chapters())
    assert set(book.available_chapters()) <= listed, "a book/*.md notebook is missing from _toc.yml"


def test_config_never_executes_and_is_offline():
    import yaml

    config = yaml.safe_load((paths.REPO_ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config.get("only_build_toc_files") is True


@pytest.mark.parametrize("chapter", book.available_chapters())
def test_chapter_anatomy(chapter):
    """Overview, Prerequisites, one imports cell first, a parameters cell with a smoke default from
    $MEDADV_PROFILE, a hidden claim-check cell with assertions, and provenance as the last cell."""
    nb = book.convert(chapter)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^# ", text, re.M), "a chapter starts with a title"
    for heading in ("## Overview", "## Prerequisites", "## Provenance"):
        assert heading in text, f"{chapter} lacks a '{heading}' section"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source.lstrip().startswith(("import", "from")), "the first code cell is the imports cell"
    imports_cells = [c for c in code if all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in
                                            ast.parse(c.source).body if not isinstance(s, ast.Expr))
                     and any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in ast.parse(c.source).body)]
    assert len(imports_cells) == 1, "exactly one imports cell"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = ast.parse(tagged[0].source).body
    assert all(isinstance(s, (ast.Assign, ast.AnnAssign)) for s in params), "the parameters cell only assigns"
    names = [(s.target if isinstance(s, ast.AnnAssign) else s.targets[0]).id for s in params]
    assert "profile" in names
    assert 'os.environ.get("MEDADV_PROFILE")' in tagged[0].source and '"smoke"' in tagged[0].source
    claims = [c for c in code if {"remove-cell", "remove-input"} & set(c.metadata.get("tags", []))
              and "assert" in c.source]
    assert claims, f"{chapter} has no hidden claim-check cell (tag remove-cell or remove-input, with asserts)"
    assert "provenance." in code[-1].source, "the last cell prints provenance"
    tree = ast.parse("\n".join(c.source for c in code))
    defined = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    assert not defined, f"{chapter} defines {defined}: reusable code belongs in medadv_lib"


#: The most lines of code a chapter cell may show (non-blank, non-comment lines): the experiment
#: loops belong in medadv_lib.pipeline, the prose choices in medadv_lib.verdicts.
MAX_CELL_LINES = 12
#: Parameters every chapter takes, so `medadv run CHAPTER -p datasets a,b` works on every one.
SHARED_PARAMETERS = ("profile", "datasets", "seed", "device")
#: The old per-chapter names of the data-set parameter, replaced by `datasets`.
OLD_DATASET_PARAMETERS = ("dataset", "natural", "medical", "binary", "multiclass")
HIDDEN = {"remove-cell", "remove-input"}


def _code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _only_glue(source: str) -> bool:
    """True for a cell whose statements are all glue(...) calls or loops of them (bookkeeping)."""
    def is_glue(node):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            return getattr(node.value.func, "id", None) == "glue"
        if isinstance(node, ast.For):
            return all(is_glue(s) for s in node.body)
        return False

    body = ast.parse(source).body
    return bool(body) and all(is_glue(s) for s in body)


def test_code_line_counter_and_glue_detector():
    assert _code_lines("a = 1\n\n# why\n  b = 2  # note\n") == 2
    assert _only_glue("glue('a', 1, display=False)\nfor k, v in d.items():\n    glue(k, v, display=False)")
    assert not _only_glue("x = 1\nglue('a', x, display=False)")


@pytest.mark.parametrize("chapter", book.available_chapters())
def test_chapter_cells_are_thin(chapter):
    """Every cell a reader sees has at most MAX_CELL_LINES lines of code; the hidden claim check may be longer."""
    long = []
    for i, cell in enumerate(c for c in book.convert(chapter).cells if c.cell_type == "code"):
        if "remove-cell" in cell.metadata.get("tags", []):
            continue
        n = _code_lines(cell.source)
        if n > MAX_CELL_LINES:
            long.append(f"code cell {i} ({n} lines): {cell.source.strip().splitlines()[0][:60]}")
    assert not long, f"{chapter}: cells longer than {MAX_CELL_LINES} lines: move the loop into medadv_lib: {long}"


@pytest.mark.parametrize("chapter", book.available_chapters())
def test_bookkeeping_cells_are_hidden(chapter):
    """Cells that only glue numbers are hidden; the configuration table is folded (hide-output)."""
    for cell in (c for c in book.convert(chapter).cells if c.cell_type == "code"):
        tags = set(cell.metadata.get("tags", []))
        if _only_glue(cell.source):
            assert tags & HIDDEN, f"{chapter}: a cell that only glues numbers is shown: {cell.source[:80]!r}"
        if "settings_table(" in cell.source:
            assert tags & (HIDDEN | {"hide-output"}), f"{chapter}: the configuration table is not folded"
        if "glue(" in cell.source and not tags & HIDDEN:
            raise AssertionError(f"{chapter}: a shown cell calls glue(); glue the numbers of a verdicts "
                                 f"function in one hidden cell instead: {cell.source[:80]!r}")


@pytest.mark.parametrize("chapter", book.available_chapters())
def test_chapters_share_the_parameter_vocabulary(chapter):
    params = book.chapter_parameters(chapter)
    missing = [p for p in SHARED_PARAMETERS if p not in params]
    assert not missing, f"{chapter} lacks the shared parameter(s) {missing}"
    old = [p for p in OLD_DATASET_PARAMETERS if p in params]
    assert not old, f"{chapter} still names its data sets with {old}; use the comma-separated `datasets`"
    assert params["datasets"]["inferred_type_name"] == "str"


def test_papermill_injected_parameters_are_hidden():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.cells[0].metadata["tags"] = ["injected-parameters"]
    book.hide_injected_parameters(nb)
    assert "remove-cell" in nb.cells[0].metadata["tags"]


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------

def test_chapter_parameters_are_inferred_with_types():
    params = book.chapter_parameters("data_and_models")
    assert {"profile", "datasets", "seed", "device"} <= set(params)
    assert params["seed"]["inferred_type_name"] == "int"
    assert params["datasets"]["inferred_type_name"] == "str"
    assert params["device"]["inferred_type_name"].startswith("Optional")


@pytest.mark.parametrize("info, text, expected", [
    ({"inferred_type_name": "int", "default": "0"}, "7", 7),
    ({"inferred_type_name": "float", "default": "0.5"}, "1e-3", 1e-3),
    ({"inferred_type_name": "bool", "default": "True"}, "no", False),
    ({"inferred_type_name": "bool", "default": "False"}, "1", True),
    ({"inferred_type_name": "str", "default": '"all"'}, "chestxray", "chestxray"),
    ({"inferred_type_name": "str", "default": '"all"'}, "7", "7"),
    ({"inferred_type_name": "Optional[str]", "default": "None"}, "None", None),
    ({"inferred_type_name": "Optional[str]", "default": "None"}, "cuda", "cuda"),
    ({"inferred_type_name": "Optional[int]", "default": "None"}, "12", 12),
    ({"inferred_type_name": "None", "default": "3"}, "5", 5),  # no annotation: type of the default
    ({"inferred_type_name": "None", "default": "0.1"}, "2", 2.0),
    ({"inferred_type_name": "None", "default": "None"}, "[1, 2]", [1, 2]),
    ({"inferred_type_name": "None", "default": "os.environ.get('X')"}, "text", "text"),
])
def test_coerce_parameter(info, text, expected):
    value = book.coerce_parameter("p", text, info)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("info, text", [
    ({"inferred_type_name": "int", "default": "0"}, "abc"),
    ({"inferred_type_name": "int", "default": "0"}, "1.5"),
    ({"inferred_type_name": "bool", "default": "True"}, "maybe"),
    ({"inferred_type_name": "int", "default": "0"}, "None"),  # not optional
])
def test_coerce_parameter_rejects_bad_values(info, text):
    with pytest.raises(book.ParameterError, match="not a valid"):
        book.coerce_parameter("p", text, info)


def test_non_string_values_pass_unchanged():
    assert book.coerce_parameter("p", 3, {"inferred_type_name": "str"}) == 3


def test_unknown_parameter_lists_the_chapters_parameters():
    with pytest.raises(book.ParameterError) as err:
        book.prepare_parameters("data_and_models", {"nope": "1"})
    message = str(err.value)
    assert "'nope'" in message
    for name in ("profile", "datasets", "seed", "device"):
        assert name in message


def test_prepare_parameters_types_values_and_defaults_profile(monkeypatch):
    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    params = book.prepare_parameters("data_and_models", {"datasets": "chestxray", "seed": "3"})
    assert params == {"datasets": "chestxray", "seed": 3, "profile": "smoke"}
    monkeypatch.setenv(book.PROFILE_ENV, "cpu")
    assert book.prepare_parameters("data_and_models", {})["profile"] == "cpu"
    assert book.prepare_parameters("data_and_models", {}, profile="paper")["profile"] == "paper"


def test_prepare_parameters_rejects_conflicts_and_unknown_profiles():
    with pytest.raises(book.ParameterError, match="conflicting"):
        book.prepare_parameters("data_and_models", {"profile": "cpu"}, profile="smoke")
    with pytest.raises(ConfigError, match="valid profiles"):
        book.prepare_parameters("data_and_models", {"profile": "huge"})


def test_cuda_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(book.ParameterError, match="CUDA is not available"):
        book.prepare_parameters("data_and_models", {}, device="cuda")
    with pytest.raises(book.ParameterError, match="CUDA is not available"):
        book.prepare_parameters("data_and_models", {"device": "cuda:0"})


def test_unknown_chapter_lists_chapters():
    with pytest.raises(book.ParameterError, match="data_and_models"):
        book.chapter_path("no_such_chapter")


def test_cli_run_reports_parameter_errors(capsys):
    assert cli.main(["run", "data_and_models", "-p", "nope", "1"]) == 2
    err = capsys.readouterr().err
    assert "has no parameter 'nope'" in err and "seed (int" in err


def test_cli_book_rejects_chapters_not_in_the_toc(capsys, output_dir):
    assert cli.main(["book", "--profile", "smoke", "--chapters", "nope", "--no-execute"]) == 2
    assert "not in _toc.yml" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Staging, timings
# ----------------------------------------------------------------------------------------------

def test_folders_are_per_profile(output_dir):
    assert book.html_dir("smoke") != book.html_dir("cpu")
    assert book.source_dir("smoke") == output_dir / "smoke" / "src"
    assert book.site_index("cpu") == output_dir / "cpu" / "html" / "index.html"
    assert book.timings_path("paper") == output_dir / "paper" / "timings.json"


def test_stage_sources_copies_pages_but_not_notebook_sources(output_dir):
    src = book.stage_sources("smoke")
    assert (src / "_config.yml").is_file() and (src / "_toc.yml").is_file()
    assert (src / "book" / "intro.md").is_file()
    assert not (src / "book" / "data_and_models.md").exists()
    (src / "book" / "old_page.md").write_text("# stale\n")
    book.stage_sources("smoke")
    assert not (src / "book" / "old_page.md").exists()


def test_timings_round_trip(output_dir):
    rows = [{"chapter": "a", "seconds": 1.5, "finished": "2025-01-01 00:00:00", "parameters": {"seed": 0}},
            {"chapter": "b", "seconds": 90.0, "finished": "2025-01-01 00:01:00", "parameters": {}}]
    path = book.write_timings("smoke", rows)
    assert json.loads(path.read_text())["profile"] == "smoke"
    assert path.with_suffix(".csv").read_text().splitlines()[0] == "chapter,seconds,finished"
    assert book.read_timings("smoke") == rows
    frame = book.timings_frame("smoke")
    assert list(frame["chapter"]) == ["a", "b"] and math.isclose(frame["minutes"].iloc[1], 1.5)
    assert frame["parameters"].iloc[0] == "seed=0"
    assert "total" in book.format_timings(rows) and "91.5" in book.format_timings(rows)
    assert book.read_timings("cpu") == [] and len(book.timings_frame("cpu")) == 0


def test_build_without_executed_notebooks_says_what_to_run(output_dir):
    with pytest.raises(book.BookError, match="medadv book --profile smoke"):
        book.build_book(profile="smoke", execute=False, echo=False)


# ----------------------------------------------------------------------------------------------
# Rendering fails on the warnings that matter
# ----------------------------------------------------------------------------------------------

def _mini_book(profile: str, page: str) -> None:
    src = book.source_dir(profile)
    (src / "book").mkdir(parents=True)
    (src / "_config.yml").write_text((paths.REPO_ROOT / "_config.yml").read_text())
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (src / "book" / "intro.md").write_text(textwrap.dedent(page))


@pytest.mark.slow
def test_render_builds_a_clean_page(output_dir):
    _mini_book("smoke", "# Title\n\nSome text.\n")
    index = book.render("smoke")
    assert index.is_file() and (book.html_dir("smoke") / "book" / "intro.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("page, why", [
    ("# Title\n\nSee {doc}`no_such_page`.\n", "unknown document"),
    ("# Title\n\n```{figure} missing.png\nA caption.\n```\n", "image file not readable"),
])
def test_render_fails_on_broken_references_and_missing_figures(output_dir, page, why):
    _mini_book("smoke", page)
    with pytest.raises(book.RenderError, match=why):
        book.render("smoke")


@pytest.mark.slow
def test_render_ships_mathjax_in_the_site_and_links_it_locally(output_dir):
    _mini_book("smoke", "# Title\n\nInline $\\epsilon = 8/256$ and\n\n$$\\|x' - x\\|_\\infty \\le \\epsilon$$\n")
    book.render("smoke")
    html = book.html_dir("smoke")
    page = (html / "book" / "intro.html").read_text()
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir(), "fonts ship too"
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert "../_static/mathjax/tex-mml-chtml.js" in scripts
    assert not [s for s in scripts if "://" in s or s.startswith("//")], f"a script from the network: {scripts}"
    assert 'class="math notranslate nohighlight"' in page


def test_mathjax_path_must_be_local(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("sphinx:\n  config:\n    mathjax_path: https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js\n")
    with pytest.raises(book.RenderError, match="never from a CDN"):
        book._mathjax_path(config)
    config.write_text("sphinx:\n  config: {}\n")
    with pytest.raises(book.RenderError, match="mathjax_path is ''"):
        book._mathjax_path(config)
    assert book._mathjax_path(paths.REPO_ROOT / "_config.yml").startswith("mathjax/")


def test_missing_mathjax_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv(book.MATHJAX_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(book.RenderError, match="make install"):
        book.mathjax_dir()


def test_copy_mathjax_names_a_missing_component(tmp_path, monkeypatch):
    dist = tmp_path / "mathjax" / "es5"
    dist.mkdir(parents=True)
    (dist / "startup.js").write_text("// stub")
    monkeypatch.setenv(book.MATHJAX_ENV, str(dist.parent))
    config = tmp_path / "_config.yml"
    config.write_text("sphinx:\n  config:\n    mathjax_path: mathjax/tex-chtml.js\n")
    with pytest.raises(book.RenderError, match="startup.js"):
        book.copy_mathjax(tmp_path / "html", config)
    (dist / "tex-chtml.js").write_text("// stub")
    assert book.copy_mathjax(tmp_path / "html", config) == tmp_path / "html" / "_static" / "mathjax" / "tex-chtml.js"


# ----------------------------------------------------------------------------------------------
# Executing a chapter (papermill, real data)
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.mirror
def test_run_chapter_with_parameters(book_env, tmp_path):
    import nbformat

    out = tmp_path / "dm.ipynb"
    run = book.run_chapter("data_and_models", profile="smoke", parameters={"datasets": "chestxray", "seed": "0"},
                           output=out, progress=False, echo=False)
    path, seconds = run
    assert path == out.resolve() and path.is_file() and seconds > 0
    assert run.parameters == {"datasets": "chestxray", "seed": 0, "profile": "smoke"}
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["papermill"]["parameters"]["datasets"] == "chestxray"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'datasets = "chestxray"' in injected[0].source
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    glued = {o["metadata"]["scrapbook"]["name"] for o in outputs if "scrapbook" in o.get("metadata", {})}
    assert {"best_bacc", "auroc_min", "total_train"} <= glued


@pytest.mark.slow
@pytest.mark.mirror
def test_run_chapter_reports_the_failing_cell(book_env, tmp_path):
    with pytest.raises(book.ExecutionError, match="unknown dataset") as err:
        book.run_chapter("data_and_models", profile="smoke", parameters={"datasets": "nope"},
                         output=tmp_path / "bad.ipynb", progress=False, echo=False)
    assert str(tmp_path / "bad.ipynb") in str(err.value)


# ----------------------------------------------------------------------------------------------
# The Methods page
# ----------------------------------------------------------------------------------------------

#: Every method of the book has a section on the Methods page under one of these labels.
METHOD_LABELS = ("fgsm", "bim", "pgd", "mim", "di", "cw-linf", "cw-l2", "hfc", "smia", "protocol", "kd", "bu",
                 "kdbu", "lid", "maha", "dnn", "svm", "uad", "defences", "gce", "ssat", "risk", "notation",
                 "fixed-direction")


def test_methods_page_labels_every_method_and_is_a_plain_page():
    page = paths.REPO_ROOT / "book" / "methods.md"
    assert not book.is_notebook(page), "the Methods page is plain MyST, never executed"
    text = page.read_text()
    labels = re.findall(r"^\((methods-[a-z0-9-]+)\)=\s*$", text, re.M)
    assert len(labels) == len(set(labels)), "duplicate labels"
    missing = [f"methods-{m}" for m in METHOD_LABELS if f"methods-{m}" not in labels]
    assert not missing, f"methods.md lacks the label(s) {missing}"
    for label in labels:  # a label must sit right above a heading, so {ref} gets a title
        after = text.split(f"({label})=\n", 1)[1].lstrip("\n")
        assert after.startswith("#"), f"({label})= is not followed by a heading"
    entries = book.toc_entries()
    assert entries.index("book/methods") < entries.index("book/reproducibility")


@pytest.mark.slow
@pytest.mark.mirror
def test_run_chapter_with_a_relative_data_folder_from_another_folder(book_env, tmp_path, monkeypatch):
    """``MEDADV_DATA_DIR=../shared/data`` means the caller's folder, although the kernel runs in ``book/``."""
    import nbformat

    data = Path(book_env).resolve()  # the fixture's folder may itself be relative (make test with ../shared/data)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    relative = os.path.relpath(data, elsewhere)
    assert not os.path.isabs(relative) and relative.startswith("..")
    monkeypatch.setenv(paths.DATA_ENV, relative)
    run = book.run_chapter("data_and_models", profile="smoke", parameters={"datasets": "breastmnist"},
                           output="dm.ipynb", progress=False, echo=False)
    assert run.path == (elsewhere / "dm.ipynb")
    assert os.environ[paths.DATA_ENV] == str(data) or os.path.samefile(os.environ[paths.DATA_ENV], data)
    nb = nbformat.read(str(run.path), as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def test_build_book_names_every_missing_data_set_before_any_work(output_dir, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(paths.DATA_ENV, "empty")  # relative: resolved against the folder the command runs from
    code = cli.main(["book", "--profile", "smoke"])
    err = capsys.readouterr().err
    assert code == 1
    assert str(empty) in err and "medadv data download breastmnist" in err and "kaggle.com" in err
    assert "Traceback" not in err and len(err.splitlines()) < 25  # one screen
    assert not book.source_dir("smoke").exists()  # nothing was staged, trained or executed
