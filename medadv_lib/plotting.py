"""House style for the book's figures and tables, and the helpers chapters call to draw them.

Figures are built with matplotlib's object API (:class:`~matplotlib.figure.Figure`, never the
pyplot state machine), so a chapter shows exactly the figures it passes to :func:`show` and no
figure is displayed twice. Tables are :class:`pandas.DataFrame` objects; :func:`table` gives them
the house formatting for display.

Typical chapter use::

    from medadv_lib import plotting
    plotting.use_style()
    plotting.show(plotting.sample_grid(ds.train.images, ds.train.labels, ds.classes, title=ds.name))
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import paths

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


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------

def _as_numpy_images(images) -> np.ndarray:
    """(N, C, H, W) uint8 or [0, 1] float -> (N, H, W, C) float in [0, 1]."""
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return np.clip(np.moveaxis(x, 1, -1), 0.0, 1.0)


def pick_per_class(labels, n_per_class: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Up to ``n_per_class`` seeded random indices of each class present in ``labels``."""
    y = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = {}
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        picked[int(c)] = np.sort(rng.choice(idx, size=min(n_per_class, len(idx)), replace=False))
    return picked


def sample_grid(images, labels, classes: Sequence[str], *, n_per_class: int = 8, seed: int = 0,
                title: str | None = None, max_label: int = 18) -> Figure:
    """A grid of sample images: one row per class, ``n_per_class`` seeded random images per row.

    Parameters
    ----------
    images : tensor or array (N, C, H, W)
        uint8 (0-255) or float in [0, 1]; 1-channel images are drawn in grey.
    labels : tensor or array (N,)
    classes : sequence of str
        Class names by index (long names are shortened to ``max_label`` characters).
    """
    x = _as_numpy_images(images)
    picked = pick_per_class(labels, n_per_class, seed)
    rows = sorted(picked)
    cell = 0.85
    fig = new_figure(width=1.6 + cell * n_per_class, height=0.35 + cell * len(rows) + (0.3 if title else 0))
    axes = np.atleast_2d(fig.subplots(len(rows), n_per_class, squeeze=False))
    for r, c in enumerate(rows):
        for j in range(n_per_class):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(picked[c]):
                img = x[picked[c][j]]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
        name = str(classes[c]) if c < len(classes) else str(c)
        name = name if len(name) <= max_label else name[: max_label - 1] + "\u2026"
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def class_balance_plot(frame: pd.DataFrame, *, value: str = "share", ncols: int = 3) -> Figure:
    """Bar plots of class balance: one panel per dataset, bars per class grouped by split.

    ``frame`` is the long table of :func:`class_balance` (columns dataset, split, class, count, share).
    """
    names = list(dict.fromkeys(frame["dataset"]))
    ncols = max(1, min(ncols, len(names)))
    nrows = int(np.ceil(len(names) / ncols))
    fig = new_figure(width=2.9 * ncols, height=2.5 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, name in zip(axes, names):
        sub = frame[frame["dataset"] == name]
        classes = list(dict.fromkeys(sub["class"]))
        splits = [s for s in SPLIT_COLORS if s in set(sub["split"])]
        width = 0.8 / max(1, len(splits))
        pos = np.arange(len(classes))
        for i, split in enumerate(splits):
            part = sub[sub["split"] == split].set_index("class").reindex(classes)
            ax.bar(pos + (i - (len(splits) - 1) / 2) * width, part[value].to_numpy(dtype=float), width,
                   label=split, color=SPLIT_COLORS[split])
        ax.set_title(name)
        ax.set_xticks(pos)
        short = [c if len(c) <= 12 else c[:11] + "\u2026" for c in classes]
        ax.set_xticklabels(short, rotation=35 if len(classes) > 2 else 0, ha="right" if len(classes) > 2 else "center",
                           fontsize=8)
        ax.set_ylabel("share of split" if value == "share" else value)
        if value == "share":
            ax.set_ylim(0, 1)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(loc="upper right", fontsize=8)
    return fig


def history_plot(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """Training loss and training accuracy per epoch, one line per model."""
    fig = new_figure(width=8.0, height=3.3)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(epochs, [h["loss"] for h in history], marker="o", ms=3, label=name)
        ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker="o", ms=3, label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_acc.set(xlabel="epoch", ylabel="training accuracy", ylim=(0, 1))
    fig.legend(*ax_loss.get_legend_handles_labels(), loc="outside lower center", ncols=min(5, len(histories)),
               fontsize=8)
    return fig


def timings_plot(frame: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Horizontal bars of execution minutes per chapter (``frame`` has ``chapter`` and ``seconds``)."""
    fig = new_figure(width=7.0, height=0.8 + 0.4 * max(1, len(frame)))
    ax = fig.subplots()
    minutes = frame["seconds"].to_numpy(dtype=float) / 60.0
    ax.barh(frame["chapter"].astype(str).tolist()[::-1], minutes[::-1], color=PALETTE[0])
    ax.set_xlabel("minutes")
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

def class_balance(datasets: Mapping[str, Any]) -> pd.DataFrame:
    """Long table of class counts: one row per (dataset, split, class) with count and share of the split.

    ``datasets`` maps a name to a loaded :class:`medadv_lib.data.Dataset`.
    """
    rows = []
    for name, ds in datasets.items():
        for split in ("train", "val", "test"):
            if split not in ds.splits:
                continue
            counts = ds[split].class_counts(ds.num_classes)
            total = max(1, sum(counts))
            rows += [{"dataset": name, "split": split, "class": str(ds.classes[c]), "count": int(n),
                      "share": n / total} for c, n in enumerate(counts)]
    return pd.DataFrame(rows, columns=["dataset", "split", "class", "count", "share"])


def split_summary(models: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset: classes, channels, px (file -> model), split sizes, the profile's subsets, rarest class.

    ``rarest class`` is the share of the rarest class in the full training split.

    ``models`` maps a name to a :class:`medadv_lib.pipeline.TrainedModel` (its ``dataset`` holds the
    full splits, its ``train`` / ``test`` the seeded subsets the profile trains and tests on).
    """
    rows = []
    for name, tm in models.items():
        ds = tm.dataset
        counts = np.asarray(ds.train.class_counts(ds.num_classes), dtype=float)
        rows.append({
            "dataset": name, "classes": ds.num_classes, "channels": ds.channels,
            "px": f"{ds.info.native_size}\u2192{ds.size}",
            "train": len(ds.train), "val": len(ds.val), "test": len(ds.test),
            "train used": len(tm.train), "test used": len(tm.test),
            "rarest class": float(counts.min() / max(1.0, counts.sum())),
        })
    return pd.DataFrame(rows)


def model_summary(models: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset: architecture, subset sizes, clean test metrics, chance level, cache status."""
    rows = []
    for name, tm in models.items():
        spec = getattr(tm.model, "spec", {}) or {}
        m = tm.metrics
        rows.append({
            "dataset": name, "model": spec.get("arch", type(tm.model).__name__),
            "n train": len(tm.train), "n test": m.get("n", len(tm.test)),
            "accuracy": m["accuracy"], "balanced acc.": m["balanced_accuracy"], "AUROC": m["auroc"],
            "chance (1/K)": 1.0 / tm.dataset.num_classes,
            "model from": "cache" if tm.cache.hit else "trained now",
        })
    return pd.DataFrame(rows)


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
