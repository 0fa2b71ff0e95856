"""Detector-benchmark figures: heat-maps and ROC curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from _synthetic import synthetic_detection_results as _results

from medadv_lib import plotting


def test_heatmap_panels_and_domain_titles():
    res = _results()
    fig = plotting.detection_heatmap(res)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_title()]
    # the registry knows cifar10 as natural; the toy name "med" counts as medical
    assert [ax.get_title() for ax in panels] == ["med\n(medical)", "cifar10\n(natural images)"]
    forced = plotting.detection_heatmap(res, natural=["med"])
    assert [ax.get_title() for ax in forced.axes if ax.get_title()][0] == "med\n(natural images)"


def test_roc_figure_draws_one_curve_per_detector_with_scores():
    scores = pd.DataFrame({"detector": "KD", "kind": ["clean", "noisy", "adv"] * 10, "index": np.arange(30),
                           "is_adv": [0, 0, 1] * 10, "score": np.linspace(0, 1, 30), "dataset": "med",
                           "attack": "bim", "eps": 8 / 256})
    fig = plotting.roc_figure(scores, detectors=["KD", "MAHA"], attack="bim")
    ax = fig.axes[0]
    # KD's ROC curve plus the chance diagonal; MAHA has no scores and draws nothing
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["KD"]
    assert "(medical)" in ax.get_title()


def test_roc_figure_accepts_object_columns():
    """Scores concatenated with an empty (object-typed) frame of a run without AEs still plot."""
    scores = pd.DataFrame({"detector": "KD", "kind": ["clean", "noisy", "adv"] * 10, "index": np.arange(30),
                           "is_adv": [0, 0, 1] * 10, "score": np.linspace(0, 1, 30), "dataset": "med",
                           "attack": "bim", "eps": 8 / 256})
    empty = pd.DataFrame(columns=["detector", "kind", "index", "is_adv", "score"]).assign(dataset="med", attack="bim",
                                                                                           eps=4 / 256)
    mixed = pd.concat([empty, scores], ignore_index=True)
    assert mixed["is_adv"].dtype == object
    fig = plotting.roc_figure(mixed, detectors=["KD"], attack="bim")
    assert [line.get_label() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")] == ["KD"]
