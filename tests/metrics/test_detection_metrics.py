"""Detection metrics equal scikit-learn's; bootstrap intervals; laws checked with hypothesis."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from medadv_lib.metrics import auprc, auroc, bootstrap_ci, detection_metrics, tpr_at_tnr


def _sk_tpr_at_tnr(y, s, tnr=0.9):
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return tpr[fpr <= 1 - tnr + 1e-12].max()


@st.composite
def labelled_scores(draw, min_size=2, max_size=60):
    n = draw(st.integers(min_size, max_size))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)))
    # small integers: plenty of ties, and exact arithmetic under the transforms below
    s = draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n))
    return np.array(y), np.array(s, dtype=float)


@settings(max_examples=80, deadline=None)
@given(labelled_scores())
def test_metrics_equal_sklearn(data):
    y, s = data
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    for tnr in (0.9, 0.5, 0.95):
        assert tpr_at_tnr(y, s, tnr) == pytest.approx(_sk_tpr_at_tnr(y, s, tnr), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labelled_scores())
def test_auroc_of_negated_scores(data):
    y, s = data
    assert auroc(y, -s) == pytest.approx(1.0 - auroc(y, s), abs=1e-12)
    # swapping the labels is the same law seen from the other side
    assert auroc(1 - y, s) == pytest.approx(1.0 - auroc(y, s), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labelled_scores(), st.sampled_from(["cubic", "affine", "exp"]))
def test_monotone_transforms_leave_metrics_unchanged(data, kind):
    y, s = data
    f = {"cubic": lambda v: v ** 3 + 2 * v, "affine": lambda v: 3 * v - 7, "exp": np.exp}[kind]
    t = f(s)
    assert auroc(y, t) == pytest.approx(auroc(y, s), abs=1e-12)
    assert tpr_at_tnr(y, t) == pytest.approx(tpr_at_tnr(y, s), abs=1e-12)
    assert auprc(y, t) == pytest.approx(auprc(y, s), abs=1e-12)


def test_tpr_threshold_definition():
    # 10 normals 0..9: the threshold keeps 9 of them at or below 8, so adversarial 8.5 counts
    normal = np.arange(10.0)
    adv = np.array([8.5, 9.5, 7.0, 100.0])
    y = np.r_[np.zeros(10), np.ones(4)]
    assert tpr_at_tnr(y, np.r_[normal, adv]) == 0.75
    assert tpr_at_tnr(y, np.r_[normal, adv], tnr=1.0) == 0.5


def test_bootstrap_ci_contains_point_and_is_seeded():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(100)]
    s = np.r_[rng.normal(0, 1, 200), rng.normal(1.2, 1, 100)]
    for metric in ("auroc", "tpr", "auprc"):
        point, lo, hi = bootstrap_ci(y, s, metric, n_boot=300, seed=1)
        assert lo <= point <= hi and hi - lo < 0.3
        assert bootstrap_ci(y, s, metric, n_boot=300, seed=1) == (point, lo, hi)
        # chunking the resamples does not change them
        assert bootstrap_ci(y, s, metric, n_boot=300, seed=1, max_cells=5000) == (point, lo, hi)
    assert bootstrap_ci(y, s, n_boot=300, seed=2) != bootstrap_ci(y, s, n_boot=300, seed=1)
    # a wider interval at higher coverage
    _, lo90, hi90 = bootstrap_ci(y, s, ci=0.9, n_boot=300)
    _, lo99, hi99 = bootstrap_ci(y, s, ci=0.99, n_boot=300)
    assert lo99 <= lo90 and hi99 >= hi90
    point, lo, hi = bootstrap_ci(y, s, n_boot=0)
    assert np.isnan(lo) and np.isnan(hi)


def test_detection_metrics_keys():
    y = np.r_[np.zeros(20), np.ones(10)]
    s = np.r_[np.zeros(20), np.ones(10)]
    m = detection_metrics(y, s, n_boot=50)
    assert list(m) == ["auroc", "auroc_lo", "auroc_hi", "tpr90", "tpr90_lo", "tpr90_hi",
                       "auprc", "auprc_lo", "auprc_hi"]
    assert m["auroc"] == m["tpr90"] == m["auprc"] == 1.0
    assert "tpr95" in detection_metrics(y, s, tnr=0.95, n_boot=0)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="both normal"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [np.nan, 0.2])
    with pytest.raises(ValueError, match="0 \\(normal\\)"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci([0, 1], [0.1, 0.2], "f1")
