"""Figures of the data and the models: sample grids, class balance, training histories, and the
book's execution times."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import PALETTE, SPLIT_COLORS, new_figure


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
