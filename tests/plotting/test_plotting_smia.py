"""SMIA chapter figures: one structural fact each."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from medadv_lib import plotting


def _curve():
    rows = [{"attack": "clean", "eps": 0.0, "accuracy": 0.9}]
    for attack in ("fgsm", "bim", "pgd", "smia"):
        rows += [{"attack": attack, "eps": k / 256, "accuracy": 0.9 - 0.1 * k} for k in (1, 2, 4)]
    frame = pd.DataFrame(rows)
    frame["eps_k"] = frame["eps"] * 256
    return frame


def test_attack_curves_one_panel_per_dataset_one_line_per_attack():
    fig = plotting.attack_curves_plot({"med": _curve(), "cifar10": _curve()})
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["med (medical)", "cifar10 (natural)"]
    assert all(len(ax.get_lines()) == 4 for ax in panels)
    assert list(panels[0].get_lines()[0].get_xdata())[0] == 0  # every line starts at the clean accuracy
    with pytest.raises(ValueError, match="empty"):
        plotting.attack_curves_plot({})


def test_loss_trace_has_a_band_per_attack():
    trace = pd.DataFrame({"attack": ["pgd"] * 3 + ["smia"] * 3, "step": [0, 1, 2] * 2, "mean": np.arange(6.0),
                          "q25": np.arange(6.0) - 1, "q75": np.arange(6.0) + 1})
    ax = plotting.loss_trace_plot({"med": trace}).axes[0]
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 2


def test_perturbation_grid_rows_and_columns():
    ex = {"x": torch.rand(2, 1, 8, 8), "pgd": torch.rand(2, 1, 8, 8) - 0.5, "smia": torch.rand(2, 1, 8, 8) - 0.5}
    rgb = {"x": torch.rand(2, 3, 8, 8), "pgd": torch.zeros(2, 3, 8, 8), "smia": torch.zeros(2, 3, 8, 8)}
    fig = plotting.perturbation_grid({"a": ex, "b": rgb}, eps=0.5)
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(images) == 2 * 3 and images[1].images[0].get_clim() == (-0.5, 0.5)


def test_beta2_plot_marks_the_choice():
    sweep = pd.DataFrame({"beta2": [0.0, 1.0, 4.0], "accuracy": [0.3, 0.2, 0.25], "ce_std": [0.1, 0.05, 0.02]})
    fig = plotting.beta2_plot(sweep, chosen=1.0)
    assert len(fig.axes) == 2 and all(len(ax.get_lines()) == 2 for ax in fig.axes)
