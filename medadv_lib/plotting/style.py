"""House style of the book's figures and tables: palette, matplotlib settings, figure creation,
display, saving and table formatting.

Figures are built with matplotlib's object API (:class:`~matplotlib.figure.Figure`, never the
pyplot state machine), so a chapter shows exactly the figures it passes to :func:`show` and no
figure is displayed twice. Tables are :class:`pandas.DataFrame` objects (built in
:mod:`medadv_lib.tables`); :func:`table` gives them the house formatting for display.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from .. import paths

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
#: One colour per split, used by every chapter.
SPLIT_COLORS = {"train": PALETTE[0], "val": PALETTE[1], "test": PALETTE[2]}
#: Medical sets in blue-green tones, the natural set in orange, wherever both appear.
DOMAIN_COLORS = {"medical": PALETTE[0], "natural": PALETTE[3]}

STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "image.cmap": "gray",
}


def use_style() -> None:
    """Apply the house style to matplotlib's global settings (idempotent)."""
    matplotlib.rcParams.update(STYLE)


def new_figure(width: float = 8.0, height: float = 4.0, **kwargs) -> Figure:
    """A figure in the house style, detached from pyplot (shown only through :func:`show`)."""
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout=kwargs.pop("layout", "constrained"), **kwargs)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def show(fig: Figure) -> None:
    """Display ``fig`` as a PNG output in a notebook (a no-op outside IPython).

    Returns None on purpose, so that a cell ending in ``show(...)`` has the image as its only output.
    """
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython comes with the book's dependencies
        return
    if get_ipython() is not None:
        display(Image(data=_png(fig), format="png"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "figure"


def save_figure(fig: Figure, name: str, folder: str | os.PathLike | None = None,
                formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.<format>`` for every format (default folder ``_build/figures``).

    Returns the written paths. The file is written to a temporary name and renamed, so a reader
    never sees a half-written figure.
    """
    folder = Path(folder) if folder is not None else paths.output_dir() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = folder / f"{_slug(name)}.{fmt}"
        tmp = target.with_name(f".{target.name}.tmp")
        fig.savefig(tmp, format=fmt)
        os.replace(tmp, target)
        written.append(target)
    return written


TABLE_STYLES = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0 1em 0;"},
    {"selector": "caption", "props": "caption-side: top; font-weight: 600; padding-bottom: 0.3em;"},
    {"selector": "th", "props": "text-align: left; padding: 0.3em 0.6em; border-bottom: 1.5px solid #666;"
                                "vertical-align: bottom;"},
    {"selector": "td", "props": "padding: 0.25em 0.6em; border-bottom: 1px solid #ddd;"},
    {"selector": "tbody tr:nth-child(even)", "props": "background-color: rgba(127, 127, 127, 0.07);"},
]


def table(frame: pd.DataFrame, *, percent: Sequence[str] = (), decimals: int = 3, caption: str | None = None,
          index: bool = False):
    """House display of a table: no index, floats rounded, the ``percent`` columns as percentages."""
    fmt = {}
    for col in frame.columns:
        if col in percent:
            fmt[col] = "{:.1%}"
        elif pd.api.types.is_float_dtype(frame[col]):
            fmt[col] = "{:.%df}" % decimals
    styler = frame.style.format(fmt, na_rep="-").set_table_styles(TABLE_STYLES)
    styler = styler.set_table_attributes('class="medadv-table"')
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return styler


def natural_datasets(names: Iterable[str], natural: Iterable[str] | None = None) -> set[str]:
    """The natural-image sets among ``names``: ``natural`` when given, else the registry's ``domain``.

    With ``natural=None`` a name counts as natural when :class:`~medadv_lib.data.DatasetInfo`
    says ``domain == "natural"``; names the registry does not know (toy sets) count as medical.
    """
    if natural is not None:
        return set(natural)
    from ..data.registry import natural_names  # lazy: the registry lives in the torch-importing data package

    return set(natural_names(names))


#: Colours of the analysis figures: medical sets in blue/green tones, natural sets in vermillion.
_MEDICAL_COLORS = (PALETTE[0], PALETTE[2], PALETTE[5], PALETTE[4], PALETTE[7])


def dataset_colors(names: Sequence[str], natural: Sequence[str] | None = None) -> dict[str, str]:
    """One colour per data set: natural sets in :data:`DOMAIN_COLORS` ``natural``, medical ones in cool tones.

    ``natural`` defaults to the registry's domain (:func:`natural_datasets`).
    """
    natural = natural_datasets(names, natural)
    colors, k = {}, 0
    for name in names:
        if name in natural:
            colors[name] = DOMAIN_COLORS["natural"]
        else:
            colors[name] = _MEDICAL_COLORS[k % len(_MEDICAL_COLORS)]
            k += 1
    return colors
