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


# ----------------------------------------------------------------------------------------------
# Analysis chapters: accuracy under attack, the stress test, the fixed-direction effect
# ----------------------------------------------------------------------------------------------

#: Colours of the analysis figures: medical sets in blue/green tones, natural sets in vermillion.
_MEDICAL_COLORS = (PALETTE[0], PALETTE[2], PALETTE[5], PALETTE[4], PALETTE[7])


def dataset_colors(names: Sequence[str], natural: Sequence[str] = ("cifar10",)) -> dict[str, str]:
    """One colour per data set: natural sets in :data:`DOMAIN_COLORS` ``natural``, medical ones in cool tones."""
    colors, k = {}, 0
    for name in names:
        if name in natural:
            colors[name] = DOMAIN_COLORS["natural"]
        else:
            colors[name] = _MEDICAL_COLORS[k % len(_MEDICAL_COLORS)]
            k += 1
    return colors


def robustness_plot(curves: pd.DataFrame, *, natural: Sequence[str] = ("cifar10",), chance: Mapping[str, float] | None = None,
                    title: str | None = None) -> Figure:
    """Accuracy against the budget (k/256), one line per data set; eps = 0 is the clean accuracy.

    ``curves`` is a long frame with ``dataset``, ``eps_k`` and ``accuracy`` columns (e.g.
    :func:`medadv_lib.analysis.concat_labelled` of :func:`medadv_lib.analysis.curve_from_examples`
    frames). Natural sets are drawn dashed; ``chance`` (name -> 1/K) adds dotted chance levels.
    """
    names = list(dict.fromkeys(curves["dataset"]))
    colors = dataset_colors(names, natural)
    fig = new_figure(width=6.4, height=3.8)
    ax = fig.subplots()
    for name in names:
        part = curves[curves["dataset"] == name].sort_values("eps_k")
        style = "--" if name in natural else "-"
        ax.plot(part["eps_k"], part["accuracy"], style, marker="o", ms=4, color=colors[name],
                label=f"{name} ({'natural' if name in natural else 'medical'})")
        if chance and name in chance:
            ax.axhline(chance[name], color=colors[name], ls=":", lw=0.8, alpha=0.7)
    ticks = sorted(set(curves["eps_k"].round(6)))
    ax.set_xticks(ticks)
    ax.set_xticklabels(["clean" if t == 0 else f"{t:g}/256" for t in ticks])
    ax.set(xlabel="L\u221e budget \u03b5 (untargeted PGD)", ylabel="test accuracy", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title)
    return fig


def stress_plot(frame: pd.DataFrame, *, value: str = "z_score", natural: Sequence[str] = ("cifar10",),
                kind: str = "box", symlog: bool = True, title: str | None = None) -> Figure:
    """Reached z-scores (or percentiles) per data set: one panel per (layer, budget), max and min side by side.

    ``frame`` holds rows of :func:`medadv_lib.analysis.stress_sweep` with a ``dataset`` column.
    ``kind`` is ``"box"`` or ``"violin"`` (seaborn). With ``symlog`` the z axis is linear within
    +-3 and logarithmic beyond, so both a push to 2 and a push to 200 standard deviations read.
    """
    import seaborn as sns

    if kind not in ("box", "violin"):
        raise ValueError(f"kind must be 'box' or 'violin', got {kind!r}")
    names = list(dict.fromkeys(frame["dataset"]))
    layers = list(dict.fromkeys(frame["layer"]))
    budgets = sorted(set(frame["eps_k"]))
    colors = {"max": PALETTE[3], "min": PALETTE[0]}
    fig = new_figure(width=max(6.0, 1.2 * len(names) * len(budgets) + 1.5), height=3.1 * len(layers))
    axes = np.atleast_2d(fig.subplots(len(layers), len(budgets), squeeze=False, sharey="row"))
    for i, layer in enumerate(layers):
        for j, eps_k in enumerate(budgets):
            ax = axes[i, j]
            part = frame[(frame["layer"] == layer) & (frame["eps_k"] == eps_k)]
            common = dict(data=part, x="dataset", y=value, hue="direction", order=names, hue_order=["max", "min"],
                          palette=colors, ax=ax)
            if kind == "box":
                sns.boxplot(**common, fliersize=1.5, linewidth=0.8, width=0.7)
            else:
                sns.violinplot(**common, cut=0, inner="quartile", linewidth=0.7, density_norm="width")
            if value == "z_score":
                ax.axhline(0, color="0.4", lw=0.6)
                for level in (-3, 3):
                    ax.axhline(level, color="0.6", lw=0.6, ls=":")
                if symlog:
                    _symlog_axis(ax, part[value].to_numpy(dtype=float))
            ax.set_title(f"{layer}, \u03b5 = {eps_k:g}/256", fontsize=10)
            ax.set_xlabel("")
            ax.set_ylabel("reached z-score (clean training units)" if value == "z_score" and j == 0 else
                          (value if j == 0 else ""))
            ax.tick_params(axis="x", labelrotation=20)
            for label in ax.get_xticklabels():
                if label.get_text() in natural:
                    label.set_color(DOMAIN_COLORS["natural"])
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colors[d], edgecolor="0.2", label=label)
               for d, label in (("max", "maximise"), ("min", "minimise"))]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9, title="push the channel")
    if title:
        fig.suptitle(title)
    return fig


