"""Structure of the risk chapter's figures."""
import numpy as np
import pandas as pd
import pytest

from medadv_lib import plotting


def _table():
    rows = [{"dataset": d, "regime": r, "detector": det, "attack": a, "r": 0.5, "r_lo": 0.4, "r_hi": 0.6}
            for d in ("a", "b") for r in ("NT", "SSAT") for det in ("none", "UAD") for a in ("pgd", "hfc")]
    return pd.DataFrame(rows)


def test_risk_heatmap_has_a_panel_per_dataset_and_annotates_intervals():
    fig = plotting.risk_heatmap(_table(), attack_labels={"hfc": "HFC"})
    heat = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert len(heat) == 2
    texts = [t.get_text() for t in heat[0].texts]
    assert len(texts) == 8 and all(t == "0.50\n[0.40, 0.60]" for t in texts)
    assert [t.get_text() for t in heat[0].get_xticklabels()] == ["pgd", "HFC"]
    with pytest.raises(ValueError, match="lacks column"):
        plotting.risk_heatmap(_table().drop(columns="r_hi"))


def test_risk_budget_and_fpr_plots_draw_a_line_per_system():
    budget = pd.DataFrame([{"dataset": "a", "regime": r, "detector": d, "eps": e, "r": 1.0, "r_lo": 0.9, "r_hi": 1.1}
                           for r in ("NT", "SSAT") for d in ("none", "UAD") for e in (0, 0.005, 0.01)])
    fig = plotting.risk_budget_plot(budget)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 4
    curve = pd.DataFrame({"dataset": "a", "regime": ["NT"] * 3, "fpr": [0, 0.05, 0.1], "r": [1.0, 0.8, 0.9],
                          "best": [False, True, False]})
    fig = plotting.risk_fpr_plot(curve)
    star = fig.axes[0].lines[1]
    assert np.allclose(star.get_xdata(), [0.05]) and np.allclose(star.get_ydata(), [0.8])
