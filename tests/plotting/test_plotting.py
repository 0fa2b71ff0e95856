"""House-style figures (data, models, style helpers) on small synthetic inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from medadv_lib import plotting, tables


def test_sample_grid_has_one_row_per_class_and_is_seeded(toy_dataset):
    ds = toy_dataset(channels=3)
    fig = plotting.sample_grid(ds.train.images, ds.train.labels, ds.classes, n_per_class=4, seed=1, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 4
    picks = plotting.pick_per_class(ds.train.labels, 4, 1)
    assert all((ds.train.labels[idx] == c).all() for c, idx in picks.items())
    assert not all(np.array_equal(picks[c], plotting.pick_per_class(ds.train.labels, 4, 2)[c]) for c in picks)
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["a", "b", "c"]


def test_sample_grid_handles_classes_with_few_images_and_float_input():
    labels = torch.tensor([0, 0, 0, 1])
    images = torch.rand(4, 1, 8, 8)
    fig = plotting.sample_grid(images, labels, ("x", "y"), n_per_class=3)
    assert len(fig.axes) == 6


def test_class_balance_plot_draws_every_dataset(toy_dataset):
    frame = tables.class_balance({"toy": toy_dataset(), "two": toy_dataset(classes=("p", "q"))})
    fig = plotting.class_balance_plot(frame)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["toy", "two"]


def test_save_figure_writes_atomically(tmp_path):
    fig = plotting.new_figure(2, 2)
    fig.subplots().plot([0, 1])
    paths = plotting.save_figure(fig, "a b/c", tmp_path, formats=("png", "svg"))
    assert [p.name for p in paths] == ["a-b-c.png", "a-b-c.svg"] and all(p.stat().st_size > 0 for p in paths)
    assert not list(tmp_path.glob(".*tmp"))


def test_show_displays_nothing_outside_a_notebook(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append(a))
    plotting.show(plotting.new_figure(1, 1))
    assert shown == []


def test_timings_plot_bars_are_minutes():
    fig = plotting.timings_plot(pd.DataFrame({"chapter": ["a", "b"], "seconds": [30.0, 90.0]}))
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    assert widths == pytest.approx([0.5, 1.5])


def test_history_plot_has_one_line_per_model():
    history = [{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5}, {"epoch": 2, "loss": 0.5, "train_accuracy": 0.7}]
    fig = plotting.history_plot({"a": history, "b": history})
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]


def test_dataset_colors_follow_the_registry_domain():
    colors = plotting.dataset_colors(["chestxray", "cifar10", "toy"])
    assert colors["cifar10"] == plotting.DOMAIN_COLORS["natural"]
    assert colors["chestxray"] != colors["cifar10"] and colors["toy"] != colors["cifar10"]
    assert plotting.natural_datasets(["chestxray", "cifar10", "toy"]) == {"cifar10"}
    assert plotting.natural_datasets(["chestxray", "cifar10"], natural=["chestxray"]) == {"chestxray"}


def test_scale_plot_panels_per_layer_and_initialisation():
    rows = [{"image_px": px, "init": init, "dataset": name, "layer": layer, "direction": d, "eps_k": 1.0,
             "median_shift_z": px / 28 * (2 if init == "imagenet" else 1)}
            for px in (28, 64) for init in ("scratch", "imagenet") for name in ("chestxray", "cifar10")
            for layer in ("intermediate", "penultimate") for d in ("max", "min")]
    fig = plotting.scale_plot(pd.DataFrame(rows), eps_k=1)
    assert [ax.get_title() for ax in fig.axes] == ["intermediate, scratch", "intermediate, imagenet",
                                                   "penultimate, scratch", "penultimate, imagenet"]
    lines = [l for l in fig.axes[1].get_lines() if not l.get_label().startswith("_")]
    assert [l.get_linestyle() for l in lines] == ["-", "--"]  # CIFAR-10 (natural) dashed
    assert list(lines[0].get_ydata()) == [2.0, 2 * 64 / 28]
    with pytest.raises(ValueError, match="no maximising rows"):
        plotting.scale_plot(pd.DataFrame(rows), eps_k=4)
