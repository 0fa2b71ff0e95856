"""Structure of the SSAT chapter's figures."""
import pandas as pd
import pytest

from medadv_lib import plotting


def test_regime_robustness_plot_has_a_panel_per_attack_and_a_line_per_regime():
    rows = [{"regime": r, "attack": a, "eps": e, "accuracy": 0.5} for r in ("NT", "SSAT")
            for a in ("fgsm", "pgd", "cw_l2") for e in (0, 0.005, 0.01)]
    fig = plotting.regime_robustness_plot(pd.DataFrame(rows))
    assert len(fig.axes) == 3 and all(len(ax.lines) == 2 for ax in fig.axes)
    with pytest.raises(ValueError, match="lacks column"):
        plotting.regime_robustness_plot(pd.DataFrame({"regime": ["NT"]}))


def test_uad_embedding_plot_marks_rejected_and_accepted():
    frame = pd.DataFrame({"regime": ["NT"] * 4, "pc1": [0, 1, 2, 3], "pc2": [0, 1, 0, 1],
                          "kind": ["clean", "clean", "adv", "adv"], "cls": [0, 1, 0, 1],
                          "rejected": [False, False, True, False]})
    fig = plotting.uad_embedding_plot(frame, classes=["a", "b"])
    assert len(fig.axes) == 1 and "1 of 2 AEs rejected" in fig.axes[0].get_title()
    assert len(fig.axes[0].collections) == 4  # two clean classes, one rejected and one accepted AE