def _symlog_axis(ax, values: np.ndarray, linthresh: float = 3.0) -> None:
    """Symmetric-log y axis, linear within +-linthresh, with plain tick labels (1, 3, 10, 30, ...)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    steps = [1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
    ticks = [0.0] + [v for v in steps if v <= max(hi, linthresh) * 1.05] + \
        [-v for v in steps if -v >= min(lo, -linthresh) * 1.05]
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(FixedLocator([]))


def cosine_plot(frame: pd.DataFrame, *, natural: Sequence[str] = ("cifar10",), title: str | None = None) -> Figure:
    """Distributions of the cosine with ``w_t - w_y``: per-step feature change, and the analytic gradient.

    ``frame`` holds rows of :func:`medadv_lib.analysis.fixed_direction_sweep` with a ``dataset`` column.
    """
    import seaborn as sns

    names = list(dict.fromkeys(frame["dataset"]))
    palette = dataset_colors(names, natural)
    moving = frame[frame["step"] >= 1]
    fig = new_figure(width=8.6, height=3.4)
    ax_step, ax_grad = fig.subplots(1, 2, sharey=True)
    sns.violinplot(data=moving, x="dataset", y="cos_step", hue="dataset", order=names, palette=palette, cut=0,
                   inner="quartile", linewidth=0.7, ax=ax_step, legend=False)
    sns.stripplot(data=frame, x="dataset", y="grad_cos", hue="dataset", order=names, palette=palette, size=2,
                  alpha=0.4, jitter=0.25, ax=ax_grad, legend=False)
    ax_step.set(title="per-step feature change h\u209b \u2212 h\u209b\u208b\u2081", xlabel="",
                ylabel="cosine with w\u209c \u2212 w\u1d67", ylim=(-1.05, 1.05))
    ax_grad.set(title="analytic step direction \u2212\u2202L/\u2202h", xlabel="", ylabel="")
    for ax in (ax_step, ax_grad):
        ax.axhline(1, color="0.5", lw=0.6, ls=":")
        ax.axhline(0, color="0.5", lw=0.6)
    if title:
        fig.suptitle(title)
    return fig


def trajectory_plot(frame: pd.DataFrame, *, values: Sequence[str] = ("projection_gain", "maha_gain"),
                    labels: Mapping[str, str] | None = None, hue: str = "eps_k", title: str | None = None) -> Figure:
    """Median (line) and inter-quartile range (band) of each value against the step, one column per data set.

    ``frame`` holds rows of :func:`medadv_lib.analysis.fixed_direction_sweep` with a ``dataset``
    column; one line per ``hue`` level (default the budget).
    """
    labels = {"projection_gain": "projection on w\u209c \u2212 w\u1d67\n(gain since clean)",
              "maha_gain": "Mahalanobis distance to nearest\nclean class (gain since clean)",
              "projection_pct": "projection as percentile of\nclean target-class training",
              "maha_min": "Mahalanobis distance\nto nearest clean class", "maha_true": "Mahalanobis distance\nto true class",
              "maha_target": "Mahalanobis distance\nto target class", "cos_step": "cosine of step",
              "p_target": "p(target)", **(labels or {})}
    names = list(dict.fromkeys(frame["dataset"]))
    levels = sorted(set(frame[hue]))
    colors = {level: matplotlib.colormaps["viridis"](0.15 + 0.7 * k / max(1, len(levels) - 1))
              for k, level in enumerate(levels)}
    fig = new_figure(width=3.0 * len(names) + 0.8, height=2.6 * len(values) + 0.5)
    axes = np.atleast_2d(fig.subplots(len(values), len(names), squeeze=False, sharex=True))
    for j, name in enumerate(names):
        part = frame[frame["dataset"] == name]
        for i, value in enumerate(values):
            ax = axes[i, j]
            for level in levels:
                stats = part[part[hue] == level].groupby("step")[value].quantile([0.25, 0.5, 0.75]).unstack()
                label = f"{level:g}/256" if hue == "eps_k" else str(level)
                ax.plot(stats.index, stats[0.5], color=colors[level], lw=1.5, label=label)
                ax.fill_between(stats.index, stats[0.25], stats[0.75], color=colors[level], alpha=0.18, lw=0)
            if i == 0:
                ax.set_title(name)
            if j == 0:
                ax.set_ylabel(labels.get(value, value))
            if i == len(values) - 1:
                ax.set_xlabel("attack step (0 = clean)")
    handles, texts = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=len(levels), fontsize=8,
               title="\u03b5" if hue == "eps_k" else hue)
    if title:
        fig.suptitle(title)
    return fig


def pca_plot(views: Mapping[str, pd.DataFrame], *, classes: Mapping[str, Sequence[str]] | None = None,
             max_arrows: int = 40, title: str | None = None) -> Figure:
    """2-D PCA views (:func:`medadv_lib.analysis.pca_view`), one panel per data set.

    Clean training features are faint dots coloured by class, attacked images open circles at their
    clean position joined by a line to their adversarial position (crosses), coloured by true class.
    The axes are cut at the 1st and 99th percentiles of the points shown (plus a margin), so a few
    far-out points may fall outside.
    """
    from matplotlib.lines import Line2D

    names = list(views)
    fig = new_figure(width=3.4 * len(names) + 0.4, height=3.6)
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False).ravel())
    for ax, name in zip(axes, names):
        view = views[name]
        labels = sorted(set(view["label"]))
        colours = PALETTE if len(labels) <= len(PALETTE) else [matplotlib.colormaps["tab10"](k % 10) for k in range(len(labels))]
        cmap = {c: colours[k % len(colours)] for k, c in enumerate(labels)}
        train = view[view["set"] == "clean training"]
        ax.scatter(train["pc1"], train["pc2"], s=3, c=[cmap[c] for c in train["label"]], alpha=0.25, lw=0)
        clean = view[view["set"] == "clean attacked"].set_index("image")
        adv = view[view["set"] == "adversarial"].set_index("image").loc[clean.index]
        shown = clean.index[:max_arrows]
        for i in shown:
            ax.plot([clean.at[i, "pc1"], adv.at[i, "pc1"]], [clean.at[i, "pc2"], adv.at[i, "pc2"]],
                    color=cmap[clean.at[i, "label"]], lw=0.5, alpha=0.6)
        ax.scatter(clean.loc[shown, "pc1"], clean.loc[shown, "pc2"], s=18, facecolors="none",
                   edgecolors=[cmap[c] for c in clean.loc[shown, "label"]], lw=0.9)
        ax.scatter(adv.loc[shown, "pc1"], adv.loc[shown, "pc2"], s=20, marker="x",
                   c=[cmap[c] for c in adv.loc[shown, "label"]], lw=0.9)
        # a few far-out points would squeeze the rest into a corner: cut the axes at the 1st and 99th
        # percentiles of the points shown, padded
        shown_points = pd.concat([train, clean.loc[shown], adv.loc[shown]])
        for axis, col in ((ax.set_xlim, "pc1"), (ax.set_ylim, "pc2")):
            lo, hi = np.nanpercentile(shown_points[col].to_numpy(dtype=float), [1, 99])
            pad = 0.15 * max(hi - lo, 1e-9)
            axis(lo - pad, hi + pad)
        ratio = view.attrs.get("explained_variance_ratio")
        ax.set_xlabel("PC 1" + (f" ({ratio[0]:.0%})" if ratio else ""))
        ax.set_ylabel("PC 2" + (f" ({ratio[1]:.0%})" if ratio else ""))
        ax.set_title(name)
        names_c = (classes or {}).get(name)
        handles = [Line2D([], [], color=cmap[c], marker="o", ls="", ms=4,
                                           label=str(names_c[c])[:14] if names_c else str(c)) for c in labels]
        handles += [Line2D([], [], color="0.3", marker="o", mfc="none", ls="", ms=5, label="clean"),
                    Line2D([], [], color="0.3", marker="x", ls="", ms=5, label="adversarial")]
        ax.legend(handles=handles, fontsize=7, loc="best", ncols=1 if len(labels) <= 3 else 2)
    if title:
        fig.suptitle(title)
    return fig
