"""Fixed-direction sweep, summary and 2-D view (METHODS.md section 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _analysis_helpers import feature_model, images

from medadv_lib.analysis import (
    ClassGaussian,
    concat_labelled,
    concat_results,
    direction_summary,
    fixed_direction_frame,
    fixed_direction_sweep,
    pca_view,
    penultimate_features,
)
from medadv_lib.attacks import BIM

BINARY = feature_model(num_classes=2)
MULTI = feature_model(num_classes=4, seed=1)
X = images(6, seed=3)
X_TRAIN = images(40, seed=4)


def _gaussian(model, k):
    h = penultimate_features(model, X_TRAIN)
    return h, torch.arange(40) % k, ClassGaussian().fit(h, torch.arange(40) % k)


def test_sweep_matches_one_frame_per_budget_and_batches_do_not_matter():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    _, _, g = _gaussian(BINARY, 2)
    frame, results = fixed_direction_sweep(BINARY, X, y, [0.02, 0.05], steps=3, seed=0, gaussian=g, batch_size=4)
    assert sorted(results) == [0.02, 0.05] and len(frame) == 2 * 6 * 4
    whole = BIM(BINARY, eps=0.05, steps=3, targeted=True, seed=0).run(X, y, record_features=True)
    assert results[0.05].features.shape == whole.features.shape == (4, 6, 128)
    torch.testing.assert_close(results[0.05].features, whole.features, rtol=1e-5, atol=1e-5)
    ref = fixed_direction_frame(whole, BINARY, gaussian=g)
    part = frame[frame.eps == 0.05].reset_index(drop=True)
    np.testing.assert_allclose(part["cos_step"], ref["cos_step"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(part.grad_cos, 1.0, atol=1e-5)  # binary: exactly the fixed direction
    assert (part[part.step == 0].projection_gain == 0).all() and (part[part.step == 0].maha_gain == 0).all()
    assert (part.success == whole.success.numpy()[part.image]).all()
    assert set(frame["budget"]) == {"0.02 (5.12/256)", "0.05 (12.8/256)"}


def test_summary_numbers():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    _, _, g = _gaussian(MULTI, 4)
    frame, _ = fixed_direction_sweep(MULTI, X, y, [0.05], steps=3, seed=0, gaussian=g)
    frame = concat_labelled({"m": frame})
    summary = direction_summary(frame)
    row = summary.iloc[0]
    assert row.images == 6
    moving = frame[frame.step >= 1]
    assert row.mean_cos_step == pytest.approx(moving.cos_step.mean())
    assert 0 < row.mean_grad_cos < 1 and row.min_grad_cos <= row.mean_grad_cos
    d0 = frame[frame.step == 0].sort_values("image").maha_min.to_numpy()
    d1 = frame[frame.step == 3].sort_values("image").maha_min.to_numpy()
    assert row.share_distance_grew == pytest.approx(np.mean(d1 > d0))
    by_eps = direction_summary(frame, by=("dataset", "eps_k"))
    assert by_eps.columns[:2].tolist() == ["dataset", "eps_k"]


def test_pca_view_and_concat_results():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    h, labels, _ = _gaussian(BINARY, 2)
    atk = BIM(BINARY, eps=0.05, steps=2, targeted=True, seed=0)
    parts = [atk.run(X[:4], y[:4], record_features=True), atk.run(X[4:], y[4:], record_features=True)]
    joined = concat_results(parts)
    assert joined.features.shape == (3, 6, 128) and joined.x_adv.shape == X.shape and joined.loss is None
    view = pca_view(h, labels, joined, max_train=10)
    assert view["set"].value_counts().to_dict() == {"clean training": 10, "clean attacked": 6, "adversarial": 6}
    assert len(view.attrs["explained_variance_ratio"]) == 2
    with pytest.raises(ValueError, match="no results"):
        concat_results([])


def test_class_gaussian_with_absent_classes():
    h = penultimate_features(MULTI, X_TRAIN)
    g = ClassGaussian().fit(h, torch.arange(40) % 2, num_classes=4)
    d = g.distance(h[:3])
    assert d.shape == (3, 4) and np.isnan(d[:, 2:]).all() and np.isfinite(d[:, :2]).all()


def test_sweep_rejects_zero_budget():
    with pytest.raises(ValueError, match="> 0"):
        fixed_direction_sweep(BINARY, X, torch.zeros(6, dtype=torch.long), [0.0])


def test_projection_percentile_against_the_target_class():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    h, labels, _ = _gaussian(BINARY, 2)
    frame, results = fixed_direction_sweep(BINARY, X, y, [0.05], steps=2, seed=0, reference=(h, labels))
    assert frame["projection_pct"].between(0, 100).all()
    from medadv_lib.analysis import classifier_weights

    w, _ = classifier_weights(BINARY)
    row = frame.iloc[-1]
    t, yy = int(row.target), int(row.y)
    unit = (w[t] - w[yy]) / np.linalg.norm(w[t] - w[yy])
    ref = h.double().numpy()[labels.numpy() == t] @ unit
    expected = 100.0 * (np.sum(ref < row.projection) + 0.5 * np.sum(ref == row.projection)) / len(ref)
    assert row.projection_pct == pytest.approx(expected)
    summary = direction_summary(concat_labelled({"b": frame}))
    assert {"median_projection_pct_last", "share_projection_beyond"} <= set(summary.columns)
    with pytest.raises(ValueError, match="reference"):
        fixed_direction_sweep(BINARY, X, y, [0.05], steps=1, reference=(h, labels[:3]))
